"""Composed detection fields from real bueno crops: slide split, ground-truth circles, sizes."""

from __future__ import annotations

import numpy as np
import pytest

from glomkit.detect.fields import FieldComposer, fixed_fields, split_samples

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def few_train(bueno_root):
    return split_samples("train", str(bueno_root))[:8]


def test_splits_are_disjoint_by_slide(bueno_root):
    tr, va, te = (split_samples(s, str(bueno_root)) for s in ("train", "val", "test"))
    slides = [{s.slide for s in x} for x in (tr, va, te)]
    assert slides[0] and slides[1] and slides[2]
    assert not (slides[0] & slides[1]) and not (slides[0] & slides[2]) and not (slides[1] & slides[2])


def test_fields_are_reproducible_and_sized(few_train):
    comp = FieldComposer(few_train, mpp=4.0, size=128, seed=0, synthetic=False)
    a = fixed_fields(comp, 3, seed=5)
    b = fixed_fields(comp, 3, seed=5)
    for fa, fb in zip(a, b, strict=True):
        assert fa.image.shape == (128, 128, 3) and fa.image.dtype == np.uint8
        np.testing.assert_array_equal(fa.image, fb.image)
        np.testing.assert_allclose(fa.circles, fb.circles)


def test_ground_truth_circles_enclose_the_pasted_glomeruli(few_train, monkeypatch):
    """On a blank background without distractors, everything pasted lies in the circles (+ rim)."""
    mpp = 4.0
    comp = FieldComposer(few_train, mpp=mpp, size=192, seed=0, synthetic=False)
    monkeypatch.setattr(comp, "_background", lambda rng, size: np.full((size, size, 3), 255.0, np.float32))
    monkeypatch.setattr(comp, "_distractor", lambda rng, canvas: None)
    rng = np.random.default_rng(3)
    n_checked = 0
    for _ in range(6):
        f = comp.compose(rng)
        if not len(f.circles):
            continue
        bg = np.median(f.image.reshape(-1, 3), axis=0)  # the blank background covers most of it
        changed = np.abs(f.image.astype(float) - bg).max(axis=2) > 20
        yy, xx = np.mgrid[0:192, 0:192] + 0.5
        inside = np.zeros((192, 192), bool)
        for x, y, r in f.circles:
            # MEC radius: at least the equal-area radius of a 100 µm glomerulus, at most ~1.5x 125 µm
            assert 50.0 / mpp * 0.95 <= r <= 125.0 / mpp * 1.5
            d = np.hypot(xx - x, yy - y)
            inside |= d <= r + 16.0 / mpp + 2  # the pasted rim: up to 12 µm + feather
            assert changed[d <= 0.7 * r].mean() > 0.5  # the glomerulus is really there
        assert changed[~inside].mean() < 0.01
        n_checked += 1
    assert n_checked >= 3
