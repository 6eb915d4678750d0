"""Segmenter architectures by name, in the style of timm's model registry.

Usage::

    from glomkit.segment.registry import create_segmenter, list_segmenters
    model = create_segmenter("unet", "resnet10t")
"""

from __future__ import annotations

from collections.abc import Callable

from glomkit import GlomkitError

_REGISTRY: dict[str, Callable] = {}


def register_segmenter(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register a builder ``fn(encoder, **kw) -> nn.Module`` under ``name``."""

    def deco(fn: Callable) -> Callable:
        _REGISTRY[name] = fn
        return fn

    return deco


def _load_architectures() -> None:
    from glomkit.segment import deeplabv3, segnet, unet  # noqa: F401 - registers on import


def list_segmenters() -> list[str]:
    """Names of the registered architectures."""
    _load_architectures()
    return sorted(_REGISTRY)


def create_segmenter(arch: str, encoder: str = "resnet18", **kw):
    """Build architecture ``arch`` on timm encoder ``encoder`` (pretrained=False); 1-channel logits."""
    _load_architectures()
    if arch not in _REGISTRY:
        raise GlomkitError(f"unknown segmenter architecture {arch!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[arch](encoder=encoder, **kw)
