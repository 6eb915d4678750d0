"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GLOMKIT_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GLOMKIT_SHARED", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (real data lives beside the project in ../shared)")
    return SHARED


@pytest.fixture(scope="session")
def bueno_root(shared_data: Path) -> Path:
    root = shared_data / "bueno_pas"
    if not (root / "labels.csv").is_file():
        pytest.skip(f"{root} is absent")
    return root


@pytest.fixture(scope="session")
def svs_path(shared_data: Path) -> Path:
    p = shared_data / "slides" / "CMU-1-Small-Region.svs"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p
