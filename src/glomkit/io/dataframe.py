"""Records as a pandas DataFrame (pandas is an optional extra: ``pip install glomkit[pandas]``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from glomkit import GlomkitError


def to_dataframe(rows: Iterable[dict[str, Any]], columns: Sequence[str]):
    """A ``pandas.DataFrame`` of ``rows`` with ``columns`` in order (empty rows keep the columns)."""
    try:
        import pandas as pd
    except ImportError:
        raise GlomkitError("to_dataframe() needs pandas: pip install 'glomkit[pandas]'") from None
    return pd.DataFrame(list(rows), columns=list(columns))
