"""docs/API.md: every ```python block runs, in order, in one namespace (as a reader would)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glomkit.models.registry import WEIGHTS_DIR

DOC = Path(__file__).resolve().parents[1] / "docs" / "API.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_api_page_has_examples():
    assert len(_blocks()) >= 5


@pytest.mark.slow
@pytest.mark.skipif(not (WEIGHTS_DIR / "detector.onnx").is_file(), reason="bundled models are not built yet")
def test_every_example_in_api_md_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("pandas")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_md"}
    for i, code in enumerate(_blocks(), start=1):
        try:
            exec(compile(code, f"{DOC.name} block {i}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - name the block that failed
            pytest.fail(f"docs/API.md block {i} failed: {type(exc).__name__}: {exc}\n{code}")
    out = capsys.readouterr().out
    assert "globally sclerosed" in out and "pass mpp=" in out
