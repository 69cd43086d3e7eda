"""connect(): which server and token, as the CLI chooses them, and what
happens when the server cannot be reached or answers badly."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

import silo
from silo import config as silo_config


def test_saved_login(workspace):
    """With nothing in the environment, connect() uses what `silo login`
    (here: `silo quickstart --save-login`) saved."""
    c = silo.connect()
    assert c.server == workspace["server"]
    assert c.user["email"] == "admin@silo.example"
    assert silo.config_path() == silo_config.load_saved_login().path
    assert workspace["token"] not in repr(c)


def test_environment_overrides_saved_login_and_arguments_override_both(workspace, cli, monkeypatch):
    other = cli("tokens", "create", "--name", "pytest-env", json_out=True)
    mine = silo.connect().me()["token_id"]
    monkeypatch.setenv("SILO_SERVER", workspace["server"] + "/")
    monkeypatch.setenv("SILO_TOKEN", other["token"])
    assert silo.connect().me()["token_id"] == other["id"] != mine
    # Explicit arguments win over the environment.
    assert silo.connect(workspace["server"], workspace["token"]).me()["token_id"] == mine
    # A revoked token is refused, with a hint about where it came from.
    cli("tokens", "revoke", other["id"])
    with pytest.raises(silo.Unauthorized) as e:
        silo.connect()
    assert e.value.code == "unauthorized" and e.value.status == 401 and "$SILO_TOKEN" in e.value.message


def test_saved_token_goes_only_to_its_server(workspace, monkeypatch):
    """Pointing the client at another server must not send it the saved token."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"user": {"email": "x"}}')

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}"
        monkeypatch.setenv("SILO_SERVER", url)
        with pytest.raises(silo.Unauthorized, match=f"not signed in to {url}"):
            silo.connect()
        with pytest.raises(silo.Unauthorized):
            silo.connect(url)
        assert seen == []
    finally:
        srv.shutdown()


def test_saved_login_file_problems(tmp_path, monkeypatch):
    monkeypatch.setenv("SILO_CONFIG", str(tmp_path / "none.json"))
    with pytest.raises(silo.Invalid, match="no server given") as e:
        silo.connect()
    assert e.value.field == "server"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    monkeypatch.setenv("SILO_CONFIG", str(bad))
    with pytest.raises(silo.Error, match=f"read saved login {bad}.*fix or delete it"):
        silo.connect()
    with pytest.raises(silo.Invalid, match="must look like https://") as e:
        silo.connect("ftp://example.org", "t")
    assert e.value.field == "server"


def test_default_config_path(monkeypatch, tmp_path):
    monkeypatch.delenv("SILO_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    if silo_config.sys.platform.startswith("linux"):
        assert silo.config_path() == tmp_path / "silo" / "config.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_named_and_reads_are_retried():
    url = f"http://127.0.0.1:{_free_port()}"
    c = silo.Client(url, "silo_not_to_be_shown", retries=2)
    c._http._sleep = lambda s: None  # no waiting between tries in a test
    with pytest.raises(silo.Unreachable) as e:
        c.datasets()
    assert e.value.code == "unreachable"
    assert "silo_not_to_be_shown" not in repr(e.value) + str(e.value) + repr(c) + repr(c._http)
    assert url in e.value.message and "connection refused" in e.value.message and "tried 3 times" in e.value.message


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A proxy in front of a restarting server: 503 twice, then an answer."""

    calls: list = []

    def _answer(self):
        type(self).calls.append(self.command)
        if len(type(self).calls) <= 2:
            self.send_response(503)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"upstream restarting\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps([{"name": "d", "status": "connected"}]).encode())

    do_GET = do_POST = _answer

    def log_message(self, *a):
        pass


def test_reads_retry_on_503_and_writes_do_not():
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        c = silo.Client(f"http://127.0.0.1:{srv.server_port}", "t")
        delays = []
        c._http._sleep = delays.append
        _Flaky.calls = []
        rows = c.datasets()
        assert list(rows["name"] if hasattr(rows, "columns") else [r["name"] for r in rows]) == ["d"]
        assert _Flaky.calls == ["GET"] * 3 and len(delays) == 2 and delays[1] > 0
        # A write is sent once: a 503 comes back as the error it is.
        _Flaky.calls = []
        with pytest.raises(silo.ServerError) as e:
            c.create_session({"name": "x"})
        assert _Flaky.calls == ["POST"] and e.value.status == 503
        assert e.value.message == "server returned 503 Service Unavailable: upstream restarting"
    finally:
        srv.shutdown()


def test_token_never_follows_a_redirect():
    """A server (or proxy) that redirects elsewhere does not hand the token on."""
    seen = {}

    def handler(name, location=None):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen[name] = self.headers.get("Authorization")
                if location:
                    self.send_response(302)
                    self.send_header("Location", location + self.path)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"[]")

            def log_message(self, *a):
                pass

        return H

    other = http.server.HTTPServer(("127.0.0.1", 0), handler("other"))
    first = http.server.HTTPServer(("127.0.0.1", 0), handler("first", f"http://127.0.0.1:{other.server_port}"))
    for srv in (other, first):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        silo.Client(f"http://127.0.0.1:{first.server_port}", "silo_secret").datasets()
        assert seen == {"first": "Bearer silo_secret", "other": None}
    finally:
        first.shutdown()
        other.shutdown()
