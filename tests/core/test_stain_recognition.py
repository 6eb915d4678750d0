"""recognise_stain: synthetic edge cases, and real held-out tiles / slides when ../shared/data exists."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from glomkit.core.stain import (
    STAIN_HE,
    STAIN_NAMES,
    STAIN_NOT_BRIGHTFIELD,
    STAIN_OTHER,
    STAIN_PAS,
    StainCall,
    recognise_stain,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")


def test_black_with_bright_spots_is_not_brightfield() -> None:
    img = np.zeros((600, 800, 3), np.uint8)
    rng = np.random.default_rng(0)
    for x, y in rng.integers(20, 580, (40, 2)):
        cv2.circle(img, (int(x), int(y)), 4, (40, 60, 255), -1)
    call = recognise_stain(img)
    assert call.name == STAIN_NOT_BRIGHTFIELD
    assert call.confidence > 0.5
    assert "dark background" in call.reason


def test_white_image_is_other_with_low_confidence() -> None:
    call = recognise_stain(np.full((500, 700, 3), 245, np.uint8))
    assert call.name == STAIN_OTHER
    assert call.confidence < 0.3


def test_too_little_tissue_is_other() -> None:
    img = np.full((1000, 1500, 3), 242, np.uint8)
    cv2.circle(img, (700, 500), 6, (200, 90, 170), -1)  # one small pink speck
    call = recognise_stain(img)
    assert call.name == STAIN_OTHER
    assert "too little" in call.reason


def test_call_is_frozen_and_named() -> None:
    call = recognise_stain(np.full((64, 64, 3), 250, np.uint8))
    assert isinstance(call, StainCall) and call.name in STAIN_NAMES and 0.0 <= call.confidence <= 1.0
    with pytest.raises(AttributeError):
        call.name = STAIN_PAS  # type: ignore[misc]


def _rgb(p: Path) -> np.ndarray:
    return cv2.imread(str(p), cv2.IMREAD_COLOR)[:, :, ::-1]


@needs_data
def test_held_out_tiles_called_right() -> None:
    from glomkit.detect.data import image_group, split_groups

    hub = sorted((DATA / "hubmap_pas" / "tiles").glob("test_*.jpg"))[:3]
    tiles = sorted((DATA / "cgmh_he" / "tiles").glob("*.jpg"))
    _, _, test = split_groups([g for g in map(image_group, tiles) if g])
    he = [p for p in tiles if image_group(p) in test][::25][:4]
    assert hub and he
    for p in hub:
        assert recognise_stain(_rgb(p)).name == STAIN_PAS, p.name
    for p in he:
        assert recognise_stain(_rgb(p)).name == STAIN_HE, p.name


@needs_data
def test_dapi_slide_is_not_brightfield() -> None:
    from glomkit.slide.reader import Slide

    with Slide(DATA / "slides" / "test3-DAPI-2-(387).ndpi", mpp=0.5) as s:
        thumb, _ = s.thumbnail(2048)
    assert recognise_stain(thumb).name == STAIN_NOT_BRIGHTFIELD


HAE = np.array([0.65, 0.70, 0.29])  # haematoxylin optical density direction
PINK = np.array([0.25, 0.90, 0.35])  # eosin / Schiff


def _from_conc(hae: np.ndarray, pink: np.ndarray) -> np.ndarray:
    od = hae[..., None] * HAE + pink[..., None] * PINK
    return np.clip(256.0 * np.exp(-od) - 1.0, 0, 255).astype(np.uint8)


def _field(rng: np.random.Generator, sigma: float, size: int = 128) -> np.ndarray:
    f = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), sigma)
    return f / f.std()


def _layouts(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(PAS-like, H&E-like) images: in the first the two stains exclude each other at cell scale
    (nuclei apart from Schiff membranes); in the second both follow one density (cells vs gaps)
    with a slowly varying haematoxylin share."""
    rng = np.random.default_rng(seed)
    f = _field(rng, 2.0)
    pas = _from_conc(0.5 * np.maximum(f, 0) + 0.1, 0.5 * np.maximum(-f, 0) + 0.3)
    density = np.clip(1 + 0.5 * f, 0.2, None)
    share = np.clip(0.4 + 0.2 * _field(rng, 8.0), 0.1, 0.8)
    return pas, _from_conc(density * share, density * (1 - share))


@pytest.mark.parametrize("seed", [0, 1])
def test_structure_separates_pas_like_from_he_like_layouts(seed: int) -> None:
    from glomkit.core.stain import stain_features

    pas, he = (stain_features(x) for x in _layouts(seed))
    assert pas is not None and he is not None
    assert pas[0] < 0.0 < he[0]  # high-passed haematoxylin vs pink: excluding vs co-located
    assert pas[1] < he[1]  # pink in nuclear pixels relative to the ring around them


def test_features_have_the_fitted_length_and_none_without_tissue() -> None:
    from glomkit.core.stain import N_STAIN_FEATURES, STAIN_FEATURE_MEAN, stain_features

    f = stain_features(_layouts(2)[0])
    assert f is not None and f.shape == (N_STAIN_FEATURES,) == STAIN_FEATURE_MEAN.shape
    assert np.isfinite(f).all()
    assert stain_features(np.full((64, 64, 3), 250, np.uint8)) is None


@needs_data
def test_non_kidney_he_svs_slide_is_called_he() -> None:
    """CMU-1-Small-Region.svs (H&E skin, never trained on): a lab the recogniser has not seen."""
    from glomkit.slide.reader import Slide

    with Slide(DATA / "slides" / "CMU-1-Small-Region.svs", mpp=0.5) as s:
        thumb, _ = s.thumbnail(2048)
    assert recognise_stain(thumb).name == STAIN_HE
