"""Trained models: Silo's model document, loaded to predict locally.

A session's model downloads as a self-describing JSON document (format
``silo-model/1``): the model's spec (package ``glm`` or ``ffnet``, task,
family, layers), the preprocessing the runners applied (features
standardised with federated means and standard deviations, categories
one-hot encoded, the classes in output order), the parameters, and where
it came from. :class:`Model` applies exactly the encoding and the
arithmetic of the Go SDK (``model.Document.Predict``) with numpy, so its
predictions agree with the SDK's and the runners' to rounding.

Encoding rules (the Go SDK's):

- numeric features: ``(x - mean) / std``; null, NaN, ±inf or text that is
  not a number become 0 (the mean). Text that is a number is read as one.
  Timestamps count as Unix seconds, booleans as 0/1.
- categorical features: one column per category (sorted); a null or an
  unseen value is all zeros. Values are compared as text: integers without
  a decimal point, booleans as ``true``/``false``.
- missing columns count as null; the target column is ignored.

Parameters are one flat vector, layer by layer from the input: each layer
is its ``in × out`` weight matrix (row-major) followed by its ``out``
biases. A GLM is one layer; an ffnet has hidden layers with ``relu`` or
``tanh``. The output is a sigmoid (binomial: two columns, the second the
positive class), a softmax (multinomial), the identity (gaussian) or
``exp`` of the linear predictor clamped to ±700 (poisson, gamma, tweedie).
"""

from __future__ import annotations

import bisect
import copy
import datetime as _dt
import json
import math
import os
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _tables, errors

FORMAT_V1 = "silo-model/1"

#: Clamp of the linear predictor of log-link models, as in the Go SDK.
MAX_ETA = 700.0

_FAMILIES = {
    "classification": ("binomial", "multinomial"),
    "regression": ("gaussian", "poisson", "gamma", "tweedie"),
}


def _np() -> Any:
    try:
        import numpy
    except ImportError:
        raise ImportError(
            "predicting with a Silo model needs numpy: install it (Debian: apt-get install python3-numpy)"
        ) from None
    return numpy


def load_model(source: Union[str, os.PathLike, IO, Mapping[str, Any]]) -> "Model":
    """Loads a model document from a path, an open file, JSON text or an
    already parsed dict (what ``silo models download`` writes)."""
    return Model.load(source)


