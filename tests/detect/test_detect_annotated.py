"""Detection on annotated real-style images: block splits, augmentation, mixing, hard negatives,
box metrics, and training / evaluation end to end on two tiny annotated images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from glomkit.detect.data import AnnotatedImage, split_annotated

DISC = (150, 60, 140)


def _annotated_images(folder: Path, n: int = 2, size: int = 128, seed: int = 0) -> list[tuple]:
    """Pale images with dark discs (glomeruli, outlined in QuPath GeoJSON) and rings (not outlined)."""
    rng = np.random.default_rng(seed)
    truth = []
    for i in range(n):
        img = np.full((size, size, 3), 235, np.uint8)
        feats = []
        for k in range(2):
            x, y, r = 32 + 64 * k + rng.uniform(-6, 6), rng.uniform(30, size - 30), rng.uniform(12, 16)
            cv2.circle(img, (int(round(x)), int(round(y))), int(round(r)), DISC, -1)
            t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            ring = np.column_stack([x + r * np.cos(t), y + r * np.sin(t)])
            coords = [[*map(float, p)] for p in ring] + [[float(ring[0, 0]), float(ring[0, 1])]]
            feats.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [coords]},
                    "properties": {"objectType": "annotation", "classification": {"name": "glomerulus"}},
                }
            )
            truth.append((f"tile_{i}.png", x, y, r))
        cv2.circle(img, (64, 64), 8, (120, 120, 160), 2)  # a ring: a hard negative, never outlined
        cv2.imwrite(str(folder / f"tile_{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        (folder / f"tile_{i}.geojson").write_text(
            json.dumps({"type": "FeatureCollection", "features": feats})
        )
    return truth


def _ims(names: list[str]) -> list[AnnotatedImage]:
    return [AnnotatedImage(Path(n), np.zeros((0, 3)), 1.0) for n in names]


def test_split_annotated_holds_out_test_files_and_a_contiguous_block():
    names = [f"train_{k}.jpg" for k in (2, 16, 17, 18, 30, 31, 44, 45, 46, 60)] + [
        "test_32.jpg",
        "test_47.jpg",
    ]
    train, val, test = split_annotated(_ims(names), n_blocks=5, val_block=1)
    assert [im.path.name for im in test] == ["test_32.jpg", "test_47.jpg"]
    # ordered by tile number (not by name: "train_2" < "train_16" numerically)
    assert [im.path.name for im in val] == ["train_17.jpg", "train_18.jpg"]
    assert {im.path.name for im in train} | {im.path.name for im in val} == set(names[:10])
    assert not {im.path for im in train} & {im.path for im in val}
    last = split_annotated(_ims(names))[1]
    assert [im.path.name for im in last] == ["train_46.jpg", "train_60.jpg"]


def test_split_annotated_needs_two_files_besides_test():
    from glomkit import GlomkitError

    with pytest.raises(GlomkitError, match="at least 2"):
        split_annotated(_ims(["a_1.png", "test_2.png"]))


def test_split_annotated_keeps_each_biopsy_on_one_side():
    from glomkit.detect.data import image_group, split_groups

    names = [f"S2016-{b}_{r}_{c}.jpg" for b in range(100, 112) for r in (1, 2) for c in (3, 4)]
    train, val, test = split_annotated(_ims(names), n_blocks=5, val_block=-1)
    groups = [{image_group(im.path) for im in part} for part in (train, val, test)]
    assert len(groups[2]) == 4  # a third of 12 biopsies
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert sum(map(len, (train, val, test))) == len(names)
    # the test biopsies do not depend on the validation block, nor on which tiles are present
    assert split_groups(sorted(groups[0] | groups[1] | groups[2]), val_block=2)[2] == groups[2]
    assert split_annotated(_ims(names[::2]), val_block=0)[2][0].path.name.split("_")[0] in groups[2]
    # named test files keep the old rule
    old = split_annotated(_ims(names + ["test_1.jpg"]))[2]
    assert [im.path.name for im in old] == ["test_1.jpg"]


def test_source_mpps_one_or_one_per_source():
    from types import SimpleNamespace

    from glomkit import GlomkitError
    from glomkit.detect.data import source_mpps

    assert source_mpps(SimpleNamespace(data_mpp=None), 2) == [None, None]
    assert source_mpps(SimpleNamespace(data_mpp=0.8), 2) == [0.8, 0.8]
    assert source_mpps(SimpleNamespace(data_mpp=[0.8]), 3) == [0.8] * 3
    assert source_mpps(SimpleNamespace(data_mpp=[0.8, 1.0]), 2) == [0.8, 1.0]
    with pytest.raises(GlomkitError, match="--data-mpp"):
        source_mpps(SimpleNamespace(data_mpp=[0.8, 1.0]), 3)


def test_validation_fields_of_several_sources_are_padded_together():
    from glomkit.detect.data import _pad_together
    from glomkit.detect.fields import Field

    a = Field(np.zeros((32, 64, 3), np.uint8), np.array([[5.0, 5, 3]]), np.ones((32, 64), np.uint8))
    b = Field(np.zeros((64, 32, 3), np.uint8), np.zeros((0, 3)), None)
    out = _pad_together([a, b])
    assert {f.image.shape for f in out} == {(64, 64, 3)}
    assert out[0].image[40, 10].tolist() == [255, 255, 255] and out[0].mask[40, 10] == 0
    assert out[0].mask[10, 10] == 1 and len(out[0].circles) == 1


def test_edge_ignore_band_follows_the_image_edge_through_tiles_and_augmentation(tmp_path):
    from glomkit.detect.data import AnnotatedSource, TileSampler, find_annotated_images
    from glomkit.kinds.circlenet import drop_ignored, ignore_cells

    _annotated_images(tmp_path, n=3, size=128)
    images = find_annotated_images(tmp_path, mpp=1.0)
    s = TileSampler(images, 1.0, edge_band_um=10.0)
    f = s.tile(0, 0.0, 0.0, 64)  # the image's top-left corner, 1:1
    assert f.ignore is not None and f.ignore.shape == (64, 64)
    assert f.ignore[:, :10].all() and f.ignore[:10].all() and not f.ignore[10:, 10:].any()
    whole = s.whole_image(0, pad_to=(160, 160))  # white padding beyond the image is not a band
    assert whole.ignore[5, 64] == 1 and whole.ignore[64, 124] == 1 and whole.ignore[64, 140] == 0
    assert TileSampler(images, 1.0).tile(0, 0.0, 0.0, 64).ignore is None
    src = AnnotatedSource(images, 1.0, 64, seed=0, origin="t", edge_ignore=True)
    assert src.description["edge_ignore_um"] == pytest.approx(
        float(np.median([c[2] for im in images for c in im.circles])), abs=0.1
    )
    rng = np.random.default_rng(0)
    for _ in range(4):
        t = src.sample(rng)
        assert (
            t.ignore is not None and set(np.unique(t.ignore)) <= {0, 1} and set(np.unique(t.mask)) <= {0, 1}
        )
    cells = ignore_cells(f.ignore, 16, 16, 4)
    assert cells.shape == (1, 16, 16) and cells[0, 0, 5] == 1 and cells[0, 8, 8] == 0
    kept = drop_ignored(np.array([[3.0, 30, 5, 0.9], [40, 40, 5, 0.8]]), f.ignore)
    assert kept.tolist() == [[40, 40, 5, 0.8]]


def test_augmented_tiles_keep_their_circles_on_the_objects():
    from glomkit.detect.augment import augment_tile

    img = np.full((96, 96, 3), 235, np.uint8)
    circles = np.array([[30.0, 40.0, 10.0], [70.0, 60.0, 8.0]])
    for x, y, r in circles:
        cv2.circle(img, (int(x), int(y)), int(r), DISC, -1)
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(40):
        mask = (np.abs(img.astype(int) - DISC).sum(axis=2) < 10).astype(np.uint8)
        out, c, m = augment_tile(img, circles, rng, strength=0.0, mask=mask)  # geometry only
        assert out.shape == img.shape and out.dtype == np.uint8
        on_disc = np.abs(out.astype(int) - DISC).sum(axis=2) < 60  # rotation blends the rim
        assert (m.astype(bool) & on_disc).sum() / (m.astype(bool) | on_disc).sum() > 0.8
        assert np.all(c[:, 2] > 7)  # radii kept
        for x, y, _r in c:
            assert out[int(round(y)), int(round(x))].mean() < 150  # the centre is on a disc
            checked += 1
    assert checked > 40
    out, _, none = augment_tile(img, circles, np.random.default_rng(2), strength=1.0)
    assert none is None
    assert out.shape == img.shape and not np.array_equal(out, img)


def test_mixed_source_samples_by_weight():
    from glomkit.detect.data import MixedSource
    from glomkit.detect.fields import Field

    class Tagged:
        def __init__(self, tag):
            self.tag, self.val_fields, self.val_description = tag, [], {}
            self.description = {"kind": tag}

        def sample(self, rng):
            return Field(np.full((4, 4, 3), self.tag, np.uint8), np.zeros((0, 3)))

    src = MixedSource([(Tagged(1), 0.8), (Tagged(2), 0.2)])
    rng = np.random.default_rng(0)
    tags = [src.sample(rng).image[0, 0, 0] for _ in range(2000)]
    assert 0.76 < np.mean(np.array(tags) == 1) < 0.84
    assert src.description["weights"] == [0.8, 0.2]


def test_hard_negative_mining_keeps_only_false_positives(tmp_path):
    from glomkit.detect.data import AnnotatedSource, read_user_images

    _annotated_images(tmp_path, n=3)
    src = AnnotatedSource(read_user_images(tmp_path, 2.0), mpp=4.0, size=64, seed=0, origin="t")

    def predict(images):  # per image (model px = level-0 px / 2): a disc, the ring, a low score, the edge
        out = []
        for im in images:
            m = (np.abs(im.astype(int) - DISC).sum(axis=2) < 40).astype(np.uint8)
            _, _, _, cent = cv2.connectedComponentsWithStats(m)
            out.append(
                np.array(
                    [[*cent[1], 7.0, 0.9], [32.0, 32.0, 4.0, 0.8], [5.0, 5.0, 3.0, 0.1], [32, 3, 4, 0.9]]
                )
            )
        return out

    found = src.mine_hard_negatives(predict, np.random.default_rng(0), n_images=5)
    # only the ring, once per training image: not the one at the edge, where outlines are often missing
    assert found == len(src.train.images) == 2
    for _k, x, y in src.train.hard_negatives:
        assert (x, y) == pytest.approx((64.0, 64.0), abs=1.0)
    tile = src.train.random_tile(np.random.default_rng(0), 32, hard_fraction=0.9)
    assert tile.image.shape == (32, 32, 3)


def test_box_metrics_and_matching():
    from glomkit.eval.detection import evaluate_boxes, recall_precision

    gt = {"a": np.array([[10, 10, 20, 20], [50, 50, 30, 30]], float)}
    perfect = {"a": np.array([[10, 10, 20, 20, 0.9], [50, 50, 30, 30, 0.8]], float)}
    m = evaluate_boxes(gt, perfect)
    assert m["AP50"] == pytest.approx(1.0) and m["AP"] == pytest.approx(1.0)
    shifted = {"a": np.array([[16, 16, 20, 20, 0.9], [50, 50, 30, 30, 0.8]], float)}  # IoU 0.31: a miss
    m = evaluate_boxes(gt, shifted)
    assert m["AP50"] < 0.6
    rp = recall_precision(gt, {"a": np.array([[10, 10, 20, 20, 0.9], [200, 200, 5, 5, 0.5]], float)})
    assert rp["recall"] == 0.5 and rp["precision"] == 0.5


def test_f1_best_threshold_drops_low_score_false_positives():
    from glomkit.eval.detection import f1_best_threshold

    gt = {"a": np.array([[10, 10, 5], [40, 40, 5]], float)}
    preds = {"a": np.array([[10, 10, 5, 0.9], [40, 40, 5, 0.6], [70, 70, 5, 0.3], [90, 90, 5, 0.2]], float)}
    best = f1_best_threshold(gt, preds)
    assert 0.3 < best["score_threshold"] <= 0.6
    assert best["recall"] == 1.0 and best["precision"] == 1.0 and best["f1"] == 1.0


def test_outline_dice():
    from glomkit.evaluate_images import outline_dice

    sq = np.array([[0, 0], [40, 0], [40, 40], [0, 40]], float)
    assert outline_dice(sq, sq) == pytest.approx(1.0)
    half = sq + [20, 0]
    assert outline_dice(sq, half) == pytest.approx(0.5, abs=0.03)
    assert outline_dice(sq, sq + [100, 100]) == 0.0


def test_context_patches_are_centred_masks(tmp_path):
    from glomkit.segment.context_data import context_patches

    (tmp_path / "in").mkdir()
    _annotated_images(tmp_path / "in", n=3, size=160)
    n = context_patches(tmp_path / "in", tmp_path / "out", data_mpp=1.0, copies=2, size=64, margin_um=(2, 8))
    assert n >= 2
    rows = (tmp_path / "out" / "labels.csv").read_text().splitlines()
    assert rows[0] == "image,mask,slide" and len(rows) == n + 1
    for row in rows[1:]:
        img_name, mask_name, _ = row.split(",")
        m = cv2.imread(str(tmp_path / "out" / mask_name), cv2.IMREAD_GRAYSCALE) > 127
        img = cv2.imread(str(tmp_path / "out" / img_name))
        assert 0.2 < m.mean() < 0.95
        ys, xs = np.nonzero(m)
        assert abs(xs.mean() - 32) < 12 and abs(ys.mean() - 32) < 12
        assert img[m].mean() < img[~m].mean()  # the mask is on the dark disc


@pytest.mark.slow
def test_train_and_evaluate_on_two_annotated_images(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    from glomkit._cli.evaluate import evaluate_detector_cmd as evaluate_cmd
    from glomkit._cli.evaluate import evaluate_pipeline_cmd
    from glomkit._cli.train import train_detector_cmd as train_cmd
    from glomkit.models.runtime import read_metadata

    data = tmp_path / "data"
    data.mkdir()
    _annotated_images(data, n=2)
    model = tmp_path / "det.onnx"
    args = ["--data", str(data), "-o", str(model), "--backbone", "resnet10t", "--epochs", "2", "--batch", "2"]
    args += ["--fields", "4", "--field-size", "64", "--mpp", "4", "--data-mpp", "2", "--threads", "1"]
    res = CliRunner().invoke(train_cmd, [*args, "--edge-ignore", str(tmp_path)])
    assert res.exit_code != 0 and "not one of the --data sources" in str(res.exception)
    res = CliRunner().invoke(train_cmd, [*args, "--arch", "unet", "--colour-aug", "wide"])
    assert res.exit_code != 0 and "--colour-aug" in str(res.exception)
    res = CliRunner().invoke(
        train_cmd,
        [*args, "--select", "AP", "--edge-ignore", str(data), "--colour-aug", "wide"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    meta = read_metadata(model)
    desc = meta["training"]["data"]
    assert desc["kind"] == "annotated_images" and desc["val_files"] == ["tile_1.png"]
    assert desc["edge_ignore_um"] > 20 and meta["training"]["edge_ignore"] == [str(data)]
    assert meta["training"]["colour_aug"] == "wide"
    assert meta["training"]["select"] == "val_AP" and len(meta["training"]["history"]) == 2
    assert "hard_negatives" in meta["training"]["history"][0]

    for cmd, extra in (
        (evaluate_cmd, ["--model", str(model)]),
        (evaluate_pipeline_cmd, ["--detector", str(model)]),
    ):
        out = tmp_path / f"{cmd.name}.json"
        res = CliRunner().invoke(
            cmd,
            [*extra, "--data", str(data), "--data-mpp", "2", "--split", "all", "-o", str(out)],
            catch_exceptions=False,
        )
        assert res.exit_code == 0, res.output
        rep = json.loads(out.read_text())
        assert rep["data"]["images"] == 2 and rep["data"]["glomeruli"] == 4
        for part in ("box", "circle"):
            assert rep["detector"][part]["n_gt"] == 4 and -1 <= rep["detector"][part]["AP50"] <= 1
        assert 0 <= rep["detector"]["at_threshold"]["recall"] <= 1
    assert set(rep["pipeline"]) >= {"box", "circle", "at_threshold", "outline_dice", "lost_to_non_glomerular"}
    best = rep["pipeline"]["f1_best_threshold"]  # for what the pipeline reports, after the filter
    assert 0 <= best["score_threshold"] <= 1 and 0 <= best["recall"] <= 1 and 0 <= best["precision"] <= 1

    # the F1-best threshold of the validation block becomes the model's decoding threshold
    base = ["--model", str(model), "--data", str(data), "--data-mpp", "2", "--set-threshold"]
    res = CliRunner().invoke(evaluate_cmd, [*base, "--split", "test"])
    assert res.exit_code != 0 and "--split val" in str(res.exception)
    res = CliRunner().invoke(evaluate_cmd, [*base, "--split", "val", "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    best = json.loads(out.read_text())["f1_best_threshold"]["score_threshold"]
    meta = read_metadata(model)
    assert meta["decode"]["score_threshold"] == round(best, 3)
    assert meta["metrics"]["threshold_choice"]["data"]["split"] == "val"
    # the library call behind the command says which evaluation it chose
    from glomkit.evaluate_images import evaluate_detector

    rep = evaluate_detector(model, data, split="all", data_mpp=2)
    assert rep["evaluated_on"] == "images" and "stored_score_threshold" not in rep

    # two sources mixed by weight: the annotated images and a circles CSV of the same images
    csv_path = tmp_path / "c.csv"
    rows = ["image,x,y,r"] + [f"data/tile_{i}.png,40,40,14" for i in range(2)]
    csv_path.write_text("\n".join(rows) + "\n")
    res = CliRunner().invoke(
        train_cmd,
        [
            *args[:2],
            "--data",
            str(csv_path),
            "--weight",
            "3",
            "--weight",
            "1",
            *args[2:3],
            str(tmp_path / "m.onnx"),
            *args[4:],
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    d = read_metadata(tmp_path / "m.onnx")["training"]["data"]
    assert d["kind"] == "mixed" and d["weights"] == [0.75, 0.25]


def test_evaluate_detector_checks_its_options_before_running(tmp_path):
    from glomkit import GlomkitError
    from glomkit.evaluate_images import evaluate_detector

    with pytest.raises(GlomkitError, match="--split val"):
        evaluate_detector(tmp_path / "m.onnx", tmp_path, split="test", set_threshold=True)
