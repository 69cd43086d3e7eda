"""The client: a Silo workspace from Python, as a model builder uses it.

>>> import silo
>>> client = silo.connect()            # $SILO_SERVER/$SILO_TOKEN or the CLI's saved login
>>> client.datasets()                  # a DataFrame of datasets (metadata, never rows)
>>> s = client.create_session("session.json")
>>> s.wait()                           # a progress bar until it ends
>>> s.metrics().plot()
>>> m = s.model(best=True)             # the model document; m.predict(df) locally
>>> client.predict(s, dataset="hospital_a")   # on the dataset's runner
"""

from __future__ import annotations

import json
import os
import re
import ssl
import time
import urllib.parse
from typing import Any, Dict, Iterator, List, Mapping, Optional, TextIO, Union

from . import _progress, _tables, errors
from ._http import Transport
from .config import resolve
from .metrics import Metrics
from .model import Model
from .results import Results

PathLike = Union[str, "os.PathLike[str]"]


def _q(name: str) -> str:
    return urllib.parse.quote(str(name), safe="")


# The most runners one page of the runner listing holds (the server's
# bound); runners() reads page after page.
_RUNNERS_PAGE = 1000

class Record(Mapping[str, Any]):
    """An object the API returned (a runner, a dataset, a session, …).

    Fields read as attributes or keys (``d.status``, ``d["status"]``);
    ``as_dict()`` gives the JSON as sent, in the same shape as the CLI's
    ``--json`` output.
    """

    _title = "name"

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r} (fields: {', '.join(self._data)})") from None

    def __dir__(self) -> List[str]:
        return sorted(set(super().__dir__()) | set(self._data))

    def as_dict(self) -> Dict[str, Any]:
        """The object as the API sent it (a deep copy)."""
        return json.loads(json.dumps(self._data))

    def __repr__(self) -> str:
        status = self._data.get("status")
        return f"<silo.{type(self).__name__} {self._data.get(self._title)!s}{' ' + status if status else ''}>"


class Runner(Record):
    """A task runner: the compute next to one organisation's data."""


class Dataset(Record):
    """A registered dataset: its metadata, schema and privacy controls.
    Rows never leave the dataset's runner."""

    def schema(self) -> Any:
        """The columns: name, type, null count, and the summaries the privacy
        controls allow (a DataFrame, or a list of dicts without pandas)."""
        return _tables.table(self._data.get("columns") or [], ("name", "type", "nulls", "count", "mean", "std"))

    @property
    def privacy(self) -> Dict[str, Any]:
        """The dataset's privacy controls."""
        return json.loads(json.dumps(self._data.get("privacy") or {}))


class Prediction(Record):
    """Where a runner wrote predictions: ``rows`` and ``path`` (the file is in
    the runner's own storage; no row comes back)."""

    _title = "path"

    def __repr__(self) -> str:
        return f"<silo.Prediction {self._data.get('rows')} rows → {self._data.get('path')}>"


