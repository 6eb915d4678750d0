"""Finding patch images among files and folders (glomkit.io.images)."""

from __future__ import annotations

import pytest

from glomkit import GlomkitError
from glomkit.io.images import collect_images


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folders_are_searched_recursively_and_sorted(tmp_path):
    b = _touch(tmp_path / "d" / "sub" / "b.PNG")
    a = _touch(tmp_path / "d" / "a.jpg")
    _touch(tmp_path / "d" / "notes.txt")
    m = _touch(tmp_path / "d" / "masks" / "a.png")
    f = _touch(tmp_path / "single.tif")
    assert collect_images([tmp_path / "d", f]) == [a, m, b, f]
    assert collect_images([tmp_path / "d"], skip_dirs=("masks",)) == [a, b]


def test_missing_input_and_empty_folder_are_one_line_errors(tmp_path):
    with pytest.raises(GlomkitError, match="nope: no such file or folder"):
        collect_images([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(GlomkitError, match="empty: no images found"):
        collect_images([tmp_path / "empty"])
