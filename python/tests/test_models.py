"""Models trained by real sessions, for every package and family, predict
locally exactly as the Go SDK does (to 1e-9, through `silo models
predict`) and as the runners do (`silo predict`)."""

from __future__ import annotations

import csv
import json
import urllib.parse
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
import pytest

import silo

from conftest import HOSPITALS, max_difference, patients_csv, runner_storage, unique, wait_connected

TOL = 1e-9

# Three classes and mixed column types, derived from the sample data: an
# integer and a boolean categorical, a text column, and nulls.
SIZES = ["sizes_a", "sizes_b"]

CASES: Dict[str, dict] = {
    "glm-binomial": dict(datasets=HOSPITALS, task={"type": "classification", "target": "diagnosis"}, model={"package": "glm"}),
    "glm-gaussian": dict(
        datasets=HOSPITALS, task={"type": "regression", "target": "mean_radius"}, model={"package": "glm", "family": "gaussian"}
    ),
    "glm-poisson": dict(
        datasets=HOSPITALS, task={"type": "regression", "target": "mean_radius"}, model={"package": "glm", "family": "poisson"}, lr=0.005
    ),
    "glm-gamma": dict(
        datasets=HOSPITALS, task={"type": "regression", "target": "mean_texture"}, model={"package": "glm", "family": "gamma"}, lr=0.005
    ),
    "glm-tweedie": dict(
        datasets=HOSPITALS,
        task={"type": "regression", "target": "mean_radius"},
        model={"package": "glm", "family": "tweedie", "tweedie_power": 1.4},
        lr=0.005,
    ),
    "ffnet-relu-binary": dict(
        datasets=HOSPITALS,
        task={"type": "classification", "target": "diagnosis", "positive_class": "benign"},
        model={"package": "ffnet", "hidden_layers": [8, 4], "activation": "relu"},
    ),
    "glm-multinomial": dict(
        datasets=SIZES, task={"type": "classification", "target": "size", "categorical": ["grade", "flag"]}, model={"package": "glm"}
    ),
    "ffnet-tanh-multiclass": dict(
        datasets=SIZES,
        task={"type": "classification", "target": "size", "categorical": ["grade", "flag"]},
        model={"package": "ffnet", "hidden_layers": [6], "activation": "tanh", "l2": 0.001},
    ),
    "ffnet-regression": dict(
        datasets=SIZES,
        task={"type": "regression", "target": "mean_radius", "categorical": ["grade"]},
        model={"package": "ffnet", "hidden_layers": [5]},
        lr=0.01,
    ),
}


def _write_sizes(src: Path, dst: Path) -> None:
    rows = list(csv.DictReader(src.open()))
    with dst.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", "mean_radius", "mean_texture", "mean_smoothness", "ward", "grade", "flag", "size"])
        for i, r in enumerate(rows):
            area, texture = float(r["mean_area"]), float(r["mean_texture"])
            size = "small" if area < 500 else "medium" if area < 800 else "large"
            grade = 1 + (texture > 17) + (texture > 22)
            flag = "true" if float(r["mean_smoothness"]) > 0.095 else "false"
            ward = "" if i % 13 == 5 else ["north", "south", "east"][i % 3]
            w.writerow([r["patient_id"], r["mean_radius"], "" if i % 17 == 3 else r["mean_texture"], r["mean_smoothness"], ward, grade, flag, size])


@pytest.fixture(scope="module")
def sizes(client, cli, workspace, tmp_path_factory) -> Dict[str, Path]:
    """The derived datasets, registered (once per workspace) on two runners."""
    privacy = tmp_path_factory.mktemp("privacy") / "privacy.json"
    privacy.write_text(json.dumps({"identifier_columns": ["patient_id"]}))
    files = {}
    registered = set(client.datasets()["name"])
    for name, hospital in zip(SIZES, HOSPITALS):
        runner = hospital.replace("_", "-")
        path = runner_storage(workspace, runner) / f"{name}.csv"
        files[name] = path
        if name in registered:
            continue
        _write_sizes(patients_csv(workspace, hospital), path)
        cli("datasets", "register", "--runner", runner, "--name", name, "--uri", f"file://{path}", "--privacy", str(privacy))
    wait_connected(client, SIZES)
    return files


@pytest.fixture(scope="module")
def trained(client, sizes) -> Dict[str, silo.Session]:
    """One short session per case, all queued at once, then waited for."""
    sessions = {}
    for case, c in CASES.items():
        sessions[case] = client.create_session(
            {
                "name": unique(f"pytest-{case}"),
                "datasets": c["datasets"],
                "rounds": 2,
                "task": c["task"],
                "model": c["model"],
                "optimizer": {"name": "sgd", "learning_rate": c.get("lr", 0.05), "batch_size": 32},
                "seed": 3,
            }
        )
    for s in sessions.values():
        s.wait(progress=False)
    return sessions


