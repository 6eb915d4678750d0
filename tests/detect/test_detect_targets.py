"""CircleNet targets and decoding: peaks at centres, exact round trip, flip merge."""

from __future__ import annotations

import numpy as np
import pytest

from glomkit.detect.targets import circle_targets, gaussian_radius
from glomkit.kinds.circlenet import decode_circlenet

CIRCLES = np.array([[30.5, 41.25, 12.0], [90.0, 22.0, 20.0], [70.75, 100.5, 9.0]])


def _maps_from_targets(t, h, w):
    rad = np.zeros((1, h, w), np.float32)
    off = np.zeros((2, h, w), np.float32)
    n = int(t["mask"].sum())
    for k in range(n):
        iy, ix = divmod(int(t["index"][k]), w)
        rad[0, iy, ix] = t["radius"][k]
        off[:, iy, ix] = t["offset"][k]
    return rad, off


def test_targets_peak_one_at_centres():
    t = circle_targets(CIRCLES, 128, 128, stride=4)
    hm = t["heatmap"][0]
    assert hm.shape == (32, 32)
    for x, y, _ in CIRCLES:
        assert hm[int(y // 4), int(x // 4)] == pytest.approx(1.0)
    assert (hm == 1.0).sum() == len(CIRCLES)
    assert t["mask"].sum() == len(CIRCLES)


def test_gaussian_grows_with_radius():
    assert gaussian_radius(5, 5) < gaussian_radius(15, 15) < gaussian_radius(30, 30)
    small = circle_targets([[64, 64, 8]], 128, 128)["heatmap"][0]
    big = circle_targets([[64, 64, 40]], 128, 128)["heatmap"][0]
    assert (big > 0.5).sum() > (small > 0.5).sum()


def test_decode_recovers_circles_exactly_from_targets():
    t = circle_targets(CIRCLES, 128, 128, stride=4)
    rad, off = _maps_from_targets(t, 32, 32)
    out = decode_circlenet(t["heatmap"], rad, off, stride=4, score_threshold=0.5, top_k=10)
    assert out.shape == (3, 4)
    got = out[np.lexsort((out[:, 1], out[:, 0]))][:, :3]
    want = CIRCLES[np.lexsort((CIRCLES[:, 1], CIRCLES[:, 0]))]
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(out[:, 3], 1.0)


def test_decode_threshold_and_top_k():
    t = circle_targets(CIRCLES, 128, 128, stride=4)
    rad, off = _maps_from_targets(t, 32, 32)
    hm = t["heatmap"].copy()
    hm[0, int(CIRCLES[2, 1] // 4), int(CIRCLES[2, 0] // 4)] = 0.4
    assert len(decode_circlenet(hm, rad, off, score_threshold=0.5)) == 2
    assert len(decode_circlenet(hm, rad, off, score_threshold=0.3, top_k=1)) == 1
    assert len(decode_circlenet(np.zeros((1, 32, 32)), rad, off)) == 0
