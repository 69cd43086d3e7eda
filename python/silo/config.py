"""Which server, and which token: the same rules as the ``silo`` command.

Explicit arguments win, then ``$SILO_SERVER`` / ``$SILO_TOKEN``, then the
login ``silo login`` saved (``$SILO_CONFIG``, default
``~/.config/silo/config.json`` on Linux). The saved token is only ever sent
to the server it was issued by, so pointing the client at another server
never leaks it there.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from pathlib import Path
from typing import NamedTuple, Optional

from . import errors


def config_path() -> Path:
    """Where ``silo login`` keeps the login: ``$SILO_CONFIG``, or
    ``config.json`` in the user's configuration directory (as Go's
    ``os.UserConfigDir``: ``$XDG_CONFIG_HOME`` or ``~/.config`` on Linux,
    ``~/Library/Application Support`` on macOS, ``%AppData%`` on Windows)."""
    p = os.environ.get("SILO_CONFIG")
    if p:
        return Path(p)
    if sys.platform == "win32":
        base = os.environ.get("AppData")
        if not base:
            raise errors.Error("cannot find where the login is kept: %AppData% is not set (set SILO_CONFIG to a file path)")
    elif sys.platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "silo" / "config.json"


class SavedLogin(NamedTuple):
    """The login ``silo login`` saved; empty strings when there is none."""

    server: str = ""
    token: str = ""
    email: str = ""
    path: Optional[Path] = None


def load_saved_login() -> SavedLogin:
    """Reads the saved login, or an empty one when there is none yet."""
    path = config_path()
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return SavedLogin(path=path)
    except OSError as e:
        raise errors.Error(f"read saved login {path}: {e.strerror or e}") from None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise errors.Error(f"read saved login {path}: {e} (fix or delete it, then run silo login)") from None
    return SavedLogin(
        server=str(doc.get("server") or ""), token=str(doc.get("token") or ""), email=str(doc.get("email") or ""), path=path
    )


def normalize_server(url: str) -> str:
    """Checks that url is an http(s) URL and drops a trailing slash, so one
    server is always spelled the same way (as the CLI does)."""
    u = urllib.parse.urlsplit(url.strip())
    if u.scheme not in ("http", "https") or not u.netloc:
        raise errors.Invalid(f"server URL {url!r} must look like https://silo.example.org", field="server")
    return urllib.parse.urlunsplit(u).rstrip("/")


class Credentials(NamedTuple):
    server: str
    token: str
    #: where the token came from: "argument", "environment" or "saved login"
    source: str


def resolve(server: Optional[str] = None, token: Optional[str] = None) -> Credentials:
    """Chooses the server and the token as the CLI does."""
    saved: Optional[SavedLogin] = None
    chosen = server or os.environ.get("SILO_SERVER") or ""
    if not chosen:
        saved = load_saved_login()
        chosen = saved.server
    if not chosen:
        raise errors.Invalid(
            "no server given: pass server='https://…', set $SILO_SERVER, "
            "or sign in once with 'silo login --server URL --email EMAIL'",
            field="server",
        )
    chosen = normalize_server(chosen)
    if token:
        return Credentials(chosen, token, "argument")
    if os.environ.get("SILO_TOKEN"):
        return Credentials(chosen, os.environ["SILO_TOKEN"], "environment")
    if saved is None:
        saved = load_saved_login()
    if saved.token and saved.server and normalize_server(saved.server) == chosen:
        return Credentials(chosen, saved.token, "saved login")
    raise errors.Unauthorized(
        f"not signed in to {chosen}: run 'silo login --server {chosen} --email EMAIL', "
        "set $SILO_TOKEN, or pass token=",
        server=chosen,
    )