class Model:
    """A trained model from its document; see the module documentation.

    Attributes:
        document: the whole JSON document (a dict).
        spec, preprocessing, metadata: its parts.
        task: ``"classification"`` or ``"regression"``.
        classes: class labels in output order (classification).
        family: the output head (``binomial``, ``multinomial``, ``gaussian``,
            ``poisson``, ``gamma`` or ``tweedie``).
        params: the parameter vector (a numpy array).
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        doc = copy.deepcopy(dict(document))
        if doc.get("format") != FORMAT_V1:
            raise errors.Invalid(
                f"model document format {doc.get('format')!r}: this client reads {FORMAT_V1} "
                "(download it with Session.model() or 'silo models download')",
                field="format",
            )
        self.document: Dict[str, Any] = doc
        self.spec: Dict[str, Any] = doc.get("spec") or {}
        self.preprocessing: Dict[str, Any] = doc.get("preprocessing") or {}
        self.metadata: Dict[str, Any] = doc.get("metadata") or {}
        self._features: List[Dict[str, Any]] = list(self.preprocessing.get("features") or [])
        self._check()
        self._layers: Optional[List[Tuple[Any, Any]]] = None

    # --- loading and saving -------------------------------------------------

    @classmethod
    def load(cls, source: Union[str, os.PathLike, IO, Mapping[str, Any]]) -> "Model":
        """Reads a document from a path, an open file, JSON text or a dict."""
        if isinstance(source, Mapping):
            return cls(source)
        if hasattr(source, "read"):
            text = source.read()  # type: ignore[union-attr]
        elif isinstance(source, str) and source.lstrip().startswith("{"):
            text = source
        else:
            with open(source, encoding="utf-8") as f:  # type: ignore[arg-type]
                text = f.read()
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise errors.Invalid(f"not a Silo model document: {e}") from None
        if not isinstance(doc, dict):
            raise errors.Invalid("not a Silo model document: expected a JSON object")
        return cls(doc)

    def save(self, path: Union[str, os.PathLike]) -> str:
        """Writes the document as JSON (readable by the Go SDK and
        ``silo models predict``); returns the path."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.document, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
        return os.fspath(path)

    # --- what it is -----------------------------------------------------------

    @property
    def task(self) -> str:
        return str(self.preprocessing.get("task"))

    @property
    def classes(self) -> List[str]:
        return list(self.spec.get("classes") or [])

    @property
    def target(self) -> str:
        return str(self.preprocessing.get("target") or "")

    @property
    def identifiers(self) -> List[str]:
        """Identifier columns: they lead each row of :meth:`predict`'s answer
        when the data has them; never features."""
        return list(self.preprocessing.get("identifiers") or [])

    @property
    def features(self) -> List[str]:
        """The input columns the model reads, in order."""
        return [f["name"] for f in self._features]

    @property
    def feature_names(self) -> List[str]:
        """One name per model input: ``age``, ``ward=north``, …"""
        out: List[str] = []
        for f in self._features:
            if f.get("kind") == "categorical":
                out += [f"{f['name']}={c}" for c in f["categories"]]
            else:
                out.append(f["name"])
        return out

    @property
    def params(self) -> Any:
        return _np().asarray(self.document.get("params") or [], dtype=float)

    @property
    def package(self) -> str:
        return str(self.spec.get("package"))

    def __repr__(self) -> str:
        m = self.metadata
        what = f"{self.package} {self.family}"
        if self.package == "ffnet":
            what += f" {self._hidden()} {self._activation()}"
        return (
            f"<silo.Model {what} {self.task} on {len(self.features)} features"
            f" from {m.get('session', '?')} round {m.get('round', '?')}{' (best)' if m.get('best') else ''}>"
        )

    @property
    def family(self) -> str:
        fam = self.spec.get("family") or ""
        if not fam:
            if self.spec.get("task") == "classification":
                fam = "binomial" if len(self.classes) == 2 else "multinomial"
            else:
                fam = "gaussian"
        return fam

    def coefficients(self) -> Any:
        """A GLM's weights by input name, with the intercept last as
        ``(intercept)``: a pandas Series (a DataFrame with one column per
        class for multinomial models), or a dict without pandas."""
        if self.package != "glm":
            raise errors.Invalid(f"coefficients are for glm models; this is a {self.package}")
        np = _np()
        (w, b), = self._weights()
        names = self.feature_names + ["(intercept)"]
        values = np.vstack([w, b[None, :]])
        pd = _tables.pandas()
        if self.family == "multinomial":
            if pd is None:
                return {n: dict(zip(self.classes, row.tolist())) for n, row in zip(names, values)}
            return pd.DataFrame(values, index=names, columns=self.classes)
        if pd is None:
            return dict(zip(names, values[:, 0].tolist()))
        return pd.Series(values[:, 0], index=names, name="coefficient")

    # --- predicting -------------------------------------------------------------

    def encode(self, data: Any) -> Any:
        """The model inputs of data's rows (an ``n × len(feature_names)``
        numpy array), encoded as described in the module documentation.

        data: a pandas DataFrame, a dict of columns, or a list of row dicts.
        """
        np = _np()
        columns, n, _ = _columns_of(data)
        x = np.zeros((n, len(self.feature_names)))
        j = 0
        for f in self._features:
            col = columns.get(f["name"])
            if f.get("kind") == "categorical":
                cats = f["categories"]
                if col is not None:
                    idx = _category_index(col, cats, str(f.get("type") or ""))
                    rows = np.nonzero(idx >= 0)[0]
                    x[rows, j + idx[rows]] = 1.0
                j += len(cats)
                continue
            if col is not None:
                v = _numbers(col, n)
                ok = np.isfinite(v)
                x[ok, j] = (v[ok] - float(f["mean"])) / float(f["std"])
            j += 1
        bad = ~np.isfinite(x)
        if bad.any():
            i, k = (int(a[0]) for a in np.nonzero(bad))
            raise errors.Invalid(
                f"input {self.feature_names[k]} of row {i} is out of range after standardising; "
                "impute or drop extreme values before predicting"
            )
        return x

    def outputs(self, data: Any) -> Any:
        """The raw model outputs: class probabilities in the order of
        :attr:`classes` (``n × k``) for classification, the predicted mean
        (``n``) for regression."""
        return self._forward(self.encode(data))

    def predict(self, data: Any) -> Any:
        """Predicts data's rows, as a runner does for ``silo predict``.

        data: a pandas DataFrame, a dict of columns or a list of row dicts.

        Returns a DataFrame (a list of row dicts without pandas) with the
        model's identifier columns found in data, then ``prediction`` (the
        class label, or the value for regression) and, for classification,
        ``p_<class>`` for each class. A DataFrame keeps data's index.
        """
        np = _np()
        columns, n, index = _columns_of(data)
        out = self._forward(self.encode(data))
        result: Dict[str, Any] = {}
        for name in self.identifiers:
            if name in columns:
                result[name] = list(columns[name])
        if self.task == "classification":
            labels = np.asarray(self.classes, dtype=object)[np.argmax(out, axis=1)] if n else []
            result["prediction"] = list(labels)
            for k, c in enumerate(self.classes):
                result[f"p_{c}"] = out[:, k]
        else:
            result["prediction"] = out
        pd = _tables.pandas()
        if pd is not None:
            return pd.DataFrame(result, index=index)
        keys = list(result)
        return [{k: _plain(result[k][i]) for k in keys} for i in range(n)]

    # --- internals ----------------------------------------------------------------

    def _check(self) -> None:
        """The checks the Go SDK makes when it loads a document."""
        prep, spec = self.preprocessing, self.spec
        if prep.get("task") not in _FAMILIES:
            raise errors.Invalid(f"preprocessing: task {prep.get('task')!r}")
        if not self._features:
            raise errors.Invalid("preprocessing: no features")
        for f in self._features:
            kind = f.get("kind")
            if kind == "numeric":
                std, mean = f.get("std") or 0, f.get("mean") or 0
                if not (isinstance(std, (int, float)) and std > 0 and math.isfinite(float(mean))):
                    raise errors.Invalid(f"preprocessing: feature {f.get('name')} has no valid mean and std")
            elif kind == "categorical":
                if not f.get("categories"):
                    raise errors.Invalid(f"preprocessing: categorical feature {f.get('name')} has no categories")
            else:
                raise errors.Invalid(f"preprocessing: feature {f.get('name')} has unknown kind {kind!r}")
        if prep.get("task") == "classification" and len(prep.get("classes") or []) < 2:
            raise errors.Invalid("preprocessing: classification needs at least two classes")
        width = len(self.feature_names)
        if spec.get("num_features") != width:
            raise errors.Invalid(f"model expects {spec.get('num_features')} inputs but its preprocessing makes {width}")
        if spec.get("task") != prep.get("task"):
            raise errors.Invalid(f"model task {spec.get('task')!r} does not match its preprocessing ({prep.get('task')!r})")
        if spec.get("package") not in ("glm", "ffnet"):
            raise errors.Invalid(f"unknown model package {spec.get('package')!r} (want glm or ffnet)")
        if self.family not in _FAMILIES[self.task]:
            raise errors.Invalid(f"family {self.family!r} does not fit a {self.task} model")
        if self.family == "binomial" and len(self.classes) != 2:
            raise errors.Invalid(f"family binomial needs exactly 2 classes, got {len(self.classes)}")
        if self.family == "tweedie" and not (1 < float(spec.get("tweedie_power") or 0) < 2):
            raise errors.Invalid("tweedie_power must be strictly between 1 and 2")
        if self.package == "ffnet" and not self._hidden():
            raise errors.Invalid("ffnet needs at least one hidden layer")
        if self._activation() not in ("relu", "tanh"):
            raise errors.Invalid(f"unknown activation {self._activation()!r}")
        want = sum(a * b + b for a, b in zip(self._widths(), self._widths()[1:]))
        params = self.document.get("params") or []
        if len(params) != want:
            raise errors.Invalid(f"got {len(params)} parameters, the model has {want}")
        if not all(isinstance(p, (int, float)) and math.isfinite(p) for p in params):
            raise errors.Invalid("parameters must be finite numbers")

    def _hidden(self) -> List[int]:
        return [int(h) for h in (self.spec.get("hidden_layers") or [])] if self.package == "ffnet" else []

    def _activation(self) -> str:
        return (self.spec.get("activation") or "relu") if self.package == "ffnet" else "relu"

    def _widths(self) -> List[int]:
        out = 1 if self.family != "multinomial" else len(self.classes)
        return [int(self.spec["num_features"])] + self._hidden() + [out]

    def _weights(self) -> List[Tuple[Any, Any]]:
        """(in×out weights, out biases) per layer, views of the parameters."""
        if self._layers is None:
            np = _np()
            p = np.asarray(self.document["params"], dtype=float)
            layers, off = [], 0
            widths = self._widths()
            for a, b in zip(widths, widths[1:]):
                w = p[off : off + a * b].reshape(a, b)
                off += a * b
                layers.append((w, p[off : off + b]))
                off += b
            self._layers = layers
        return self._layers

    def _forward(self, x: Any) -> Any:
        np = _np()
        layers = self._weights()
        h = x
        for i, (w, b) in enumerate(layers):
            h = h @ w + b
            if i < len(layers) - 1:
                h = np.tanh(h) if self._activation() == "tanh" else np.where(h < 0, 0.0, h)
        fam = self.family
        if fam == "binomial":
            e = h[:, 0]
            p1 = _sigmoid(np, e)
            return np.column_stack([_sigmoid(np, -e), p1])
        if fam == "multinomial":
            z = np.exp(h - h.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        if fam == "gaussian":
            return h[:, 0].copy()
        return np.exp(np.clip(h[:, 0], -MAX_ETA, MAX_ETA))


def _sigmoid(np: Any, x: Any) -> Any:
    """1/(1+e^−x) without overflow, term for term as the Go SDK."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


# --- reading input data -------------------------------------------------------------


def _columns_of(data: Any) -> Tuple[Dict[str, Sequence[Any]], int, Any]:
    """data as {column: values}, its row count, and its index (DataFrames)."""
    pd = _tables.pandas()
    if pd is not None and isinstance(data, pd.DataFrame):
        return {str(c): data[c] for c in data.columns}, len(data), data.index
    if pd is not None and isinstance(data, pd.Series):  # one row
        return _columns_of(data.to_frame().T)
    if isinstance(data, Mapping):
        cols = {str(k): (v if hasattr(v, "__len__") and not isinstance(v, (str, bytes)) else [v]) for k, v in data.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise errors.Invalid(f"columns have different lengths: {sorted(lengths)}")
        return cols, lengths.pop() if lengths else 0, None
    if isinstance(data, (list, tuple)):
        names: List[str] = []
        for row in data:
            if not isinstance(row, Mapping):
                raise errors.Invalid("rows must be dicts of column name → value")
            names += [str(k) for k in row if str(k) not in names]
        return {k: [row.get(k) for row in data] for k in names}, len(data), None
    raise errors.Invalid(
        f"cannot predict a {type(data).__name__}: pass a pandas DataFrame, a dict of columns or a list of row dicts"
    )


def _is_null(v: Any) -> bool:
    """None, NaN, and pandas' NA and NaT."""
    if v is None:
        return True
    if isinstance(v, float):
        return v != v
    if isinstance(v, (str, bytes)):
        return False
    pd = _tables.pandas()
    if pd is None:
        return False
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # a list or an array is a value, not a null
        return False


def _seconds(v: Any) -> Optional[float]:
    """A time as Unix seconds, as a runner reads a timestamp column."""
    np = _np()
    if isinstance(v, np.datetime64):
        if np.isnat(v):
            return None
        return float(v.astype("datetime64[ns]").astype("int64")) / 1e9
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.timezone.utc)  # naive times are UTC, as in the data files
        pd = _tables.pandas()
        if pd is not None and isinstance(v, pd.Timestamp):
            return float(v.value) / 1e9
        return v.timestamp()
    if isinstance(v, _dt.date):
        return float(_dt.datetime(v.year, v.month, v.day, tzinfo=_dt.timezone.utc).timestamp())
    return None


