"""HTTP to the Silo API with the standard library (urllib).

Reads (GET) are idempotent, so they are retried with capped, jittered
exponential backoff when the server cannot be reached or answers 429, 502,
503 or 504 (a server restarting, a proxy in between); writes are sent once,
so a session is never created twice.
"""

from __future__ import annotations

import email.message
import http.client
import json
import random
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping, Optional

from . import errors
from ._version import __version__

#: Statuses worth retrying a read on: the server or a proxy is overloaded or
#: restarting.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

#: Largest error body read: error bodies are small, and a proxy's HTML page
#: is not worth buffering.
MAX_ERROR_BODY = 64 << 10


class Transport:
    """Sends requests to one server as one identity.

    Args:
        server: the server's base URL, such as ``https://silo.example.org``.
        token: an access token (``silo_…``), sent as a Bearer token; never
            shown in a repr, a message or a log.
        timeout: seconds to wait for each response.
        retries: how many times a read is tried again after a network error
            or a 429/502/503/504 answer.
        backoff: the first retry's delay in seconds; it doubles each time
            (with jitter), up to ``max_backoff``.
        ssl_context: for a private certificate authority, e.g.
            ``ssl.create_default_context(cafile="ca.pem")``.
    """

    def __init__(
        self,
        server: str,
        token: Optional[str],
        *,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        ssl_context: Optional[ssl.SSLContext] = None,
        user_agent: str = f"silo-python/{__version__}",
    ) -> None:
        self.server = server.rstrip("/")
        self._token = token or ""
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.user_agent = user_agent
        handlers: list = [urllib.request.ProxyHandler()]  # honours HTTPS_PROXY / NO_PROXY
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)
        self._sleep = time.sleep

    def __repr__(self) -> str:
        return f"Transport({self.server!r})"

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        data: Optional[bytes] = None,
        content_type: Optional[str] = None,
        raw: bool = False,
    ) -> Any:
        """Sends a request and returns the decoded JSON answer (None for an
        empty one), or the body's bytes when ``raw``. Failures raise
        :class:`silo.Error` subclasses."""
        url = self.server + path
        if query:
            q = {k: _query_value(v) for k, v in query.items() if v is not None}
            if q:
                url += "?" + urllib.parse.urlencode(q)
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        idempotent = method in ("GET", "HEAD")
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            if self._token:
                # Not sent on a redirect: whatever the server redirects to
                # (another host) never gets the token.
                req.add_unredirected_header("Authorization", "Bearer " + self._token)
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    body = resp.read()
            except urllib.error.HTTPError as e:
                with e:
                    if e.code in RETRY_STATUSES and not last:
                        self._sleep(self._delay(attempt, e.headers))
                        continue
                    raise self._error(e.code, e.reason, e.headers, e.read(MAX_ERROR_BODY)) from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, ssl.SSLCertVerificationError) or last:
                    tried = f" (tried {attempt + 1} times)" if attempt else ""
                    raise errors.Unreachable(
                        f"could not reach the Silo server at {self.server}: {_describe(reason)}{tried}",
                        server=self.server,
                    ) from None
                self._sleep(self._delay(attempt, None))
                continue
            if raw:
                return body
            if not body:
                return None
            try:
                return json.loads(body)
            except ValueError:
                raise errors.Error(
                    f"unexpected answer from {self.server} to {method} {path} (is this a Silo server?)",
                    server=self.server,
                ) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _delay(self, attempt: int, headers: Optional[email.message.Message]) -> float:
        """Seconds to wait before retry attempt+1: Retry-After when the server
        gives one (bounded), else exponential backoff with jitter."""
        if headers is not None:
            after = headers.get("Retry-After", "")
            if after.strip().isdigit():
                return min(float(after), self.max_backoff * 4)
        return min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.5)

    def _error(self, status: int, reason: str, headers: email.message.Message, body: bytes) -> errors.Error:
        """The error for an HTTP error answer: the server's own when the body
        has the API's shape, otherwise one built from the status."""
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            e = doc.get("error")
            if isinstance(e, dict) and e.get("code"):
                return errors.from_api(
                    str(e["code"]),
                    str(e.get("message") or ""),
                    field=e.get("field"),
                    fields=e.get("fields"),
                    status=status,
                    server=self.server,
                )
            if isinstance(e, str) and e:  # /healthz's {"status": …, "error": "…"}
                return errors.from_api(
                    errors.code_for_status(status), f"server returned {status} {reason}: {e}", status=status, server=self.server
                )
        msg = f"server returned {status} {reason}"
        if (headers.get_content_type() if headers else "") == "text/plain":
            line = body.decode("utf-8", "replace").strip().split("\n", 1)[0]
            if line and len(line) <= 200:
                msg += ": " + line
        return errors.from_api(errors.code_for_status(status), msg, status=status, server=self.server)


def _query_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _describe(reason: Any) -> str:
    """A network failure in a few words."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the server running at that address?)"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror or reason})"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted ({reason.verify_message}); pass ssl_context= with your CA bundle"
    return str(reason) or type(reason).__name__