def _files(workspace, sizes, datasets: List[str]) -> Dict[str, Path]:
    return {d: sizes[d] if d in sizes else patients_csv(workspace, d) for d in datasets}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, float_precision="round_trip", keep_default_na=True)


@pytest.mark.parametrize("case", list(CASES))
def test_local_predictions_equal_the_go_sdk(case, trained, workspace, sizes, cli, tmp_path):
    s = trained[case]
    c = CASES[case]
    # Every dataset's rows in one file: one run of the CLI per model.
    rows = tmp_path / "rows.csv"
    with rows.open("w") as out:
        for k, f in enumerate(_files(workspace, sizes, c["datasets"]).values()):
            lines = f.read_text().splitlines(keepends=True)
            out.writelines(lines if k == 0 else lines[1:])
    data = _read(rows)
    for best in (False, True):
        m = s.model(best=best)
        assert m.package == c["model"]["package"]
        want_family = c["model"].get("family") or (
            "gaussian" if c["task"]["type"] == "regression" else "binomial" if c["datasets"] == HOSPITALS else "multinomial"
        )
        assert m.family == want_family, m
        doc = m.save(tmp_path / f"model-{best}.json")
        mine = m.predict(data)
        go = _read(Path(cli("models", "predict", doc, "--input", str(rows), "-o", str(tmp_path / "go.csv"), json_out=True)["path"]))
        assert list(mine.columns) == list(go.columns), (list(mine.columns), list(go.columns))
        assert list(mine.index) == list(data.index)
        assert (mine["patient_id"].astype(str) == go["patient_id"].astype(str)).all()
        if m.task == "classification":
            value_cols = [f"p_{k}" for k in m.classes]
            assert list(mine.columns[2:]) == value_cols
            assert (mine["prediction"] == go["prediction"]).all(), f"{case}: labels differ"
            assert np.allclose(mine[value_cols].sum(axis=1), 1.0, atol=1e-12)
        else:
            value_cols = ["prediction"]
        diff = max_difference(mine[value_cols], go[value_cols])
        assert diff <= TOL, f"{case} best={best}: largest difference {diff:g}"
        # The target column is ignored, and the identifier is never a feature.
        assert "patient_id" not in m.features and m.target not in m.features
        assert m.predict(data.drop(columns=[m.target])).equals(mine)


@pytest.mark.parametrize("case", ["glm-binomial", "ffnet-tanh-multiclass", "ffnet-regression"])
def test_runner_predictions_equal_local_ones(case, trained, client, workspace, sizes):
    """predict() on a runner writes the same predictions the model gives
    locally (probabilities to the 6 digits the runner writes)."""
    s = trained[case]
    dataset = CASES[case]["datasets"][0]
    out = client.predict(s, dataset=dataset)
    assert isinstance(out, silo.Prediction)
    data = _read(_files(workspace, sizes, [dataset])[dataset])
    assert out.rows == len(data)
    written = Path(urllib.parse.urlparse(out.path).path)
    assert written.is_relative_to(runner_storage(workspace, client.dataset(dataset).runner))
    theirs = _read(written)
    mine = s.model().predict(data)
    assert list(theirs.columns) == list(mine.columns)
    probs = [c for c in mine.columns if c.startswith("p_")]
    if probs:
        assert (theirs["prediction"] == mine["prediction"]).all()
        # The runner writes probabilities with 6 significant digits.
        assert np.abs(theirs[probs].to_numpy(float) - mine[probs].to_numpy(float)).max() <= 1e-5
    else:
        assert max_difference(mine["prediction"], theirs["prediction"]) <= TOL
    # The best model, as Parquet this time.
    out = s.predict(dataset, best=True, format="parquet")
    assert out.rows == len(data) and out.path.endswith(".parquet")


def test_model_without_pandas_inputs(trained, workspace):
    """Rows as dicts or columns as lists predict the same as a DataFrame."""
    m = trained["glm-multinomial"].model()
    data = _read(Path(runner_storage(workspace, "hospital-a") / "sizes_a.csv")).head(20)
    want = m.predict(data)
    rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in data.to_dict("records")]
    assert np.allclose(m.predict(rows)[[f"p_{k}" for k in m.classes]], want[[f"p_{k}" for k in m.classes]], rtol=0, atol=1e-15)
    cols = {k: [None if pd.isna(v) else v for v in data[k]] for k in data.columns}
    assert (m.predict(cols)["prediction"] == want["prediction"]).all()
    assert m.outputs(data).shape == (20, 3)
    coef = m.coefficients()
    assert list(coef.columns) == m.classes and list(coef.index) == m.feature_names + ["(intercept)"]
