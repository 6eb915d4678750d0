"""Stain normalisers (glomkit.core.stain): what the classifier applies before its input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from glomkit import GlomkitError
from glomkit.core.stain import STAIN_NORMS, stain_normaliser


def _tissue(seed: int = 0, size: int = 64) -> np.ndarray:
    """A PAS-like image: pink background with purple blobs (nuclei) and a white hole."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float32)
    img[:] = (215, 150, 200)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(12):
        cy, cx = rng.integers(0, size, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = (110, 70, 160)
    img[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 < 36] = (245, 245, 245)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", STAIN_NORMS)
def test_normaliser_keeps_shape_and_type(name):
    img = _tissue()
    out = stain_normaliser(name)(img)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_none_is_the_identity():
    img = _tissue()
    assert np.array_equal(stain_normaliser("none")(img), img)


@pytest.mark.parametrize("name", ["reinhard", "macenko"])
def test_normalising_twice_changes_little(name):
    f = stain_normaliser(name)
    once = f(_tissue()).astype(float)
    twice = f(once.astype(np.uint8)).astype(float)
    assert np.abs(twice - once).mean() < 4.0


@pytest.mark.parametrize("name", ["reinhard", "macenko"])
def test_a_stain_shifted_copy_normalises_close_to_the_original(name):
    """The point of normalising: two stainings of one tissue look alike after it."""
    f = stain_normaliser(name)
    img = _tissue()
    od = -np.log((img.astype(np.float32) + 1) / 256) * np.array([1.35, 0.8, 1.15], np.float32)
    shifted = np.clip(256 * np.exp(-od) - 1, 0, 255).astype(np.uint8)  # another lab's staining
    before = np.abs(shifted.astype(float) - img.astype(float)).mean()
    after = np.abs(f(shifted).astype(float) - f(img).astype(float)).mean()
    assert before > 8.0  # the shift is visible ...
    assert after < 0.6 * before  # ... and normalising removes most of it


def test_blank_image_survives():
    white = np.full((32, 32, 3), 255, np.uint8)
    for name in STAIN_NORMS:
        out = stain_normaliser(name)(white)
        assert out.shape == white.shape and np.isfinite(out).all()


def test_unknown_name_is_a_glomkit_error():
    with pytest.raises(GlomkitError, match="vahadane"):
        stain_normaliser("vahadane")


@pytest.mark.parametrize("name", STAIN_NORMS)
def test_a_batch_is_each_image_normalised_alone(name):
    """The pipeline normalises a classifier batch in one call: the same as image by image."""
    imgs = np.stack([_tissue(seed=s) for s in range(3)] + [np.full((64, 64, 3), 255, np.uint8)])
    imgs[1] = (imgs[1] * 0.7).astype(np.uint8)  # a darker image: its own statistics
    f = stain_normaliser(name)
    batch = f(imgs)
    assert batch.shape == imgs.shape and batch.dtype == np.uint8
    for img, got in zip(imgs, batch, strict=True):
        assert np.abs(f(img).astype(int) - got).max() <= 1


@pytest.mark.parametrize("name", STAIN_NORMS)
def test_an_empty_batch_comes_back_empty(name):
    empty = np.zeros((0, 32, 32, 3), np.uint8)
    assert stain_normaliser(name)(empty).shape == empty.shape


def test_gray_is_the_luminance_in_three_channels_and_keeps_density():
    """No hue is left (three equal channels, the ITU-R 601 luminance), grey stays grey, and a
    denser stain is darker."""
    img = _tissue()
    g = stain_normaliser("gray")
    out = g(img)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    lum = img.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(out[..., 0] - lum).max() <= 0.5 + 1e-6
    assert np.array_equal(g(out), out)
    assert g((img * 0.6).astype(np.uint8)).mean() < out.mean() - 20


def test_stain_vector_jitter_moves_the_stain_colour_and_keeps_glass_and_structure():
    from glomkit.core.stain import stain_vector_jitter

    img = _tissue()
    glass = np.full((8, 8, 3), 255, np.uint8)
    hues, lum = [], cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    for seed in range(12):
        rng = np.random.default_rng(seed)
        out = stain_vector_jitter(img, rng)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert stain_vector_jitter(glass, np.random.default_rng(seed)).min() >= 254  # glass stays white
        # the structure stays: luminance still follows the original's, pixel by pixel
        grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float32)
        assert np.corrcoef(grey.ravel(), lum.ravel())[0, 1] > 0.8
        lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float32)
        hues.append(np.degrees(np.arctan2(lab[..., 2] - 128, lab[..., 1] - 128)).mean())
    assert np.ptp(hues) > 15  # the background stain's hue moves across draws (identity: 0)


def test_wide_colour_recolours_or_greys_and_keeps_the_image_shape():
    from glomkit.detect.augment import wide_colour

    img = _tissue()
    outs = [wide_colour(img, np.random.default_rng(s)) for s in range(40)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    grey = sum(bool((o[..., 0] == o[..., 1]).all() and (o[..., 1] == o[..., 2]).all()) for o in outs)
    assert 2 <= grey <= 16  # about one in five
    assert sum(not np.array_equal(o, img) for o in outs) >= 30