class Session(Record):
    """A federated session. ``refresh()`` reads its state again; the other
    methods act on it through the client it came from."""

    _title = "id"

    def __init__(self, data: Mapping[str, Any], client: "Client") -> None:
        super().__init__(data)
        self._client = client

    @property
    def done(self) -> bool:
        """Whether the session has ended (completed, failed or cancelled)."""
        return self._data.get("status") in ("completed", "failed", "cancelled")

    @property
    def type(self) -> str:
        return str((self._data.get("config") or {}).get("type") or "hfl")

    def refresh(self) -> "Session":
        """Reads the session's current state from the server (in place)."""
        self._data = self._client._get(f"/api/v1/sessions/{_q(self.id)}")
        return self

    def wait(
        self,
        progress: bool = True,
        *,
        timeout: Optional[float] = None,
        poll: float = 0.5,
        check: bool = True,
        file: Optional[TextIO] = None,
    ) -> "Session":
        """Follows the session until it ends, drawing its progress (round
        k/n, latest loss): a progress bar in a notebook, a line redrawn in
        place on a terminal, one line per change otherwise (on ``file``,
        default standard error).

        Raises :class:`silo.SessionFailed` when it fails or is cancelled
        (unless ``check=False``), and :class:`silo.WaitTimeout` after
        ``timeout`` seconds (the session goes on). Returns the session.
        """
        bar = _progress.Progress(file) if progress else None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                self.refresh()
                if bar:
                    bar.update(self._data)
                if self.done:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise errors.WaitTimeout(
                        f"session {self.id} is still {self.status} (round {self._data.get('round')}/{self._data.get('rounds')}) "
                        f"after {timeout:g}s; it goes on: wait() again or cancel() it",
                        server=self._client.server,
                    )
                time.sleep(poll)
        finally:
            if bar:
                bar.close()
        if check and self.status != "completed":
            raise errors.SessionFailed(
                f"session {self.id} {self.status}: {self._data.get('status_reason') or 'no reason given'}",
                session=self,
                server=self._client.server,
            )
        return self

    def cancel(self) -> "Session":
        """Cancels the session (if it is still pending or running)."""
        self._data = self._client._post(f"/api/v1/sessions/{_q(self.id)}/cancel")
        return self

    def metrics(self) -> Metrics:
        """Every round's federated and per-client metrics (for record
        linkage: each dataset's overlap)."""
        return self._client.metrics(self.id)

    def results(self) -> Results:
        """The differentially private statistics of an EDA session."""
        return self._client.results(self.id)

    def model(self, best: bool = False) -> Model:
        """The final model (or with ``best=True`` the best round's, by the
        session's ``save_best_model``), ready to ``predict(df)``."""
        return self._client.model(self.id, best=best)

    def download_model(self, path: PathLike, best: bool = False) -> str:
        """Saves the model document to path (as ``silo models download``)."""
        return self._client.download_model(self.id, path, best=best)

    def predict(self, dataset: str, best: bool = False, format: str = "csv") -> Prediction:
        """Predicts a registered dataset on its own runner (see
        :meth:`Client.predict`)."""
        return self._client.predict(self, dataset=dataset, best=best, format=format)

    def __repr__(self) -> str:
        d = self._data
        return f"<silo.Session {d.get('id')} {d.get('name')!r} {d.get('status')} round {d.get('round')}/{d.get('rounds')}>"


