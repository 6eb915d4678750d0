"""Segmenter architectures by name (a :class:`~glomkit.core.registry.Registry`), in the style of
timm's model registry.

Usage::

    from glomkit.nets.segmenters import create_segmenter, list_segmenters
    model = create_segmenter("unet", "resnet18")

The bundled architectures (``unet``, ``segnet``, ``deeplabv3``: each module of this package with
a builder function of the same name) are registered by name; their modules, and torch, are
imported only when a model is built, so listing the names needs no torch.
``register_segmenter`` adds an architecture from outside the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from glomkit.core.registry import Registry

SEGMENTERS: Registry[Callable] = Registry("segmenter architecture")


def _bundled(name: str) -> Callable:
    def build(**kw):
        return getattr(importlib.import_module(f"{__package__}.{name}"), name)(**kw)

    return build


for _name in ("deeplabv3", "segnet", "unet"):
    SEGMENTERS.register(_name, _bundled(_name))


def register_segmenter(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register a builder ``fn(encoder, **kw) -> nn.Module`` under ``name``."""

    def deco(fn: Callable) -> Callable:
        return SEGMENTERS.register(name, fn)

    return deco


def list_segmenters() -> list[str]:
    """Names of the known architectures: the bundled ones and any registered."""
    return SEGMENTERS.names()


def create_segmenter(arch: str, encoder: str = "resnet18", **kw):
    """Build architecture ``arch`` on timm encoder ``encoder`` (pretrained=False); 1-channel logits."""
    return SEGMENTERS.get(arch)(encoder=encoder, **kw)
