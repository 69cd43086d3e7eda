"""Errors the client raises: every one a :class:`silo.Error`.

The server answers a failed request with ``{"error": {"code", "message",
"field"}}`` and an HTTP status that matches the code. The client raises the
subclass for that code, carrying the server's message unchanged, so a
notebook shows what went wrong and how to fix it::

    try:
        client.dataset("hospital_z")
    except silo.NotFound as e:
        print(e.code, e.message)      # not_found  dataset "hospital_z" not found
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple


class Error(Exception):
    """Base class of every error the Silo client raises.

    Attributes:
        code: the API's error code (``invalid``, ``not_found``, ``conflict``,
            ``unauthorized``, ``forbidden``, ``too_many_requests``,
            ``internal``), or one of the client's own: ``unreachable`` (no
            answer from the server), ``not_available`` (the server does not
            offer this yet), ``timeout``, ``session_failed``.
        message: what went wrong, and where possible how to fix it.
        field: the input field the error is about (``invalid`` errors), or
            None.
        fields: every problem of a refused input at once, as a list of
            ``(field, message)`` pairs (``invalid`` errors that found more
            than one; otherwise empty). ``message`` then sums them up.
        status: the HTTP status, when the server answered.
        server: the server's URL.
    """

    code = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        field: Optional[str] = None,
        fields: Optional[List[Tuple[str, str]]] = None,
        status: Optional[int] = None,
        server: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field or None
        self.fields = list(fields or [])
        self.status = status
        self.server = server

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        extra = f", field={self.field!r}" if self.field else ""
        if self.fields:
            extra += f", fields={self.fields!r}"
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}{extra})"


class Invalid(Error):
    """The request was refused as invalid (HTTP 400); ``field`` names the
    input field at fault when there is one, e.g. ``"model.family"``."""

    code = "invalid"


class NotFound(Error):
    """No such runner, dataset, session or model (HTTP 404)."""

    code = "not_found"


class Conflict(Error):
    """The request conflicts with the current state (HTTP 409), e.g. a name
    that is taken or a session that has already ended."""

    code = "conflict"


class Unauthorized(Error):
    """Not signed in, or the token is wrong, expired or revoked (HTTP 401)."""

    code = "unauthorized"


class Forbidden(Error):
    """Signed in, but not allowed to do this (HTTP 403): the role, the token's
    scope or the dataset's privacy controls do not permit it."""

    code = "forbidden"


class TooManyRequests(Error):
    """The server asks to slow down (HTTP 429)."""

    code = "too_many_requests"


class ServerError(Error):
    """The server failed (HTTP 5xx); it logged the details."""

    code = "internal"


class Unreachable(Error):
    """No answer from the server: it is down, the address is wrong, or the
    network is in the way. The message names the server."""

    code = "unreachable"


class NotAvailable(Error):
    """The server does not offer this yet (for example results of a session
    kind it does not run). Nothing is made up in its place."""

    code = "not_available"


class WaitTimeout(Error, TimeoutError):
    """:meth:`Session.wait` gave up before the session ended; the session
    goes on on the server."""

    code = "timeout"


class SessionFailed(Error):
    """:meth:`Session.wait` saw the session fail or be cancelled; ``session``
    holds its final state and ``message`` the server's reason."""

    code = "session_failed"

    def __init__(self, message: str, *, session: Any = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.session = session


_BY_CODE = {
    "invalid": Invalid,
    "not_found": NotFound,
    "conflict": Conflict,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "too_many_requests": TooManyRequests,
    "internal": ServerError,
}


def code_for_status(status: int) -> str:
    """The API code for an HTTP status: the inverse of the server's mapping,
    for answers without the API's error body (a proxy's error page)."""
    if status in (400, 413, 422):
        return "invalid"
    return {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 429: "too_many_requests"}.get(
        status, "invalid" if status < 500 else "internal"
    )


def from_api(
    code: str,
    message: str,
    *,
    field: Optional[str] = None,
    fields: Any = None,
    status: Optional[int] = None,
    server: Optional[str] = None,
) -> Error:
    """The :class:`Error` subclass for an API error code. ``fields`` is the
    API's list of ``{"field": …, "message": …}`` objects."""
    cls = _BY_CODE.get(code, Error)
    pairs = [
        (str(f.get("field") or ""), str(f.get("message") or ""))
        for f in (fields if isinstance(fields, list) else [])
        if isinstance(f, dict)
    ]
    return cls(message, code=code, field=field, fields=pairs, status=status, server=server)