def _cell(v: Any) -> Tuple[str, Any]:
    """A value as the Go SDK's encoder sees it: ("null", None), ("num", x)
    or ("text", s)."""
    np = _np()
    if _is_null(v):
        return "null", None
    if isinstance(v, (str, np.str_)):
        return "text", str(v)
    if isinstance(v, (bool, np.bool_)):
        return "num", 1.0 if v else 0.0
    if isinstance(v, (int, float, np.integer, np.floating)):
        return "num", float(v)
    t = _seconds(v)
    if t is not None:
        return "num", t
    try:
        import decimal

        if isinstance(v, decimal.Decimal):
            return "num", float(v)
    except ImportError:  # pragma: no cover
        pass
    return "null", None


def _numbers(col: Any, n: int) -> Any:
    """A column as float64, NaN where the encoder would use the mean."""
    np = _np()
    pd = _tables.pandas()
    if pd is not None and isinstance(col, pd.Series):
        dt = col.dtype
        if pd.api.types.is_numeric_dtype(dt):  # bool and nullable dtypes too
            return col.to_numpy(dtype="float64", na_value=np.nan)
        if pd.api.types.is_datetime64_any_dtype(dt):
            ns = col.dt.tz_convert("UTC") if getattr(col.dt, "tz", None) is not None else col
            vals = ns.to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64") / 1e9
            vals[col.isna().to_numpy()] = np.nan
            return vals
        col = col.tolist()
    arr = np.asarray(col) if not isinstance(col, list) else None
    if arr is not None and arr.dtype.kind in "fiub":
        return arr.astype("float64")
    return np.fromiter((_cell_number(v) for v in col), dtype="float64", count=n)


