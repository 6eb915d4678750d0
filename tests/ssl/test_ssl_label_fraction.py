"""Leave-one-site-out tasks of the label-fraction study (the SimSiam initialisation's test)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image


def make_bueno_like(root, n_slides: int):
    """labels.csv + one GS and one nonGS flat crop per slide; slides dealt over the three sites."""
    (root / "images").mkdir(parents=True)
    rows = []
    for s in range(n_slides):
        slide = f"{('SAS', 'SESCAM', 'VUHSK')[s % 3]}_{100 + s}_001"
        for label, v in (("GS", 220), ("nonGS", 60)):
            name = f"images/{slide}-{label}.png"
            Image.fromarray(np.full((8, 8, 3), v, np.uint8)).save(root / name)
            rows.append({"image": name, "mask": name, "label": label, "source_wsi": slide})
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "label", "source_wsi"])
        w.writeheader()
        w.writerows(rows)
    return root


def test_leave_site_out_tests_each_site_once(tmp_path):
    from glomkit.data.bueno import load_bueno
    from glomkit.studies.label_fraction import LabelFractionConfig, _tasks

    data = make_bueno_like(tmp_path / "d", n_slides=9)
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

    data = make_bueno_like(tmp_path / "d", n_slides=3)
    cfg = LabelFractionConfig(data=str(data), encoder="", out="", leave_site_out=True, external=True)
    with pytest.raises(GlomkitError, match="exclude each other"):
        _tasks(load_bueno(data), cfg)


def test_cli_passes_leave_site_out_and_refuses_it_with_external(tmp_path):
    from click.testing import CliRunner

    from glomkit._cli.study import study_label_fraction_cmd

    data = make_bueno_like(tmp_path / "d", n_slides=3)
    enc = tmp_path / "enc.pt"
    enc.write_bytes(b"")
    args = ["--data", str(data), "--encoder", str(enc), "-o", str(tmp_path / "o"), "--leave-site-out"]
    res = CliRunner().invoke(study_label_fraction_cmd, [*args, "--external"])
    assert res.exit_code == 2 and "exclude each other" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(study_label_fraction_cmd, args)  # on its own it reaches the encoder check
    assert res.exit_code == 1 and "enc.pt: not a readable SimSiam encoder" in res.output
