"""Runners, datasets and sessions through the client, checked against the
CLI's --json output for the same objects."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

import silo

from conftest import HOSPITALS, unique

GLM = {
    "type": "hfl",
    "datasets": HOSPITALS,
    "min_clients": 3,
    "rounds": 3,
    "task": {"type": "classification", "target": "diagnosis", "positive_class": "malignant"},
    "model": {"package": "glm", "family": "binomial", "l2": 0.0001},
    "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "batch_size": 32},
    "save_best_model": {"metric": "roc_auc", "mode": "max"},
    "seed": 5,
}


def test_runners_and_datasets(client, cli):
    runners = client.runners()
    assert isinstance(runners, pd.DataFrame)
    assert {"hospital-a", "hospital-b", "hospital-c"} <= set(runners["name"])
    assert list(runners.columns[:3]) == ["name", "provider", "status"]
    assert str(runners["last_heartbeat"].dtype).startswith("datetime64")
    r = client.runner("hospital-a")
    assert r.status == "online" and r["provider"] == "local"
    shown, mine = cli("runners", "show", "hospital-a", json_out=True), r.as_dict()
    for moving in ("last_heartbeat", "updated_at"):  # heartbeats go on between the two reads
        shown.pop(moving, None), mine.pop(moving, None)
    assert mine == shown

    # Page by page (a page of 2 here): every runner once, in name order.
    import silo.client as silo_client

    saved, silo_client._RUNNERS_PAGE = silo_client._RUNNERS_PAGE, 2
    try:
        paged = client.runners()
    finally:
        silo_client._RUNNERS_PAGE = saved
    assert list(paged["name"]) == sorted(runners["name"]) and len(paged) >= 3

    ds = client.datasets()
    assert set(HOSPITALS) <= set(ds["name"])
    assert list(ds.columns[:4]) == ["name", "runner", "status", "row_count"]
    d = client.dataset("hospital_a")
    assert d.as_dict() == cli("datasets", "show", "hospital_a", json_out=True)
    assert (d.name, d.runner, d.status, d.row_count) == ("hospital_a", "hospital-a", "connected", 230)
    schema = d.schema()
    assert list(schema.columns[:4]) == ["name", "type", "nulls", "count"]
    assert len(schema) == 32 and schema.set_index("name").loc["diagnosis", "type"] == "string"
    assert d.privacy["identifier_columns"] == ["patient_id"]
    # Identifiers get no summaries: nothing about their values leaves the runner.
    pid = schema.set_index("name").loc["patient_id"]
    assert pd.isna(pid.get("mean")) and pd.isna(pid.get("categories"))


def test_train_wait_metrics_model(client, cli, tmp_path):
    name = unique("pytest-glm")
    out = io.StringIO()
    s = client.create_session({**GLM, "name": name})
    assert isinstance(s, silo.Session) and s.status in ("pending", "running") and s.name == name
    assert s.wait(file=out) is s
    assert s.status == "completed" and s.round == 3 and s.done
    # Not a terminal: one line per change, ending with the last round.
    lines = out.getvalue().splitlines()
    assert lines and lines[-1].startswith("[####################] round 3/3  loss ") and len(lines) == len(set(lines))
    assert s.as_dict() == cli("sessions", "show", s.id, json_out=True)

    listed = client.sessions()
    row = listed.set_index("id").loc[s.id]
    assert (row["name"], row["type"], row["status"], row["rounds"]) == (name, "hfl", "completed", 3)
    assert client.session(s.id).as_dict() == s.as_dict()

    m = s.metrics()
    assert m.as_dict() == cli("sessions", "metrics", s.id, json_out=True)
    assert m.kind == "training" and m.rounds == 3
    fed = m.federated
    assert list(fed.columns[:2]) == ["round", "loss"] and list(fed["round"]) == [1, 2, 3]
    assert {"accuracy", "roc_auc", "log_loss"} <= set(fed.columns)
    cl = m.clients
    assert len(cl) == 9 and list(cl.columns[:4]) == ["round", "dataset", "n_train", "n_test"]
    assert cl["n_train"].dtype == "int64" and set(cl["dataset"]) == set(HOSPITALS)
    assert m.latest()["round"] == 3 and m.metric_names()[0] == "loss"
    fig = m.plot()
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == m.metric_names()
    # Each panel: the federated line and one per client.
    assert len(fig.axes[0].get_lines()) == 1 + 3
    fig = m.plot(["roc_auc"], clients=False)
    assert [ax.get_title() for ax in fig.axes] == ["roc_auc"] and len(fig.axes[0].get_lines()) == 1

    best = s.model(best=True)
    assert best.metadata["best"] is True and best.metadata["session"] == s.id
    assert best.metadata["round"] == s.best_round
    final = s.model()
    assert final.metadata["round"] == 3 and final.classes == ["benign", "malignant"]
    path = s.download_model(tmp_path / "final.json")
    cli("models", "download", s.id, "-o", str(tmp_path / "cli.json"))
    assert json.loads(open(path).read()) == json.loads((tmp_path / "cli.json").read_text())
    assert silo.load_model(path).document == final.document


def test_create_from_file_with_wait(client, tmp_path):
    f = tmp_path / "session.json"
    f.write_text(json.dumps({**GLM, "name": unique("pytest-file"), "rounds": 1}))
    out = io.StringIO()
    s = client.create_session(str(f))
    s.wait(file=out)
    assert s.status == "completed"
    s2 = client.create_session(f, wait=True, progress=False)
    assert s2.status == "completed" and s2.id != s.id


def test_cancel_timeout_and_failure(client):
    s = client.create_session({**GLM, "name": unique("pytest-cancel"), "rounds": 500, "round_timeout": "1h"})
    with pytest.raises(silo.WaitTimeout) as e:
        s.wait(progress=False, timeout=0)
    assert isinstance(e.value, TimeoutError) and s.id in e.value.message and "goes on" in e.value.message
    assert s.cancel() is s and s.status == "cancelled"
    with pytest.raises(silo.SessionFailed) as e:
        s.wait(progress=False)
    assert e.value.session.status == "cancelled" and e.value.code == "session_failed"
    assert s.wait(progress=False, check=False).status == "cancelled"
    with pytest.raises(silo.Conflict):
        client.cancel_session(s.id)


def test_terminal_progress_redraws_one_line():
    from silo import _progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    bar = _progress.Progress(out)
    for k in range(3):
        bar.update({"id": "sess_x", "round": k, "rounds": 2 if k < 2 else 2, "status": "running", "latest": {"loss": 0.5 / (k + 1)}})
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and "round 2/2  loss 0.1667" in text
    assert _progress.line({"round": 0, "rounds": 0, "status": "pending"}) == "[····················] round 0/0  pending"
    linking = {"round": 0, "rounds": 0, "status": "running", "status_reason": "linking: each runner blinds its keys",
               "progress": {"step": "prl_blind", "done": 500, "total": 2000, "unit": "records blinded"}}
    assert _progress.line(linking) == "[#####···············] 500/2000 records blinded  linking: each runner blinds its keys"
