"""Segmenter architectures by name, in the style of timm's model registry.

Usage::

    from glomkit.segment.registry import create_segmenter, list_segmenters
    model = create_segmenter("unet", "resnet18")

Imports flow one way: this module imports the architecture modules (``unet``, ``segnet``,
``deeplabv3``, each with a builder function of the same name) when a model is built; they do not
import it. Listing the names needs no torch. ``register_segmenter`` adds an architecture from
outside the package.
"""

from __future__ import annotations

from collections.abc import Callable

from glomkit import GlomkitError

BUILTIN_SEGMENTERS = ("deeplabv3", "segnet", "unet")
_REGISTRY: dict[str, Callable] = {}  # architectures registered from outside: name -> builder


def register_segmenter(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register a builder ``fn(encoder, **kw) -> nn.Module`` under ``name``."""

    def deco(fn: Callable) -> Callable:
        _REGISTRY[name] = fn
        return fn

    return deco


def _builtin_builders() -> dict[str, Callable]:
    """The bundled architectures' builders (imports torch)."""
    from glomkit.segment.deeplabv3 import deeplabv3
    from glomkit.segment.segnet import segnet
    from glomkit.segment.unet import unet

    return {"deeplabv3": deeplabv3, "segnet": segnet, "unet": unet}


def list_segmenters() -> list[str]:
    """Names of the known architectures: the bundled ones and any registered."""
    return sorted(set(BUILTIN_SEGMENTERS) | set(_REGISTRY))


def create_segmenter(arch: str, encoder: str = "resnet18", **kw):
    """Build architecture ``arch`` on timm encoder ``encoder`` (pretrained=False); 1-channel logits."""
    if arch in _REGISTRY:
        return _REGISTRY[arch](encoder=encoder, **kw)
    if arch not in BUILTIN_SEGMENTERS:
        raise GlomkitError(f"unknown segmenter architecture {arch!r}; known: {', '.join(list_segmenters())}")
    return _builtin_builders()[arch](encoder=encoder, **kw)
