"""Label-fraction study runner on a tiny bueno-like dataset (two obvious kinds, 8 slides)."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("OMP_NUM_THREADS", "1")


def make_bueno_like(root, n_slides: int = 8, per_class: int = 2, size: int = 40, seed: int = 0):
    """labels.csv + images: GS = smooth pale disc, nonGS = dark noisy texture."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    sites = ["SAS", "SESCAM", "VUHSK"]
    for s in range(n_slides):
        slide = f"{sites[s % 3]}_{100 + s}_001"
        for label in ("GS", "nonGS"):
            for j in range(per_class):
                if label == "GS":
                    img = np.full((size, size, 3), (230, 170, 200), np.uint8) + rng.integers(
                        0, 10, (size, size, 3)
                    ).astype(np.uint8)
                else:
                    img = rng.integers(0, 120, (size, size, 3)).astype(np.uint8)
                name = f"images/{slide}-{label}{j}.png"
                Image.fromarray(img).save(root / name)
                rows.append({"image": name, "mask": name, "label": label, "source_wsi": slide})
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "label", "source_wsi"])
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture
def tiny_encoder(tmp_path):
    from glomkit.ssl.simsiam import SimSiamConfig, pretrain_simsiam

    imgs = make_bueno_like(tmp_path / "unl", n_slides=3)
    return pretrain_simsiam(
        SimSiamConfig(
            images=[str(imgs / "images")],
            out=str(tmp_path / "enc.pt"),
            backbone="resnet10t",
            size=32,
            epochs=1,
            batch_size=6,
            max_steps=1,
        )
    )


def test_subsample_stratified_at_least_one_per_class():
    from glomkit.studies.label_fraction import subsample

    labels = ["GS"] * 3 + ["nonGS"] * 97
    idx = subsample(labels, 1, seed=0)
    picked = [labels[i] for i in idx]
    assert picked.count("GS") == 1 and picked.count("nonGS") == 1
    assert len(subsample(labels, 100, seed=0)) == 100


def test_splits_grouped_by_slide(tmp_path):
    from glomkit.data.bueno import load_bueno
    from glomkit.studies.label_fraction import LabelFractionConfig, _tasks

    data = make_bueno_like(tmp_path / "d")
    samples = load_bueno(data)
    for _, tr, va, te in _tasks(samples, LabelFractionConfig(data=str(data), encoder="", out="", folds=2)):
        slides = [{samples[i].slide for i in part} for part in (tr, va, te)]
        assert not (slides[0] & slides[1]) and not (slides[0] & slides[2]) and not (slides[1] & slides[2])
        assert len(tr) + len(va) + len(te) == len(samples)


@pytest.mark.slow
def test_label_fraction_runner_writes_table(tmp_path, tiny_encoder):
    from glomkit.studies.label_fraction import LabelFractionConfig, run_label_fraction

    data = make_bueno_like(tmp_path / "d")
    cfg = LabelFractionConfig(
        data=str(data),
        encoder=str(tiny_encoder),
        out=str(tmp_path / "out"),
        folds=2,
        fractions=(50, 100),
        arms=("scratch", "probe"),
        size=32,
        epochs=1,
        batch=4,
    )
    res = run_label_fraction(cfg)
    assert len(res["rows"]) == 2 * 2 * 2
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| 100 | probe |" in md and "No ImageNet" in md
    assert (tmp_path / "out" / "confusion.png").stat().st_size > 1000
    probe = [r for r in res["summary"] if r["arm"] == "probe" and r["fraction"] == 100][0]
    assert probe["balanced_accuracy"] > 0.9  # two obvious kinds, separable even on random-ish features


def test_small_fractions_get_enough_steps() -> None:
    from glomkit.studies.label_fraction import epochs_for

    assert epochs_for(400, 32, 10, 0) == 10  # large set: the epochs asked for
    assert epochs_for(400, 32, 10, 150) == 13  # 12 steps per epoch -> 13 epochs for 150 steps
    assert epochs_for(5, 5, 10, 150) == 150  # one step per epoch


# leave-one-site-out tasks (the SimSiam initialisation's test)


def test_leave_site_out_tests_each_site_once(tmp_path):
    from glomkit.data.bueno import load_bueno
    from glomkit.studies.label_fraction import LabelFractionConfig, _tasks

    data = make_bueno_like(tmp_path / "d", n_slides=9, per_class=1, size=8)
    samples = load_bueno(data)
    cfg = LabelFractionConfig(data=str(data), encoder="", out="", leave_site_out=True)
    tasks = _tasks(samples, cfg)
    assert [t[0] for t in tasks] == ["test SAS", "test SESCAM", "test VUHSK"]
    for name, tr, va, te in tasks:
        site = name.split()[1]
        assert {samples[i].site for i in te} == {site}
        assert site not in {samples[i].site for i in tr + va}
        assert not ({samples[i].slide for i in tr} & {samples[i].slide for i in va})
        assert len(tr) + len(va) + len(te) == len(samples)


def test_leave_site_out_and_external_exclude_each_other(tmp_path):
    from glomkit import GlomkitError
    from glomkit.data.bueno import load_bueno
    from glomkit.studies.label_fraction import LabelFractionConfig, _tasks

    data = make_bueno_like(tmp_path / "d", n_slides=3, per_class=1, size=8)
    cfg = LabelFractionConfig(data=str(data), encoder="", out="", leave_site_out=True, external=True)
    with pytest.raises(GlomkitError, match="exclude each other"):
        _tasks(load_bueno(data), cfg)


def test_cli_passes_leave_site_out_and_refuses_it_with_external(tmp_path):
    from click.testing import CliRunner

    from glomkit._cli.study import study_label_fraction_cmd

    data = make_bueno_like(tmp_path / "d", n_slides=3, per_class=1, size=8)
    enc = tmp_path / "enc.pt"
    enc.write_bytes(b"")
    args = ["--data", str(data), "--encoder", str(enc), "-o", str(tmp_path / "o"), "--leave-site-out"]
    res = CliRunner().invoke(study_label_fraction_cmd, [*args, "--external"])
    assert res.exit_code == 2 and "exclude each other" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(study_label_fraction_cmd, args)  # on its own it reaches the encoder check
    assert res.exit_code == 1 and "enc.pt: not a readable SimSiam encoder" in res.output
