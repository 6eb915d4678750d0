"""Build the detector's INT8 calibration folder: symlinks to training images only.

The 88 hubmap_pas training tiles and the first 88 cgmh_he training tiles, in ``split_annotated``
order (no validation or test image), as used for the bundled detector's INT8 file
(docs/models/detector.md):

    python benchmarks/calibration_set.py CALIB
    glomkit models quantize detector_fp32.onnx detector.onnx --calibration CALIB --data-mpp 0.9 --limit 400
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="new folder for the symlinks")
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--per-source", type=int, default=88, help="training images per source [88]")
    a = ap.parse_args()

    from glomkit.detect.data import find_annotated_images, split_annotated

    if a.out.exists():
        raise SystemExit(f"{a.out}: already exists (give a new folder)")
    a.out.mkdir(parents=True)
    n = 0
    for name, mpp in (("hubmap_pas", 0.8), ("cgmh_he", 1.0)):
        train, _, _ = split_annotated(find_annotated_images(a.shared / name / "tiles", mpp))
        for im in train[: a.per_source]:
            (a.out / f"{name}_{im.path.name}").symlink_to(im.path.resolve())
            n += 1
    print(f"{a.out}: {n} calibration images")


if __name__ == "__main__":
    main()
