"""The hidden ``OUT/.<stem>.*.partial/`` folders a slide's outputs are built in, and their cleanup.

Each partial folder records its owner (host and process id) in ``.owner``. A run removes the
partial folders of its own slides whose owner process is gone (a killed run); those of a live
process (a concurrent run on the same OUT) are left alone.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

OWNER = ".owner"
ORPHAN_AGE_S = 24 * 3600  # a partial folder without an owner file is removed after this


def make_partial_dir(out_root: Path, stem: str) -> Path:
    """A new ``OUT/.<stem>.<random>.partial/`` folder owned by this process."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".partial", dir=out_root))
    (tmp / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n", encoding="utf-8")
    return tmp


def release_partial_dir(tmp: Path) -> None:
    """Remove the owner record before the folder is renamed into place."""
    (tmp / OWNER).unlink(missing_ok=True)


def _owner_alive(folder: Path) -> bool:
    try:
        host, pid = (folder / OWNER).read_text(encoding="utf-8").split()
        pid_i = int(pid)
    except (OSError, ValueError):  # no owner record: judge by age
        try:
            return time.time() - folder.stat().st_mtime < ORPHAN_AGE_S
        except OSError:
            return False
    if host != socket.gethostname():
        return True  # another machine's run (shared storage): not ours to judge
    if pid_i == os.getpid():
        return False  # an earlier attempt of this very process that did not finish
    try:
        os.kill(pid_i, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_partials(out_root: Path, stem: str) -> list[Path]:
    """The partial folders of ``stem`` in ``out_root`` whose owner process is gone."""
    out_root = Path(out_root)
    if not out_root.is_dir():
        return []
    return [
        p
        for p in sorted(out_root.glob(f".{glob.escape(stem)}.*.partial"))
        if p.is_dir()
        and not p.is_symlink()
        and p.name[len(stem) + 2 :].count(".") == 1
        and not _owner_alive(p)
    ]


def clean_stale_partials(out_root: Path, stem: str) -> list[Path]:
    """Remove the partial folders of ``stem`` left by killed runs; returns those removed."""
    removed = []
    for p in stale_partials(out_root, stem):
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
    return removed
