"""The package itself: it builds offline, works with the standard library
alone, and documents itself."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import os
import pydoc
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import silo

ROOT = Path(__file__).resolve().parents[1]


def _backend():
    spec = importlib.util.spec_from_file_location("silo_build", ROOT / "_build" / "silo_build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_installed_package_is_tested():
    """CI installs the package with pip and sets SILO_TEST_INSTALLED=1: the
    tests must then run the installed copy, not the source tree."""
    if os.environ.get("SILO_TEST_INSTALLED") != "1":
        pytest.skip("SILO_TEST_INSTALLED is not set")
    assert not Path(silo.__file__).resolve().is_relative_to(ROOT), silo.__file__


def test_wheel_and_sdist(tmp_path):
    b = _backend()
    assert b.get_requires_for_build_wheel() == [] and b.get_requires_for_build_sdist() == []
    name = b.build_wheel(str(tmp_path))
    assert name == f"silo_client-{silo.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(tmp_path / name) as zf:
        names = zf.namelist()
        assert {"silo/__init__.py", "silo/model.py", "silo/py.typed"} <= set(names)
        assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
        info = f"silo_client-{silo.__version__}.dist-info"
        meta = zf.read(f"{info}/METADATA").decode()
        assert "Name: silo-client" in meta and "Requires-Python: >=3.9" in meta and "Provides-Extra: notebook" in meta
        # Every file's hash in RECORD is right (pip checks them too).
        for row in csv.reader(io.StringIO(zf.read(f"{info}/RECORD").decode())):
            if row[1]:
                digest = base64.urlsafe_b64encode(hashlib.sha256(zf.read(row[0])).digest()).rstrip(b"=").decode()
                assert row[1] == f"sha256={digest}", row[0]
    # Deterministic: the same tree makes the same wheel.
    again = tmp_path / "again"
    again.mkdir()
    assert (again / b.build_wheel(str(again))).read_bytes() == (tmp_path / name).read_bytes()

    sdist = b.build_sdist(str(tmp_path))
    with tarfile.open(tmp_path / sdist) as tf:
        members = tf.getnames()
    base = sdist[: -len(".tar.gz")]
    assert {f"{base}/pyproject.toml", f"{base}/_build/silo_build.py", f"{base}/silo/client.py", f"{base}/PKG-INFO"} <= set(members)

    editable = b.build_editable(str(tmp_path / "again"))
    with zipfile.ZipFile(tmp_path / "again" / editable) as zf:
        pth = [n for n in zf.namelist() if n.endswith(".pth")]
        assert zf.read(pth[0]).decode().strip() == str(ROOT)


def test_pyproject_fallback_parser_agrees_with_tomllib():
    """Pythons before 3.11 read pyproject.toml with the backend's own parser."""
    tomllib = pytest.importorskip("tomllib")
    b = _backend()
    text = (ROOT / "pyproject.toml").read_text()
    assert b._mini_toml(text) == tomllib.loads(text)


NO_PANDAS = r"""
import sys
for m in ("numpy", "pandas", "matplotlib"):
    sys.modules[m] = None            # as if not installed
import silo
c = silo.connect()
ds = c.datasets()
assert isinstance(ds, list) and isinstance(ds[0], dict), type(ds)
assert {"hospital_a", "hospital_b"} <= {d["name"] for d in ds}
assert isinstance(c.dataset("hospital_a").schema(), list)
sid = next(s["id"] for s in c.sessions() if s["status"] == "completed")
m = c.metrics(sid)
assert isinstance(m.federated, list) and isinstance(m.clients, list) and m.as_dict()["federated"] == m.federated
try:
    m.plot()
except ImportError as e:
    assert "matplotlib" in str(e)
else:
    raise AssertionError("plot without matplotlib")
model = c.model(sid)
try:
    model.predict([{"mean_radius": 14.0}])
except ImportError as e:
    assert "numpy" in str(e)
else:
    raise AssertionError("predict without numpy")
print("ok")
"""


def test_standard_library_only(workspace):
    """Everything but charts and local predictions works without numpy,
    pandas and matplotlib."""
    env = {k: v for k, v in os.environ.items() if k not in ("SILO_SERVER", "SILO_TOKEN")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(silo.__file__).parents[1]), env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, "-c", NO_PANDAS], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_help_is_useful():
    text = pydoc.render_doc(silo.Client, renderer=pydoc.plaintext)
    for words in ("create_session", "Invalid", "datasets()", "predict", "metrics", "DataFrame"):
        assert words in text, words
    for cls in (silo.Client, silo.Session, silo.Model, silo.Metrics, silo.Results, silo.Dataset):
        for name, fn in vars(cls).items():
            if callable(fn) and not name.startswith("_"):
                assert fn.__doc__, f"{cls.__name__}.{name} has no docstring"
    assert "silo login" in silo.connect.__doc__ and silo.__doc__


def test_errors_carry_the_api_shape():
    e = silo.errors.from_api("invalid", "rounds must be between 1 and 10000", field="rounds", status=400)
    assert isinstance(e, silo.Invalid) and isinstance(e, silo.Error)
    assert (e.code, e.field, str(e)) == ("invalid", "rounds", "rounds must be between 1 and 10000")
    assert "field='rounds'" in repr(e)
    assert type(silo.errors.from_api("something_new", "m")) is silo.Error
    assert [silo.errors.code_for_status(s) for s in (400, 401, 403, 404, 409, 413, 429, 418, 502)] == [
        "invalid", "unauthorized", "forbidden", "not_found", "conflict", "invalid", "too_many_requests", "invalid", "internal",
    ]
