"""The hidden ``OUT/.<stem>.*.partial/`` folders a slide's outputs are built in, and their cleanup.

A partial folder's name carries its owner: ``.<stem>.<host>-<pid>-<random>.partial``, where
``<host>`` is a short hash of the host name. The owner is part of the folder from the moment it
exists, so a run killed at any instant (even between creating the folder and renaming it into
place) leaves a folder whose owner can be judged. A run removes the partial folders of its own
slides whose owner process is gone (a killed run); those of a live process (a concurrent run on
the same OUT) or of another host are left alone. Folders of older versions record the owner in
an ``.owner`` file, which is still read.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

OWNER = ".owner"  # the owner record of partial folders made by older versions
ORPHAN_AGE_S = 24 * 3600  # a partial folder whose owner is unknown is removed after this
_NAMED_OWNER = re.compile(r"([0-9a-f]{8})-([0-9]+)-[^.]+")


def _host_tag(host: str | None = None) -> str:
    """Eight hex digits naming ``host`` (this host by default)."""
    name = socket.gethostname() if host is None else host
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]


def make_partial_dir(out_root: Path, stem: str) -> Path:
    """A new ``OUT/.<stem>.<host>-<pid>-<random>.partial/`` folder owned by this process."""
    prefix = f".{stem}.{_host_tag()}-{os.getpid()}-"
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=out_root))


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs on this host. A zombie (killed, not yet reaped: in a container
    whose init does not reap, an orphaned worker stays one) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] not in "ZX"
    except (OSError, ValueError, IndexError):  # no /proc (not Linux): os.kill said it exists
        return True


def _owner(folder: Path, stem: str) -> tuple[str, int] | None:
    """(host tag, pid) of a partial folder, from its name or from an older ``.owner`` file."""
    middle = folder.name[len(stem) + 2 : -len(".partial")]
    m = _NAMED_OWNER.fullmatch(middle)
    if m:
        return m.group(1), int(m.group(2))
    try:
        host, pid = (folder / OWNER).read_text(encoding="utf-8").split()
        return _host_tag(host), int(pid)
    except (OSError, ValueError):
        return None


def _owner_alive(folder: Path, stem: str) -> bool:
    owner = _owner(folder, stem)
    if owner is None:  # owner unknown: judge by age
        try:
            return time.time() - folder.stat().st_mtime < ORPHAN_AGE_S
        except OSError:
            return False
    host, pid = owner
    if host != _host_tag():
        return True  # another machine's run (shared storage): not ours to judge
    if pid == os.getpid():
        return False  # an earlier attempt of this very process that did not finish
    return process_alive(pid)


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
        and not _owner_alive(p, stem)
    ]


def clean_stale_partials(out_root: Path, stem: str) -> list[Path]:
    """Remove the partial folders of ``stem`` left by killed runs; returns those removed.

    A review caught in one (a run killed while replacing ``OUT/<stem>/``) is put back into
    ``OUT/<stem>/review/``; where that folder holds a review already, the partial folder is kept.
    """
    removed = []
    for p in stale_partials(out_root, stem):
        review, final = p / "review", Path(out_root) / stem
        if review.is_dir() and not review.is_symlink():
            if not final.is_dir() or (final / "review").exists():
                continue
            try:
                os.replace(review, final / "review")
            except OSError:
                continue
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
    return removed
