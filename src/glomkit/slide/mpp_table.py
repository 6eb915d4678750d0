"""A per-slide scale table for cohorts (``glomkit run --mpp-table FILE.csv``).

The CSV has the columns ``file`` and ``mpp``. ``file`` is a path (absolute, or relative to the
current folder or to the table's folder) or a bare file name or stem. Its ``mpp`` is a slide's
µm per level-0 pixel, used under the same rule as ``--mpp`` (for slides that record no scale;
refused against a contradicting recorded scale unless ``--mpp-override``).
"""

from __future__ import annotations

import csv
import io
import math
from functools import lru_cache
from pathlib import Path

from glomkit import GlomkitError
from glomkit.slide.reader import check_mpp

MAX_TABLE_BYTES = 16 << 20  # a scale table is a few KB; more is not a table


class MppTable:
    """The rows of a scale table: path entries (resolved) and bare names or stems."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.by_path: dict[str, float] = {}
        self.by_name: dict[str, float] = {}
        self.path_keys: dict[str, set[str]] = {}  # a path entry as written -> its resolved keys
        self._read()

    def _read(self) -> None:
        where = f"--mpp-table {self.path}"
        try:
            if self.path.stat().st_size > MAX_TABLE_BYTES:
                raise GlomkitError(f"{where}: over {MAX_TABLE_BYTES >> 20} MB; not a scale table")
            text = self.path.read_bytes().decode("utf-8-sig")
        except FileNotFoundError:
            raise GlomkitError(f"{where}: no such file") from None
        except IsADirectoryError:
            raise GlomkitError(f"{where}: a folder, not a CSV file") from None
        except UnicodeDecodeError:
            raise GlomkitError(f"{where}: not a UTF-8 text file") from None
        except OSError as exc:
            raise GlomkitError(f"{where}: cannot read it ({exc.strerror or exc})") from None
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise GlomkitError(f"{where}: not a CSV file ({exc})") from None
        rows = [r for r in rows if any(c.strip() for c in r)]
        if not rows:
            raise GlomkitError(f"{where}: empty; expected the columns file,mpp")
        header = [c.strip().lower() for c in rows[0]]
        if "file" not in header or "mpp" not in header:
            raise GlomkitError(f"{where}: expected the columns file,mpp, got {','.join(header)}")
        fi, mi = header.index("file"), header.index("mpp")
        for n, row in enumerate(rows[1:], start=2):
            if len(row) <= max(fi, mi):
                raise GlomkitError(f"{where}: line {n} has {len(row)} column(s), expected file,mpp")
            name = row[fi].strip()
            if not name:
                raise GlomkitError(f"{where}: line {n} names no file")
            mpp = check_mpp(row[mi].strip(), f"{where} line {n}", "mpp")
            if "/" in name or "\\" in name:
                p = Path(name).expanduser()
                keys = {str(p.resolve()), str((self.path.parent / p).resolve())}
                self.path_keys.setdefault(name, set()).update(keys)
                for key in keys:
                    self._add(self.by_path, key, mpp, where, n, name)
            else:
                self._add(self.by_name, name, mpp, where, n, name)

    @staticmethod
    def _add(table: dict[str, float], key: str, mpp: float, where: str, n: int, name: str) -> None:
        old = table.get(key)
        if old is not None and not math.isclose(old, mpp, rel_tol=1e-9):
            raise GlomkitError(f"{where}: line {n} gives {name} {mpp:g} µm/px, an earlier line {old:g}")
        table[key] = mpp

    def __len__(self) -> int:
        return len(self.by_path) + len(self.by_name)

    def lookup(self, slide: str | Path) -> float | None:
        """The table's mpp of ``slide`` (by resolved path, file name or stem), or None.

        Rows that match one slide in several ways must agree; else a GlomkitError for that slide.
        """
        p = Path(slide)
        found = {
            v
            for v in (
                self.by_path.get(str(p.resolve())),
                self.by_name.get(p.name),
                self.by_name.get(p.stem),
            )
            if v is not None
        }
        if len(found) > 1:
            vals = ", ".join(f"{v:g}" for v in sorted(found))
            raise GlomkitError(f"{slide}: --mpp-table {self.path} gives it several scales ({vals} µm/px)")
        return found.pop() if found else None

    def unmatched(self, slides: list[Path]) -> list[str]:
        """The table's entries that name none of ``slides`` (likely typos)."""
        paths = {str(Path(s).resolve()) for s in slides}
        names = {Path(s).name for s in slides} | {Path(s).stem for s in slides}
        out = [k for k in self.by_name if k not in names]
        return out + [name for name, keys in self.path_keys.items() if not keys & paths]


@lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int, size: int) -> MppTable:
    return MppTable(path)


def load_mpp_table(path: str | Path) -> MppTable:
    """The table at ``path``, read once per process while the file is unchanged."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return MppTable(p)  # raises the one-line error
    return _cached(str(p), st.st_mtime_ns, st.st_size)
