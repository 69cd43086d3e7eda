"""The encoding rules on awkward inputs, against the Go SDK itself (`silo
models predict`): documents built here, so every package and family is
covered whatever a short training run happens to learn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import silo
from silo.model import go_format_float

from conftest import max_difference

FEATURES = [
    {"name": "age", "type": "int", "kind": "numeric", "mean": 40, "std": 10},
    {"name": "bmi", "type": "float", "kind": "numeric", "mean": 25.5, "std": 4.25},
    {"name": "seen", "type": "timestamp", "kind": "numeric", "mean": 1.7e9, "std": 3.0e7},
    {"name": "ward", "type": "string", "kind": "categorical", "categories": ["east", "north", "south"]},
    {"name": "smoker", "type": "bool", "kind": "categorical", "categories": ["false", "true"]},
    {"name": "grade", "type": "int", "kind": "categorical", "categories": ["1", "10", "2"]},
    {"name": "absent", "type": "float", "kind": "numeric", "mean": 1, "std": 1},
]
WIDTH = 3 + 3 + 2 + 3 + 1

ROWS = """id,age,bmi,seen,ward,smoker,grade,y
9007199254740993,51,31.2,2024-03-01T12:00:00Z,south,true,10,a
2,NA,,2023-01-01,north,FALSE,2,b
3,29,18.75,,west,,1,c
4,40,25.5,2025-12-31 23:59:59,east,True,,a
5,-3,1e3,2020-02-29T00:00:00.5Z,,false,2,b
6,17, 22.5 ,2021-06-01T00:00:00+02:00,north,TRUE,1,c
"""


def _document(package, task, family, classes, hidden=(), activation=None, power=None, seed=1):
    rng = np.random.default_rng(seed)
    outputs = len(classes) if family == "multinomial" else 1
    widths = [WIDTH, *hidden, outputs]
    n = sum(a * b + b for a, b in zip(widths, widths[1:]))
    spec = {"package": package, "task": task, "num_features": WIDTH}
    if classes:
        spec["classes"] = classes
    if task == "regression" and family != "gaussian":
        spec["family"] = family
    if power:
        spec["tweedie_power"] = power
    if hidden:
        spec["hidden_layers"] = list(hidden)
    if activation:
        spec["activation"] = activation
    prep = {"task": task, "target": "y", "features": FEATURES, "identifiers": ["id"]}
    if classes:
        prep["classes"] = classes
        prep["target_type"] = "string"
    return {
        "format": "silo-model/1",
        "spec": spec,
        "preprocessing": prep,
        "params": (rng.normal(size=n) * 0.7).tolist(),
        "metadata": {"session": "sess_handmade", "round": 1},
    }


DOCS = {
    "glm-binomial": ("glm", "classification", "binomial", ["a", "b"]),
    "glm-multinomial": ("glm", "classification", "multinomial", ["a", "b", "c"]),
    "glm-gaussian": ("glm", "regression", "gaussian", []),
    "glm-poisson": ("glm", "regression", "poisson", []),
    "glm-gamma": ("glm", "regression", "gamma", []),
    "glm-tweedie": ("glm", "regression", "tweedie", [], (), None, 1.6),
    "ffnet-relu-multiclass": ("ffnet", "classification", "multinomial", ["a", "b", "c"], (7, 3), "relu"),
    "ffnet-tanh-binary": ("ffnet", "classification", "binomial", ["a", "b"], (4,), "tanh"),
    "ffnet-default-regression": ("ffnet", "regression", "gaussian", [], (6,)),
}


@pytest.mark.parametrize("name", list(DOCS))
def test_handmade_documents_match_go(name, workspace, cli, tmp_path):
    doc = _document(*DOCS[name])
    (tmp_path / "m.json").write_text(json.dumps(doc))
    (tmp_path / "rows.csv").write_text(ROWS)
    go = pd.read_csv(_go_csv(cli, tmp_path), float_precision="round_trip", dtype={"id": str})
    m = silo.load_model(tmp_path / "m.json")
    # As a notebook would type the same rows by hand: numbers, text, None,
    # booleans, times; "id" as text keeps its 17 digits.
    data = pd.DataFrame(
        {
            "id": ["9007199254740993", "2", "3", "4", "5", "6"],
            "age": [51, None, 29, 40, -3, 17],
            "bmi": [31.2, float("nan"), 18.75, "25.5", 1e3, " 22.5 "],
            "seen": pd.to_datetime(
                ["2024-03-01T12:00:00Z", "2023-01-01T00:00:00Z", None, "2025-12-31T23:59:59Z", "2020-02-29T00:00:00.5Z", "2021-05-31T22:00:00Z"],
                utc=True,
            ),
            "ward": ["south", "north", "west", "east", None, "north"],
            "smoker": [True, False, None, True, False, True],
            "grade": [10, 2, 1, None, 2, 1],
            "y": ["a", "b", "c", "a", "b", "c"],
        }
    )
    mine = m.predict(data)
    assert list(mine.columns) == list(go.columns)
    assert list(mine["id"]) == list(go["id"])
    cols = [c for c in go.columns if c.startswith("p_")] or ["prediction"]
    assert max_difference(mine[cols], go[cols]) <= 1e-9
    if cols != ["prediction"]:
        assert list(mine["prediction"]) == list(go["prediction"])


def _go_csv(cli, tmp_path: Path) -> Path:
    out = tmp_path / "go.csv"
    cli("models", "predict", str(tmp_path / "m.json"), "--input", str(tmp_path / "rows.csv"), "-o", str(out))
    return out


def test_encode_rules():
    m = silo.load_model(_document(*DOCS["glm-binomial"]))
    x = m.encode(
        [
            {"age": 50, "ward": "south", "smoker": True, "grade": 10},
            {"age": " 30 ", "ward": "nowhere", "smoker": "true", "grade": "2"},
            {"age": "old", "bmi": math.inf, "grade": 2.9},
            {},
        ]
    )
    names = m.feature_names
    assert names[:4] == ["age", "bmi", "seen", "ward=east"] and len(names) == WIDTH
    row = dict(zip(names, x[0]))
    assert row["age"] == 1.0 and row["ward=south"] == 1 and row["smoker=true"] == 1 and row["grade=10"] == 1
    row = dict(zip(names, x[1]))
    assert row["age"] == -1.0 and sum(x[1][3:6]) == 0 and row["smoker=true"] == 1 and row["grade=2"] == 1
    # Text that is not a number, and ±inf, count as the mean; an int
    # category is the value's integer part, as Go's int64 conversion.
    row = dict(zip(names, x[2]))
    assert row["age"] == 0 and row["bmi"] == 0 and row["grade=2"] == 1
    assert not x[3].any()


def test_go_float_text():
    cases = {
        1e6: "1e+06",
        123456.0: "123456",
        0.0001: "0.0001",
        0.00001: "1e-05",
        -1.5e-7: "-1.5e-07",
        1e21: "1e+21",
        123456789.0: "1.23456789e+08",
        1 / 3: "0.3333333333333333",
        100000.5: "100000.5",
        5e-324: "5e-324",
        -0.0: "-0",
        float("nan"): "NaN",
        float("-inf"): "-Inf",
    }
    for x, want in cases.items():
        assert go_format_float(x) == want, x


def test_bad_documents():
    good = _document(*DOCS["glm-binomial"])
    for change, words in [
        ({"format": "silo-model/9"}, "format"),
        ({"params": good["params"][:-1]}, "parameters"),
        ({"spec": {**good["spec"], "num_features": 3}}, "inputs"),
        ({"spec": {**good["spec"], "package": "xgboost"}}, "package"),
        ({"preprocessing": {**good["preprocessing"], "features": []}}, "no features"),
    ]:
        with pytest.raises(silo.Invalid, match=words):
            silo.load_model({**good, **change})
    with pytest.raises(silo.Invalid, match="not a Silo model document"):
        silo.load_model("{oops")
