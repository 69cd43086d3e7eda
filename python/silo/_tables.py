"""Tables: pandas DataFrames when pandas is installed, lists of dicts when not.

The client's core needs only the standard library; pandas (and matplotlib
for charts) make the same answers nicer in a notebook.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Sequence

#: Fields the API sends as RFC 3339 times; DataFrames hold them as
#: timezone-aware timestamps.
TIME_FIELDS = frozenset(
    {"created_at", "updated_at", "finished_at", "connected_at", "last_heartbeat", "uploaded_at", "time", "expires_at"}
)


def pandas() -> Any:
    """The pandas module, or None when it is not installed."""
    try:
        import pandas as pd
    except ImportError:
        return None
    return pd


def has_pandas() -> bool:
    return pandas() is not None


def table(rows: Iterable[dict], first: Sequence[str] = (), *, frame: Optional[bool] = None) -> Any:
    """rows as a DataFrame whose columns start with ``first`` (those
    present), then the others in the order they appear; without pandas (or
    with frame=False) the rows themselves, as a list of dicts."""
    rows = [dict(r) for r in rows]
    pd = pandas() if frame is not False else None
    if pd is None:
        if frame:
            raise ImportError("DataFrames need pandas: install it (Debian: apt-get install python3-pandas)")
        return rows
    # The leading columns that some row has (all of them for no rows, so an
    # empty listing still has its columns), then every other field.
    cols: List[str] = [f for f in first if not rows or any(f in r for r in rows)]
    for r in rows:
        cols += [k for k in r if k not in cols]
    df = pd.DataFrame.from_records(rows, columns=cols) if rows else pd.DataFrame(columns=cols)
    for name in cols:
        if name in TIME_FIELDS and rows:
            df[name] = pd.to_datetime(df[name], utc=True, errors="coerce", format="ISO8601") if _iso8601_ok(pd) else pd.to_datetime(
                df[name], utc=True, errors="coerce"
            )
    return df


def _iso8601_ok(pd: Any) -> bool:
    """pandas 2 takes format="ISO8601"; pandas 1.x parses ISO 8601 by itself."""
    try:
        return int(pd.__version__.split(".")[0]) >= 2
    except ValueError:
        return False
