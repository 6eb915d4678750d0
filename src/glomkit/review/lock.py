"""One review server per output folder: ``OUT/<stem>/review/.lock``, held while ``glomkit review`` runs.

Two servers on one folder would each keep their own copy of the reviewed set and overwrite the
other's saves. The lock is an OS file lock (``flock``), released by the kernel when its process
ends however it ends, so the lock of a killed server is simply taken over; the file records the
holder's pid and host for the refusal message. Where ``flock`` is missing, the recorded pid is
checked with :func:`glomkit.io.partial.process_alive` instead.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from glomkit import GlomkitError
from glomkit.io.paths import path_under
from glomkit.review.provenance import REVIEW_DIR

LOCK = ".lock"


class ReviewLock:
    """The review lock of one output folder; ``with ReviewLock(out): ...`` or acquire/release."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = path_under(self.out_dir, REVIEW_DIR, LOCK)
        self._fd: int | None = None

    def holder(self) -> tuple[str, int] | None:
        """(host, pid) recorded in the lock file, if readable."""
        try:
            host, pid = self.path.read_text(encoding="utf-8").split()
            return host, int(pid)
        except (OSError, UnicodeDecodeError, ValueError):
            return None

    def _refuse(self) -> GlomkitError:
        who = self.holder()
        if who is None:
            by = "another glomkit review"
        elif who[0] == socket.gethostname():
            by = f"glomkit review process {who[1]}"
        else:
            by = f"glomkit review process {who[1]} on {who[0]}"
        return GlomkitError(
            f"{self.out_dir}: already being reviewed by {by}; use that server, or stop it first "
            "(two servers would overwrite each other's changes)"
        )

    def acquire(self) -> None:
        """Take the lock or raise a one-line GlomkitError naming the folder and the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: judge the recorded pid
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._refuse() from None
        else:  # pragma: no cover
            from glomkit.io.partial import process_alive

            who = self.holder()
            if who is not None and who[1] != os.getpid() and process_alive(who[1]):
                os.close(fd)
                raise self._refuse()
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (the file stays: removing it would race with a new holder)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    def __enter__(self) -> ReviewLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
