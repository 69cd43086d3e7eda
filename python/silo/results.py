"""Results of exploratory data analysis sessions (``type: "eda"``).

Every number in them is differentially private. The server's JSON shape::

    {"datasets": {"<dataset>" or "pooled": {"<column>": {"count": …, "mean": …,
                  "histogram": {"edges": [...], "counts": [...]}, …}}},
     "pairs": [...], "epsilon_spent": …}

:class:`Results` keeps it as sent (``as_dict()``) and shows it per dataset:
``results["hospital_a"].describe()`` is a table of the scalar statistics
(rows) by column, ``.histogram("age")`` one column's histogram.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Iterator, List, Optional, Sequence

from . import _tables

#: The order statistics appear in describe(); others follow by name.
_ORDER = ("count", "missing", "mean", "std", "min", "max", "unique")


class DatasetResults:
    """The statistics of one dataset (or of ``pooled``), by column."""

    def __init__(self, name: str, columns: Dict[str, Dict[str, Any]]) -> None:
        self.name = name
        self._columns = columns

    @property
    def columns(self) -> List[str]:
        return list(self._columns)

    def column(self, name: str) -> Dict[str, Any]:
        """Every statistic of one column, as sent."""
        try:
            return copy.deepcopy(self._columns[name])
        except KeyError:
            raise KeyError(f"no results for column {name!r} of {self.name} (it has: {', '.join(self._columns)})") from None

    def describe(self) -> Any:
        """The scalar statistics (count, missing, mean, std, min, max,
        unique, quantiles, …) as a table with one row per statistic and one
        column per data column, like ``DataFrame.describe()``; without pandas
        a dict of column → statistics."""
        flat: Dict[str, Dict[str, Any]] = {}
        for col, stats in self._columns.items():
            row: Dict[str, Any] = {}
            for k, v in stats.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    row[k] = v
                elif isinstance(v, dict) and v and all(isinstance(x, (int, float)) for x in v.values()):
                    row.update({f"{k}[{q}]": x for q, x in v.items()})  # e.g. quantiles
            flat[col] = row
        pd = _tables.pandas()
        if pd is None:
            return flat
        names: List[str] = []
        for row in flat.values():
            names += [k for k in row if k not in names]
        names.sort(key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k))
        return pd.DataFrame({c: [flat[c].get(k) for k in names] for c in flat}, index=names)

    def histogram(self, column: str) -> Any:
        """One column's histogram: rows of ``left``, ``right``, ``count``."""
        h = self.column(column).get("histogram")
        if not h:
            raise KeyError(f"column {column!r} of {self.name} has no histogram in these results")
        edges, counts = h.get("edges") or [], h.get("counts") or []
        rows = [{"left": edges[i], "right": edges[i + 1], "count": c} for i, c in enumerate(counts) if i + 1 < len(edges)]
        return _tables.table(rows, ("left", "right", "count"))

    def __repr__(self) -> str:
        return f"<silo.DatasetResults {self.name}: {len(self._columns)} columns>"

    def _repr_html_(self) -> Optional[str]:
        d = self.describe()
        return d.to_html() if hasattr(d, "to_html") else None


class Results:
    """The results of an EDA session (see the module documentation)."""

    def __init__(self, data: Dict[str, Any], session: Optional[str] = None) -> None:
        self._data = data or {}
        self.session = session

    def as_dict(self) -> Dict[str, Any]:
        """The results exactly as the API sends them (a copy)."""
        return copy.deepcopy(self._data)

    @property
    def datasets(self) -> List[str]:
        """The names results are given for (datasets, and ``pooled``)."""
        return list((self._data.get("datasets") or {}).keys())

    def __getitem__(self, name: str) -> DatasetResults:
        ds = self._data.get("datasets") or {}
        if name not in ds:
            raise KeyError(f"no results for {name!r} (there are: {', '.join(ds) or 'none'})")
        return DatasetResults(name, ds[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.datasets)

    def __len__(self) -> int:
        return len(self.datasets)

    @property
    def pooled(self) -> DatasetResults:
        """Statistics pooled over every dataset (from mergeable summaries)."""
        return self["pooled"]

    @property
    def pairs(self) -> List[Any]:
        return copy.deepcopy(self._data.get("pairs") or [])

    @property
    def epsilon_spent(self) -> Any:
        return self._data.get("epsilon_spent")

    def plot(self, column: str, datasets: Optional[Sequence[str]] = None) -> Any:
        """Draws one column's histogram for each dataset (and pooled) that
        has one; returns the matplotlib Figure."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("charts need matplotlib: install it (Debian: apt-get install python3-matplotlib)") from None
        names = [n for n in (datasets or self.datasets) if (self[n]._columns.get(column) or {}).get("histogram")]
        if not names:
            raise KeyError(f"no histogram of column {column!r} in these results")
        fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
        for ax, n in zip(axes.flat, names):
            h = self[n]._columns[column]["histogram"]
            edges, counts = h["edges"], h["counts"]
            ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges, edges[1:])], align="edge", edgecolor="white")
            ax.set_title(f"{n}: {column}")
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        return f"<silo.Results {self.session or ''}: {', '.join(self.datasets)}; epsilon spent {self.epsilon_spent}>"
