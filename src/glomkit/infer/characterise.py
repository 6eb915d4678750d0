"""Characterise glomerulus patches: class, calibrated probabilities, outline and measurements.

The classifier's decision metadata (temperature, GGS threshold) picks each label; the segmenter
sees each patch cut down to its circle plus a margin, and only the component under the circle is
kept as the glomerulus (not a neighbour, not a strip of tubule).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glomkit.core.records import GlomerulusRecord
from glomkit.infer.classify import classify_and_decide
from glomkit.infer.morphometry import glomerulus_component, mask_to_polygon, measure_mask
from glomkit.infer.patches import crop_to_circles, uncrop_masks
from glomkit.infer.segment import segment_patches


def patch_circles(records: list[GlomerulusRecord]) -> np.ndarray:
    """(N, 3) each record's circle in its patch's pixels."""
    return np.array(
        [
            ((r.x - r.box[0]) * r.patch_scale, (r.y - r.box[1]) * r.patch_scale, r.radius * r.patch_scale)
            for r in records
        ],
        dtype=np.float64,
    ).reshape(-1, 3)


def outline_masks(
    segmenter,
    records: list[GlomerulusRecord],
    patches: np.ndarray,
    outline_margin_px: float | None,
    batch: int = 16,
) -> np.ndarray:
    """Bool (N, H, W) glomerulus masks in the patches' frame.

    ``outline_margin_px`` (level-0 px): segment each patch cut to its circle plus this margin;
    None: the whole patch. Only the component under each circle is kept.
    """
    circles = patch_circles(records)
    if outline_margin_px is None:
        masks = segment_patches(segmenter, patches, batch)
    else:
        scales = np.array([r.patch_scale for r in records], np.float64)
        crops, boxes = crop_to_circles(patches, circles, outline_margin_px * scales)
        masks = uncrop_masks(segment_patches(segmenter, crops, batch), boxes, patches.shape[1])
    for j, (cx, cy, r) in enumerate(circles):
        masks[j] = glomerulus_component(masks[j], cx, cy, r)
    return masks


def classify_calls(
    classifier, patches: np.ndarray, batch: int = 16
) -> list[tuple[Any, dict[str, float], float]]:
    """Per patch: (its class, as the model's decision settings call it; the probability of each class
    by name; the GGS probability). The one labelling of the pipeline and ``glomkit.api.Classifier``."""
    scheme = classifier.info.scheme
    probs, labels = classify_and_decide(classifier, patches, batch)
    ggs = scheme.ggs_probability(probs) if len(probs) else np.zeros(0)
    return [
        (scheme.classes[int(lab)], {n: float(v) for n, v in zip(scheme.names, p, strict=True)}, float(g))
        for p, lab, g in zip(probs, labels, ggs, strict=True)
    ]


def classify_records(
    classifier, records: list[GlomerulusRecord], patches: np.ndarray, batch: int = 16
) -> None:
    """Set each record's label, probabilities, GGS probability and is_glomerulus."""
    for rec, (cls, probs, ggs) in zip(records, classify_calls(classifier, patches, batch), strict=True):
        rec.probs = probs
        rec.label = cls.name
        rec.is_glomerulus = cls.is_glomerulus
        rec.ggs_probability = ggs


def measure_records(records: list[GlomerulusRecord], masks: np.ndarray, mpp: float) -> None:
    """Set each record's area, diameter, perimeter (µm) and level-0 outline polygon from its mask."""
    for rec, m in zip(records, masks, strict=True):
        if not m.any():
            continue
        meas = measure_mask(m, mpp / rec.patch_scale)
        rec.area_um2 = float(meas["area_um2"])
        rec.diameter_um = float(meas["diameter_um"])
        rec.perimeter_um = float(meas["perimeter_um"])
        poly = np.asarray(mask_to_polygon(m), dtype=np.float64)
        if len(poly) >= 3:
            rec.polygon = poly / rec.patch_scale + np.array(rec.box[:2], dtype=np.float64)
