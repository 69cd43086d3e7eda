"""Record linkage and EDA: the client's shapes for their metrics and results,
and what a server that does not run those kinds makes the client say.

Nothing is invented when the server cannot answer: the client raises."""

from __future__ import annotations

import pytest

import silo

from conftest import HOSPITALS, unique

PRL = {
    "type": "prl",
    "datasets": ["hospital_a", "hospital_b"],
    "id_columns": {"hospital_a": ["patient_id"], "hospital_b": ["patient_id"]},
    "normalize": ["trim", "lowercase"],
}
EDA = {
    "type": "eda",
    "mode": "individual",
    "datasets": ["hospital_a", "hospital_b"],
    "columns": {"hospital_a": [], "hospital_b": ["mean_radius"]},
    "statistics": ["count", "mean", "std", "histogram"],
    "differential_privacy": {"epsilon": 1.0, "delta": 1e-6},
}


def test_record_linkage(client):
    """A PRL session's metrics carry each dataset's overlap. A server that
    does not run PRL says so, as NotAvailable."""
    try:
        s = client.create_session({**PRL, "name": unique("pytest-prl")})
    except silo.NotAvailable as e:
        assert "does not run prl sessions" in e.message and client.server in e.message
        assert e.code == "not_available" and e.status == 400
        return
    s.wait(progress=False)
    m = s.metrics()
    assert m.kind == "linkage"
    overlaps = m.overlaps
    assert list(overlaps.columns[:4]) == ["dataset", "n_records", "n_overlapped_records", "frac_overlapped"]
    assert set(overlaps["dataset"]) == set(PRL["datasets"])


def test_eda_results(client):
    """EDA results come from the server only: a server that runs no EDA (or
    has no results route) makes results() raise, never return made-up data."""
    try:
        s = client.create_session({**EDA, "name": unique("pytest-eda")})
    except silo.NotAvailable as e:
        assert "does not run eda sessions" in e.message and e.code == "not_available"
        # A server without EDA has no results route at all.
        with pytest.raises(silo.Error) as r:
            client.results("sess_doesnotexist")
        if isinstance(r.value, silo.NotAvailable):
            assert "does not serve session results" in r.value.message and r.value.status == 404
        return
    s.wait(progress=False)
    res = s.results()
    assert set(EDA["datasets"]) <= set(res.datasets)
    assert "mean_radius" in res["hospital_b"].describe().columns


def test_mistakes_in_a_kind_the_server_runs_stay_invalid(client):
    """Only a refusal of the kind itself becomes NotAvailable: a typo in a
    training session is still Invalid, naming the field."""
    with pytest.raises(silo.Invalid) as e:
        client.create_session({"name": "pytest-typo", "type": "hfl", "datasets": HOSPITALS, "rounds": 1, "id_colums": {}})
    assert not isinstance(e.value, silo.NotAvailable) and "id_colums" in e.value.message


LINKAGE = {
    "clients": [
        {"dataset": "bank_customers", "n_records": 1000, "n_overlapped_records": 640, "frac_overlapped": 0.64},
        {"dataset": "telco_customers", "n_records": 800, "n_overlapped_records": 640, "frac_overlapped": 0.8},
    ]
}

RESULTS = {
    "datasets": {
        "hospital_a": {
            "age": {"count": 230.4, "mean": 54.1, "std": 9.9, "quantiles": {"0.5": 55.0}, "histogram": {"edges": [20, 50, 80], "counts": [90.2, 140.1]}},
            "ward": {"count": 229.0, "unique": 3.0, "top_values": [["north", 120]]},
        },
        "pooled": {"age": {"count": 419.7, "mean": 53.2}},
    },
    "pairs": [],
    "epsilon_spent": 1.0,
}


def test_linkage_metrics_shape():
    """How the client shows the linkage shape the API documents."""
    m = silo.Metrics(LINKAGE, session="sess_prl")
    assert m.kind == "linkage" and m.as_dict() == LINKAGE and m.as_dict() is not m._data
    o = m.overlaps
    assert list(o["dataset"]) == ["bank_customers", "telco_customers"] and o["n_records"].dtype == "int64"
    fig = m.plot()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["bank_customers", "telco_customers"]
    with pytest.raises(AttributeError, match="record-linkage"):
        silo.Metrics({"federated": [{"round": 1, "loss": 0.5}], "clients": []}).overlaps


def test_results_shape():
    """How the client shows the EDA results shape the API documents."""
    r = silo.Results(RESULTS, session="sess_eda")
    assert r.datasets == ["hospital_a", "pooled"] and len(r) == 2 and r.epsilon_spent == 1.0
    d = r["hospital_a"].describe()
    assert list(d.columns) == ["age", "ward"]
    assert list(d.index) == ["count", "mean", "std", "unique", "quantiles[0.5]"]
    assert d.loc["mean", "age"] == 54.1
    h = r["hospital_a"].histogram("age")
    assert h.to_dict("records") == [{"left": 20, "right": 50, "count": 90.2}, {"left": 50, "right": 80, "count": 140.1}]
    assert r.pooled.column("age")["count"] == 419.7
    with pytest.raises(KeyError, match="hospital_z"):
        r["hospital_z"]
    assert len(r.plot("age").axes) == 1
