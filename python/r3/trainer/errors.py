"""The errors of :class:`~r3.trainer.ReplayClient`: :class:`ReplayError` and one subclass per kind of failure, and the
one short line an exception message carries of a server's error body."""

from __future__ import annotations

import html
import re


class ReplayError(Exception):
    """A request the server refused or could not answer.

    Attributes:
        request: what was asked for, as the message names it (``"ordinal 7"``, ``"request 'req-1'"``, ``"/manifest"``).
        status: the HTTP status (0 when the server could not be reached or the answer was not HTTP).
        server_message: the server's one-line reason ("" when it gave none).
    """

    def __init__(self, request: str, status: int, server_message: str, detail: str = "") -> None:
        self.request = request
        self.status = status
        self.server_message = server_message
        text = f"{request}: HTTP {status}: {server_message}" if status else f"{request}: {server_message}"
        super().__init__(text + (f" ({detail})" if detail else ""))


class BadRequest(ReplayError):
    """400: a malformed or out-of-range option; the message names the parameter and value."""


class Unauthorized(ReplayError):
    """401: the server needs a bearer token (``token=`` or ``$R3_TOKEN``), or another one."""


class RequestNotFound(ReplayError):
    """404: no record with that ordinal, id or index (never written, or not yet)."""


class RequestDeleted(ReplayError):
    """410: the record was deleted by the store's retention."""


class ServerBusy(ReplayError):
    """503: too many live followers (``--max-followers``); retry later."""


class MissingRowsError(ReplayError):
    """409: ``dtype="native"`` asked for rows of which some are missing, which the stored dtype cannot express.

    The message names the count; fetch with ``dtype="int16"``/``"int32"``/``"int64"`` (every id of a missing row is
    ``missing``), or a ``start``/``drop_last`` that leaves the missing rows out.
    """


class ChecksumError(ReplayError):
    """The bytes received do not match the checksum the server sent: nothing of them is returned."""


class NotAnR3Server(ReplayError):
    """The URL answers, but not as an ``r3 serve`` server: an HTML page, JSON without r3's fields, an answer without
    r3's ``X-R3-`` headers, or a 404 for ``/manifest`` (another service, or the right host at the wrong path)."""


class ServerUnreachable(ReplayError):
    """No connection to the server: nobody listens there, the host is unknown, it closed the connection unanswered, or
    a proxy in front of it answered 502, 503 or 504 with an HTML page."""


class ReplayTimeout(ReplayError, TimeoutError):
    """The server did not answer within ``timeout_s`` (or a :meth:`ReplayClient.follow` got no record within its
    ``read_timeout_s``). Also a :class:`TimeoutError`."""


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 404: RequestNotFound, 409: MissingRowsError, 410: RequestDeleted,
              503: ServerBusy}

# the most characters of a server's error body an exception message carries
_BODY_CHARS = 300
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)


def _is_html(body: bytes, content_type: str) -> bool:
    head = body[:256].lstrip().lower()
    return "html" in content_type.lower() or head.startswith(b"<!doctype html") or head.startswith(b"<html")


def _body_line(body: bytes, content_type: str) -> str:
    """A server's answer as one short line: an HTML page by its ``<title>``, any other body with its whitespace folded
    and cut to ``_BODY_CHARS`` characters."""
    text = body.decode("utf-8", "replace")
    if _is_html(body, content_type):
        found = _TITLE.search(text)
        title = " ".join(html.unescape(found.group(1)).split()) if found else ""
        return f"an HTML page titled {title[:_BODY_CHARS]!r}" if title else "an HTML page without a title"
    text = " ".join(text.split())
    return text if len(text) <= _BODY_CHARS else text[:_BODY_CHARS] + "..."
