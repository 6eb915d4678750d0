"""glomkit: glomerulus detection, classification and segmentation for kidney whole-slide images.

The Python API (see docs/API.md)::

    import glomkit
    det = glomkit.Detector.load()                # the bundled detector
    found = det.run(image, mpp=0.5)              # a numpy image, a slide path or a Slide
    res = glomkit.run_slide("slide.svs")         # the whole pipeline, in memory
    res.summary["ggs_percent"]; res.save("out")  # the figures; the files ``glomkit run`` writes

Names are imported on first use, so ``import glomkit`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


class GlomkitError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


_EXPORTS = {
    "Slide": "glomkit.slide.reader",
    "Detector": "glomkit.api",
    "Classifier": "glomkit.api",
    "Segmenter": "glomkit.api",
    "Detection": "glomkit.api",
    "Classification": "glomkit.api",
    "Segmentation": "glomkit.api",
    "run_slide": "glomkit.api",
    "SlideResult": "glomkit.results",
    "GlomerulusRecord": "glomkit.core.records",
    "PipelineConfig": "glomkit.pipeline",
    "DetectOptions": "glomkit.infer.detect",
}

__all__ = ["GlomkitError", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'glomkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
