"""The API's errors arrive as silo.Error subclasses with its code, message
and field, from a real server."""

from __future__ import annotations

import pytest

import silo


def test_not_found(client):
    with pytest.raises(silo.NotFound) as e:
        client.dataset("no_such_dataset")
    err = e.value
    assert isinstance(err, silo.Error)
    assert (err.code, err.status, err.server) == ("not_found", 404, client.server)
    assert "no_such_dataset" in err.message and str(err) == err.message
    with pytest.raises(silo.NotFound):
        client.session("sess_doesnotexist")
    with pytest.raises(silo.NotFound):
        client.runner("no-such-runner")


def test_forbidden_with_a_scoped_token(client, cli, workspace):
    """A token scoped to reading datasets may list them, and nothing else."""
    tok = cli("tokens", "create", "--name", "pytest-scoped", "--scope", "datasets:read", json_out=True)
    try:
        scoped = silo.connect(workspace["server"], tok["token"])
        assert len(scoped.datasets()) >= 3
        with pytest.raises(silo.Forbidden) as e:
            scoped.sessions()
        assert (e.value.code, e.value.status) == ("forbidden", 403) and e.value.message
        with pytest.raises(silo.Forbidden):
            scoped.create_session({"name": "nope", "datasets": ["hospital_a"], "rounds": 1})
    finally:
        cli("tokens", "revoke", tok["id"])


def test_invalid_names_the_field(client):
    base = {
        "name": "pytest-invalid",
        "type": "hfl",
        "datasets": ["hospital_a", "hospital_b"],
        "rounds": 1,
        "task": {"type": "classification", "target": "diagnosis"},
        "model": {"package": "glm", "family": "binomial"},
    }
    cases = [
        ({"model": {"package": "glm", "family": "gamma"}}, "model.family", "binomial"),
        ({"rounds": 0}, "rounds", "between 1 and"),
        ({"datasets": ["hospital_a", "nowhere"]}, "datasets", "nowhere"),
        ({"task": {"type": "classification", "target": "no_such_column"}}, "task.target", "no_such_column"),
    ]
    for change, field, words in cases:
        with pytest.raises(silo.Invalid) as e:
            client.create_session({**base, **change})
        assert (e.value.code, e.value.status, e.value.field) == ("invalid", 400, field), repr(e.value)
        assert words in e.value.message, e.value.message
    # Every problem at once, each with its field.
    with pytest.raises(silo.Invalid) as e:
        client.create_session({**base, "rounds": 0, "model": {"package": "glm", "family": "gamma"}})
    got = dict(e.value.fields)
    assert set(got) >= {"rounds", "model.family"}, e.value.fields
    assert "between 1 and" in got["rounds"] and "binomial" in got["model.family"], got
    with pytest.raises(silo.Invalid) as e:
        client.create_session({**base, "modle": {}})
    assert "modle" in e.value.message


def test_conflict(client):
    s = client.create_session(
        {
            "name": "pytest-conflict",
            "datasets": ["hospital_a", "hospital_b"],
            "rounds": 1,
            "task": {"type": "classification", "target": "diagnosis"},
            "model": {"package": "glm"},
        },
        wait=True,
        progress=False,
    )
    with pytest.raises(silo.Conflict) as e:
        s.cancel()
    assert e.value.status == 409 and "already completed" in e.value.message


def test_config_file_problems(client, tmp_path):
    with pytest.raises(silo.Invalid, match="no session configuration file"):
        client.create_session(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(silo.Invalid, match="not valid JSON"):
        client.create_session(str(bad))