def _cell_number(v: Any) -> float:
    kind, x = _cell(v)
    if kind == "num":
        return x
    if kind == "text":
        return _parse_go_float(x)
    return math.nan


_GO_SPACE = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _parse_go_float(s: str) -> float:
    """Go's strconv.ParseFloat of strings.TrimSpace(s); NaN when it fails
    (the encoder then uses the mean)."""
    t = s.strip(_GO_SPACE)
    if not t or not t.isascii() or "_" in t:
        return math.nan
    body = t[1:] if t[0] in "+-" else t
    try:
        if body[:2].lower() == "0x":
            if "p" not in body.lower():  # Go requires the p exponent in hex floats
                return math.nan
            return float.fromhex(t)
        return float(t)
    except (ValueError, OverflowError):
        return math.nan


def _category_index(col: Any, categories: Sequence[str], col_type: str) -> Any:
    """Each value's position among categories, −1 for null or unseen."""
    np = _np()
    # Categories are sorted bytewise (as Go's sort.Strings), so a dict is the
    # binary search's answer; an unsorted list (a hand-made document) gets
    # the same probe sequence as Go's slices.BinarySearch.
    sorted_ok = all(a < b for a, b in zip(categories, categories[1:]))
    pos = {c: i for i, c in enumerate(categories)}
    values = col.tolist() if hasattr(col, "tolist") else list(col)
    out = np.full(len(values), -1, dtype=np.int64)
    for i, v in enumerate(values):
        text = _category_text(v, col_type)
        if text is None:
            continue
        if sorted_ok:
            out[i] = pos.get(text, -1)
        else:
            k = bisect.bisect_left(categories, text)  # type: ignore[type-var]
            out[i] = k if k < len(categories) and categories[k] == text else -1
    return out


