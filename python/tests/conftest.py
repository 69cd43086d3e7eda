"""The tests run against a real Silo workspace: `silo quickstart --rounds 0
--save-login`, which .ci/python starts (a server on SQLite, three local
runners with the breast-cancer sample data as hospital_a, _b and _c). It
tells the tests where things are:

    SILO_CONFIG             the login the quickstart saved
    SILO_BIN                the silo binary (the CLI, for comparisons)
    SILO_QUICKSTART_DIR     the quickstart's data directory (runners' storage)

Without them the tests skip, or fail when SILO_REQUIRE_SERVICES=1 (as in CI),
so CI can never pass by skipping.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import silo

NEEDED = ("SILO_CONFIG", "SILO_BIN", "SILO_QUICKSTART_DIR")
HOSPITALS = ["hospital_a", "hospital_b", "hospital_c"]


def pytest_collection_modifyitems(config, items):
    missing = [v for v in NEEDED if not os.environ.get(v)]
    if not missing:
        return
    reason = f"no Silo workspace: {', '.join(missing)} unset (run: bash .ci/python)"
    if os.environ.get("SILO_REQUIRE_SERVICES") == "1":
        raise pytest.UsageError(reason + " and SILO_REQUIRE_SERVICES=1")
    for item in items:
        if "workspace" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def workspace() -> Dict[str, Any]:
    """Where the quickstart is: its server, the CLI, the runners' storage."""
    saved = json.loads(Path(os.environ["SILO_CONFIG"]).read_text())
    return {
        "server": saved["server"],
        "token": saved["token"],
        "bin": os.environ["SILO_BIN"],
        "dir": Path(os.environ["SILO_QUICKSTART_DIR"]).resolve(),
    }


@pytest.fixture(autouse=True)
def _no_env_login(monkeypatch):
    """Each test chooses its login explicitly; the saved one is the default."""
    monkeypatch.delenv("SILO_SERVER", raising=False)
    monkeypatch.delenv("SILO_TOKEN", raising=False)


@pytest.fixture(scope="session")
def client(workspace) -> silo.Client:
    return silo.Client(workspace["server"], workspace["token"])


@pytest.fixture(scope="session")
def cli(workspace):
    """Runs the silo command (with the saved login) and returns its stdout;
    json=True parses it."""

    def run(*args: str, json_out: bool = False, check: bool = True) -> Any:
        env = {k: v for k, v in os.environ.items() if k not in ("SILO_SERVER", "SILO_TOKEN")}
        p = subprocess.run([workspace["bin"], *args, *(["--json"] if json_out else [])], capture_output=True, text=True, env=env)
        if check and p.returncode != 0:
            raise AssertionError(f"silo {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
        if not check:
            return p
        return json.loads(p.stdout) if json_out else p.stdout

    return run


def unique(prefix: str) -> str:
    """A name no earlier run on the same workspace used."""
    return f"{prefix}-{secrets.token_hex(3)}"


def runner_storage(workspace, runner: str) -> Path:
    return workspace["dir"] / "runners" / runner


def patients_csv(workspace, dataset: str) -> Path:
    """The sample data file a quickstart runner reads for a hospital dataset."""
    return runner_storage(workspace, dataset.replace("_", "-")) / "patients.csv"


def wait_connected(client: silo.Client, names: List[str]) -> None:
    """Waits (bounded) until the runners have read the datasets."""
    deadline = time.monotonic() + 60
    for name in names:
        while True:
            d = client.dataset(name)
            if d.status == "connected":
                break
            assert d.status != "error", f"dataset {name}: {d.error}"
            assert time.monotonic() < deadline, f"dataset {name} still {d.status}"
            time.sleep(0.1)


def max_difference(mine, theirs) -> float:
    """The largest difference between two arrays of predictions, relative
    for values above 1 (a log-link model's mean can be 1e56), absolute
    below: the figure the tests hold to 1e-9."""
    import numpy as np

    a, b = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((np.abs(a - b) / np.maximum(1.0, np.abs(b))).max()) if a.size else 0.0
