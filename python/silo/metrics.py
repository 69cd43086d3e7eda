"""A session's metrics: per round for training, overlaps for record linkage.

Training sessions (``hfl``) report, per round, federated metrics (``loss``
and the task's: ``accuracy``, ``roc_auc``, ``log_loss`` for classification;
``mse``, ``mae``, ``r2`` for regression) and per-client ones (``n_train``,
``n_test``, ``test_<metric>``). Private record linkage (``prl``) reports,
per dataset, ``n_records``, ``n_overlapped_records`` and
``frac_overlapped``. :class:`Metrics` holds either shape exactly as the
server sent it (``as_dict()`` is what ``silo sessions metrics --json``
prints) and shows it as DataFrames and charts.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Sequence

from . import _tables

#: Columns that lead the tables, in this order.
_FEDERATED_FIRST = ("round", "loss")
_CLIENT_FIRST = ("round", "dataset", "n_train", "n_test", "test_loss")
_OVERLAP_FIRST = ("dataset", "n_records", "n_overlapped_records", "frac_overlapped")


class Metrics:
    """Metrics of one session (see the module documentation).

    Attributes:
        session: the session's id.
        kind: ``"training"`` (rounds of federated and per-client metrics) or
            ``"linkage"`` (record-linkage overlaps per dataset).
    """

    def __init__(self, data: Dict[str, Any], session: Optional[str] = None) -> None:
        self._data = data or {}
        self.session = session

    def as_dict(self) -> Dict[str, Any]:
        """The metrics as the API and ``silo sessions metrics --json`` give
        them: ``{"federated": [{"round", "loss", …}], "clients": [{"round",
        "dataset", "n_train", "n_test", "test_<metric>", …}]}``, or for record
        linkage ``{"clients": [{"dataset", "n_records",
        "n_overlapped_records", "frac_overlapped"}]}``. A copy."""
        return copy.deepcopy(self._data)

    @property
    def kind(self) -> str:
        clients = self._data.get("clients") or []
        if not self._data.get("federated") and clients and all("n_overlapped_records" in c for c in clients):
            return "linkage"
        return "training"

    @property
    def rounds(self) -> int:
        """The number of completed rounds reported."""
        return len(self._data.get("federated") or [])

    @property
    def federated(self) -> Any:
        """Federated metrics, one row per round (a DataFrame, or a list of
        dicts without pandas)."""
        rows = sorted(self._data.get("federated") or [], key=lambda r: r.get("round", 0))
        df = _tables.table(rows, _FEDERATED_FIRST)
        return _int_columns(df, ("round",))

    @property
    def clients(self) -> Any:
        """Per-client metrics: one row per round and dataset for training;
        one row per dataset with its overlap for record linkage."""
        rows = list(self._data.get("clients") or [])
        if self.kind == "linkage":
            return _int_columns(_tables.table(rows, _OVERLAP_FIRST), ("n_records", "n_overlapped_records"))
        rows.sort(key=lambda r: (r.get("round", 0), str(r.get("dataset", ""))))
        return _int_columns(_tables.table(rows, _CLIENT_FIRST), ("round", "n_train", "n_test"))

    @property
    def overlaps(self) -> Any:
        """Record linkage's overlap per dataset (the same table as
        :attr:`clients` for a linkage session)."""
        if self.kind != "linkage":
            raise AttributeError("overlaps are reported by record-linkage (prl) sessions; this one trains: see .federated and .clients")
        return self.clients

    def latest(self) -> Dict[str, float]:
        """The last round's federated metrics, or {}."""
        rows = self._data.get("federated") or []
        return dict(max(rows, key=lambda r: r.get("round", 0))) if rows else {}

    def metric_names(self) -> List[str]:
        """The federated metrics reported, loss first."""
        names: List[str] = []
        for r in self._data.get("federated") or []:
            names += [k for k in r if k != "round" and k not in names]
        return sorted(names, key=lambda k: (k != "loss", k))

    def plot(self, metrics: Optional[Sequence[str]] = None, clients: bool = True, figsize: Optional[Sequence[float]] = None) -> Any:
        """Charts the metrics with matplotlib and returns the Figure.

        Training: one panel per federated metric (``metrics`` picks them;
        default all, loss first) against the round, with each client's
        ``test_<metric>`` as thin lines when ``clients``. Record linkage: the
        fraction of each dataset's records found in the others.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("charts need matplotlib: install it (Debian: apt-get install python3-matplotlib)") from None
        if self.kind == "linkage":
            rows = self._data.get("clients") or []
            fig, ax = plt.subplots(figsize=figsize or (6, 3))
            ax.bar([r["dataset"] for r in rows], [r["frac_overlapped"] for r in rows], color="tab:blue")
            ax.set_ylim(0, 1)
            ax.set_ylabel("fraction of records linked")
            ax.set_title(f"Record linkage{' ' + self.session if self.session else ''}")
            fig.tight_layout()
            return fig
        names = list(metrics) if metrics else self.metric_names()
        if not names:
            raise ValueError("no round has completed yet: nothing to plot")
        fed = sorted(self._data.get("federated") or [], key=lambda r: r.get("round", 0))
        cols = 2 if len(names) == 4 else min(len(names), 3)
        nrows = (len(names) + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=figsize or (4.2 * cols, 3.2 * nrows), squeeze=False)
        by_client: Dict[str, List[Dict[str, Any]]] = {}
        for c in self._data.get("clients") or []:
            by_client.setdefault(str(c.get("dataset")), []).append(c)
        for ax, name in zip(axes.flat, names):
            pts = [(r["round"], r[name]) for r in fed if name in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linewidth=2, label="federated")
            if clients:
                for ds, rows in sorted(by_client.items()):
                    cp = sorted((r["round"], r["test_" + name]) for r in rows if "test_" + name in r)
                    if cp:
                        ax.plot([p[0] for p in cp], [p[1] for p in cp], linewidth=1, alpha=0.6, label=ds)
            ax.set_title(name)
            ax.set_xlabel("round")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        axes.flat[0].legend(fontsize="small")
        if self.session:
            fig.suptitle(self.session)
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        if self.kind == "linkage":
            return f"<silo.Metrics {self.session or ''} linkage of {len(self._data.get('clients') or [])} datasets>"
        latest = ", ".join(f"{k} {v:.4g}" for k, v in sorted(self.latest().items()) if k != "round")
        return f"<silo.Metrics {self.session or ''} {self.rounds} rounds{': ' + latest if latest else ''}>"

    def _repr_html_(self) -> Optional[str]:
        df = self.clients if self.kind == "linkage" else self.federated
        return df.to_html(index=False) if hasattr(df, "to_html") else None


def _int_columns(df: Any, names: Sequence[str]) -> Any:
    """Counts and rounds as integers in a DataFrame (JSON numbers arrive as
    floats); lists of dicts are left as they are."""
    if not hasattr(df, "columns"):
        return df
    for n in names:
        if n in df.columns and df[n].notna().all():
            df[n] = df[n].astype("int64")
    return df