def _category_text(v: Any, col_type: str) -> Optional[str]:
    """Go's Cell.String(colType): text as written, integers without a
    decimal point, booleans as true/false, other numbers as Go's %g."""
    kind, x = _cell(v)
    if kind == "null":
        return None
    if kind == "text":
        return x
    if col_type == "bool":
        return "true" if x != 0 else "false"
    if col_type == "int":
        if not math.isfinite(x):
            return None
        return str(int(x))
    return go_format_float(x)


def go_format_float(x: float) -> str:
    """Go's strconv.FormatFloat(x, 'g', -1, 64): the shortest text that reads
    back as x, in exponent form when the decimal exponent is below −4 or at
    least 6 (``1e+06``, ``1.5e-05``, but ``123456``)."""
    if x != x:
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    neg = math.copysign(1.0, x) < 0
    if x == 0:
        return "-0" if neg else "0"
    r = repr(abs(x))
    mant, _, exp = r.partition("e")
    e = int(exp) if exp else 0
    ip, _, fp = mant.partition(".")
    d = ip + fp
    lead = len(d) - len(d.lstrip("0"))
    digits = d.strip("0")
    dp = len(ip) + e - lead  # value = 0.digits × 10^dp
    nd = len(digits)
    sign = "-" if neg else ""
    x10 = dp - 1
    if x10 < -4 or x10 >= 6:
        s = digits[0] + ("." + digits[1:] if nd > 1 else "")
        return f"{sign}{s}e{'-' if x10 < 0 else '+'}{abs(x10):02d}"
    if dp > 0:
        whole = digits[:dp].ljust(dp, "0")
        frac = digits[dp:]
    else:
        whole = "0"
        frac = "0" * (-dp) + digits
    return sign + whole + ("." + frac if frac else "")


def _plain(v: Any) -> Any:
    """numpy scalars as Python numbers, for the list-of-dicts answer."""
    return v.item() if hasattr(v, "item") else v