class Client:
    """A connection to one Silo server, as one user.

    Make one with :func:`silo.connect`. Listings (``runners()``,
    ``datasets()``, ``sessions()``) are pandas DataFrames when pandas is
    installed and lists of dicts otherwise; single objects are
    :class:`Record` s (fields as attributes, ``as_dict()`` for the JSON).

    Every failure raises a :class:`silo.Error` subclass with the API's
    ``code`` and ``message`` (``NotFound``, ``Forbidden``, ``Invalid`` with
    its ``field``, …). Reads are retried with backoff while the server is
    unreachable or overloaded; writes are sent once.

    Runners and datasets: :meth:`runners`, :meth:`runner`, :meth:`datasets`,
    :meth:`dataset` (``.schema()``).
    Sessions: :meth:`create_session`, :meth:`sessions`, :meth:`session`,
    :meth:`cancel_session`; a :class:`Session` can ``wait()``, ``cancel()``,
    give ``metrics()``, ``model()``, ``results()`` and ``predict()``.
    Models and predictions: :meth:`metrics`, :meth:`model`,
    :meth:`download_model`, :meth:`predict`, :meth:`results`.
    """

    def __init__(
        self,
        server: str,
        token: Optional[str] = None,
        *,
        timeout: float = 60.0,
        retries: int = 4,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self._http = Transport(server, token, timeout=timeout, retries=retries, ssl_context=ssl_context)
        self.server = self._http.server
        #: The signed-in user (filled in by connect(check=True)).
        self.user: Dict[str, Any] = {}

    def __repr__(self) -> str:
        who = f" as {self.user['email']}" if self.user.get("email") else ""
        return f"<silo.Client {self.server}{who}>"

    # --- plumbing ---------------------------------------------------------------

    def _get(self, path: str, query: Optional[Mapping[str, Any]] = None) -> Any:
        return self._http.request("GET", path, query=query)

    def _post(self, path: str, body: Any = None) -> Any:
        return self._http.request("POST", path, json_body=body)

    # --- who and where ------------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        """The server's /healthz: status, version, database."""
        return self._get("/healthz")

    def me(self) -> Dict[str, Any]:
        """The signed-in user, their permissions and the token in use."""
        return self._get("/api/v1/me")

    # --- runners and datasets -------------------------------------------------------

    def runners(self, deregistered: bool = False) -> Any:
        """The task runners (deregistered ones too when asked)."""
        rows: list = []
        params: dict = {"limit": _RUNNERS_PAGE}
        if deregistered:
            params["deregistered"] = True
        while True:  # a page at a time: a full page may have a next
            page = self._get("/api/v1/runners", params) or []
            rows.extend(page)
            if len(page) < _RUNNERS_PAGE:
                break
            params["after"] = page[-1]["name"]
        return _tables.table(rows, ("name", "provider", "status", "status_reason", "storage_path", "vcpu", "memory_gb", "memory_mb"))

    def runner(self, name: str) -> Runner:
        """One task runner."""
        return Runner(self._get(f"/api/v1/runners/{_q(name)}"))

    def datasets(self) -> Any:
        """The registered datasets: metadata only, never rows."""
        rows = self._get("/api/v1/datasets") or []
        return _tables.table(rows, ("name", "runner", "status", "row_count", "description", "uri", "error"))

    def dataset(self, name: str) -> Dataset:
        """One dataset: schema, row and null counts, allowed summaries,
        privacy controls (``.schema()`` is the columns as a table)."""
        return Dataset(self._get(f"/api/v1/datasets/{_q(name)}"))

    # --- sessions --------------------------------------------------------------------

    def create_session(self, config: Union[Mapping[str, Any], PathLike], *, wait: bool = False, progress: bool = True) -> Session:
        """Creates a session from its configuration: a dict, or the path of a
        JSON file (as ``silo sessions create -f``). Every session type goes
        through here; the server checks the configuration against the
        datasets' schemas and privacy controls and says what to fix
        (:class:`silo.Invalid` with the ``field``); a server that does not
        run the session's kind (``prl``, ``vfl``, ``eda``) raises
        :class:`silo.NotAvailable`. With ``wait=True`` it also follows the
        session until it ends."""
        if isinstance(config, Mapping):
            body = dict(config)
        else:
            path = os.fspath(config)
            try:
                with open(path, encoding="utf-8") as f:
                    body = json.load(f)
            except FileNotFoundError:
                raise errors.Invalid(f"no session configuration file {path!r}: pass a dict or the path of a JSON file", field="config") from None
            except ValueError as e:
                raise errors.Invalid(f"session configuration {path} is not valid JSON: {e}", field="config") from None
        try:
            s = Session(self._post("/api/v1/sessions", body), self)
        except errors.Invalid as e:
            kind = str(body.get("type") or "hfl")
            if _kind_refused(e, kind):
                raise errors.NotAvailable(
                    f"the Silo server at {self.server} does not run {kind} sessions yet; it says: {e.message}",
                    field=e.field,
                    status=e.status,
                    server=self.server,
                ) from None
            raise
        if wait:
            s.wait(progress=progress)
        return s

    def sessions(self) -> Any:
        """The sessions you may see, newest first."""
        rows = self._get("/api/v1/sessions") or []
        for r in rows:
            r.setdefault("type", (r.get("config") or {}).get("type", "hfl"))
        return _tables.table(rows, ("id", "name", "type", "status", "round", "rounds", "status_reason", "created_at", "created_by"))

    def session(self, session_id: str) -> Session:
        """One session."""
        return Session(self._get(f"/api/v1/sessions/{_q(session_id)}"), self)

    def cancel_session(self, session: Union[Session, str]) -> Session:
        """Cancels a pending or running session."""
        return Session(self._post(f"/api/v1/sessions/{_q(_id(session))}/cancel"), self)

    # --- metrics, results, models, predictions ---------------------------------------

    def metrics(self, session: Union[Session, str]) -> Metrics:
        """A session's metrics (see :class:`silo.Metrics`)."""
        sid = _id(session)
        return Metrics(self._get(f"/api/v1/sessions/{_q(sid)}/metrics") or {}, session=sid)

    def results(self, session: Union[Session, str]) -> Results:
        """The results of an EDA session (see :class:`silo.Results`).

        Raises :class:`silo.NotAvailable` when the server does not serve
        EDA results."""
        sid = _id(session)
        try:
            data = self._get(f"/api/v1/sessions/{_q(sid)}/results")
        except errors.NotFound as e:
            if e.message.startswith("no API route"):
                raise errors.NotAvailable(
                    f"the Silo server at {self.server} does not serve session results (it has no "
                    f"GET /api/v1/sessions/{{id}}/results): its version runs no EDA sessions; "
                    "training metrics are in metrics()",
                    status=e.status,
                    server=self.server,
                ) from None
            raise
        return Results(data or {}, session=sid)

    def model_document(self, session: Union[Session, str], best: bool = False) -> Dict[str, Any]:
        """A session's model document as a dict (final, or best)."""
        raw = self._http.request("GET", f"/api/v1/sessions/{_q(_id(session))}/model", query={"best": True} if best else None, raw=True)
        try:
            return json.loads(raw)
        except ValueError:
            raise errors.Error(f"the model of {_id(session)} from {self.server} is not JSON", server=self.server) from None

    def model(self, session: Union[Session, str], best: bool = False) -> Model:
        """A session's final model (or the best round's), loaded to
        ``predict(df)`` locally."""
        return Model(self.model_document(session, best=best))

    def download_model(self, session: Union[Session, str], path: PathLike, best: bool = False) -> str:
        """Saves a session's model document to path; returns the path."""
        return Model(self.model_document(session, best=best)).save(path)

    def predict(self, session: Union[Session, str], dataset: str, best: bool = False, format: str = "csv") -> Prediction:
        """Runs a session's model (final, or ``best``) on a registered
        dataset, on the dataset's own runner, which writes the predictions
        (``format`` csv or parquet) to its own storage. Returns how many rows
        and where (``rows``, ``path``); no row comes back."""
        body = {"session": _id(session), "dataset": dataset, "format": format}
        if best:
            body["best"] = True
        return Prediction(self._post("/api/v1/predictions", body))


#: Fields only sessions of one kind have (from the kinds' documented
#: configurations): a server that calls one of them unknown does not run
#: that kind at all, which is not a typo to fix.
_KIND_FIELDS = {
    "prl": frozenset({"id_columns", "normalize", "keys"}),
    "vfl": frozenset({"prl_session", "epochs", "activation_noise", "label_model", "feature_models"}),
    "eda": frozenset({"mode", "columns", "statistics", "histogram", "quantiles", "pairs", "prl_session"}),
}


def _kind_refused(e: errors.Invalid, kind: str) -> bool:
    """Whether the server refused a session because it does not run its
    kind (rather than for a mistake in the configuration)."""
    if kind not in _KIND_FIELDS:
        return False
    if e.field == "type" and ("not built yet" in e.message or "unknown session type" in e.message):
        return True
    m = re.search(r'unknown field "([^"]+)"', e.message)
    return bool(m and m.group(1) in _KIND_FIELDS[kind])


def _id(session: Union[Session, str, Mapping[str, Any]]) -> str:
    if isinstance(session, str):
        return session
    if isinstance(session, Mapping) and "id" in session:
        return str(session["id"])
    raise TypeError(f"expected a session or its id, not {type(session).__name__}")


def connect(
    server: Optional[str] = None,
    token: Optional[str] = None,
    *,
    check: bool = True,
    timeout: float = 60.0,
    retries: int = 4,
    ssl_context: Optional[ssl.SSLContext] = None,
) -> Client:
    """Connects to a Silo server.

    The server and token come from the arguments, else ``$SILO_SERVER`` and
    ``$SILO_TOKEN``, else the login ``silo login`` saved (``$SILO_CONFIG``,
    default ``~/.config/silo/config.json``); the saved token is only sent to
    the server it belongs to. With ``check`` (the default) it asks the
    server who you are, so a wrong address or token fails here, clearly.

    ``ssl_context`` takes a private certificate authority
    (``ssl.create_default_context(cafile=...)``); ``HTTPS_PROXY`` is honoured.
    """
    creds = resolve(server, token)
    client = Client(creds.server, creds.token, timeout=timeout, retries=retries, ssl_context=ssl_context)
    if check:
        try:
            me = client.me()
        except errors.Unauthorized as e:
            hint = {
                "saved login": "the saved login's token no longer works: run 'silo login' again",
                "environment": "check $SILO_TOKEN",
                "argument": "check the token you passed",
            }[creds.source]
            raise errors.Unauthorized(f"{e.message} ({hint})", status=e.status, server=e.server) from None
        client.user = (me or {}).get("user") or {}
    return client
