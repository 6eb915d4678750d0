"""The bueno_pas crops: real PAS glomerulus crops (GS vs nonGS) with masks, from 21 slides.

Read from ``../shared/data/bueno_pas`` (CC BY-NC-SA 4.0: never copied into the project).
Every split made here is grouped by ``source_wsi``: crops of one slide are not independent.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glomkit import GlomkitError


def default_root() -> Path:
    """GLOMKIT_BUENO, else ../shared/data/bueno_pas beside the project root."""
    env = os.environ.get("GLOMKIT_BUENO")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "bueno_pas"


@dataclass(frozen=True)
class BuenoSample:
    image: Path
    mask: Path
    label: str  # "GS" or "nonGS"
    slide: str  # source_wsi
    site: str  # SAS, SESCAM or VUHSK


def site_of(slide: str) -> str:
    return slide.split("_")[0]


def load_bueno(root: str | Path | None = None) -> list[BuenoSample]:
    """All samples listed in ``labels.csv``, in file order."""
    root = Path(root) if root is not None else default_root()
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise GlomkitError(f"{csv_path}: bueno_pas labels.csv not found")
    out = []
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            out.append(
                BuenoSample(
                    image=root / row["image"],
                    mask=root / row["mask"],
                    label=row["label"],
                    slide=row["source_wsi"],
                    site=site_of(row["source_wsi"]),
                )
            )
    return out


def slide_folds(samples: list[BuenoSample], n_folds: int = 5, seed: int = 0) -> list[int]:
    """Assign each sample a fold in [0, n_folds), grouped by slide and balanced for GS.

    Slides are shuffled with ``seed`` then dealt greedily to the fold with the fewest GS crops
    (ties: fewest crops), so every fold gets GS examples where the data allows.
    """
    rng = np.random.default_rng(seed)
    slides = sorted({s.slide for s in samples})
    rng.shuffle(slides)
    n_gs = {sl: sum(1 for s in samples if s.slide == sl and s.label == "GS") for sl in slides}
    n_all = {sl: sum(1 for s in samples if s.slide == sl) for sl in slides}
    slides.sort(key=lambda sl: -n_gs[sl])  # deal GS-rich slides first (stable: keeps shuffle among ties)
    fold_gs = [0] * n_folds
    fold_n = [0] * n_folds
    fold_of: dict[str, int] = {}
    for sl in slides:
        k = min(range(n_folds), key=lambda i: (fold_gs[i], fold_n[i]))
        fold_of[sl] = k
        fold_gs[k] += n_gs[sl]
        fold_n[k] += n_all[sl]
    return [fold_of[s.slide] for s in samples]


def split_train_val_test(
    samples: list[BuenoSample], test_fold: int = 0, n_folds: int = 5, seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """Indices (train, val, test): one fold is test, one other fold is validation, the rest train."""
    folds = slide_folds(samples, n_folds, seed)
    val_fold = (test_fold + 1) % n_folds
    train = [i for i, f in enumerate(folds) if f not in (test_fold, val_fold)]
    val = [i for i, f in enumerate(folds) if f == val_fold]
    test = [i for i, f in enumerate(folds) if f == test_fold]
    return train, val, test
