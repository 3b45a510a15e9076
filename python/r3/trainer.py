"""Trainer side of R3: fetch the routing a rollout recorded from an ``r3 serve`` replay server.

Pure Python and numpy (torch only if you ask for tensors). One class, :class:`ReplayClient`::

    from r3.trainer import ReplayClient
    client = ReplayClient("http://127.0.0.1:8787")            # token: argument, else $R3_TOKEN, else none
    routing = client.fetch("req-42", dtype="int64")   # numpy int64 [S, layers, top_k], S = prompt + generated - 1

What a fetch guarantees (see docs/contract.md for which rows exist and what missing means, docs/trainer.md for the rest):

* the array is ``[S', L', K]`` in token order (prompt, then output), one row per forwarded token: a record holds
  ``S = prompt + generated - 1`` rows (the final generated token was never forwarded, so it has none; a trainer that
  wants ``prompt + generated`` rows appends a placeholder row itself); ``S' = S - start`` rows, or ``S - 1 - start``
  with ``drop_last`` (which drops the last *forwarded* token's row, the first generated token's for a one-token answer:
  not what the missing final token needs); ``L'`` MoE layers ``layers[0] .. layers[1]-1`` (0-based, dense layers not
  counted); ``K`` = top-k;
* ``dtype="native"`` is the store's compact dtype (uint8 up to 256 experts, uint16 up to 65536, else int32), which
  has no value for a missing row: a fetch whose rows include one raises :class:`MissingRowsError` (409) naming the
  count; ``"int16"`` (up to 32768 experts), ``"int32"`` and ``"int64"`` are signed and every id of a missing row is
  ``missing`` (-1 unless asked). A missing row is one the store could not vouch for, with a reason
  (``fetch(..., return_reasons=True)``, ``RequestInfo.missing_reasons``): the trainer falls back to its live router
  there;
* the bytes were checked: the CRC32C of the response body must equal the server's ``X-R3-Body-CRC32C``, and a whole
  native fetch's array bytes must equal the writer's ``X-R3-CRC32C``; otherwise :class:`ChecksumError`;
* every failure names the request and carries the server's one-line reason (:class:`ReplayError` and subclasses);
  a URL that is not an ``r3 serve`` server raises :class:`NotAnR3Server`, one nobody listens at
  :class:`ServerUnreachable`, one that does not answer in time :class:`ReplayTimeout`; an error body is cut to one short
  line (an HTML page to its ``<title>``).
"""

from __future__ import annotations

import html
import http.client
import io
import json
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ReplayClient",
    "Manifest",
    "RequestInfo",
    "ReplayError",
    "BadRequest",
    "Unauthorized",
    "RequestNotFound",
    "RequestDeleted",
    "ServerBusy",
    "MissingRowsError",
    "ChecksumError",
    "NotAnR3Server",
    "ServerUnreachable",
    "ReplayTimeout",
    "crc32c",
    "crc32c_combine",
]

TOKEN_ENV = "R3_TOKEN"
DTYPES = ("native", "int16", "int32", "int64")


# --------------------------------------------------------------------------------------------------------- errors


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


# --------------------------------------------------------------------------------------------------------- CRC32C

_POLY = 0x82F63B78


def _table() -> np.ndarray:
    t = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        t[i] = c
    return t


_TABLE = _table()
_TABLE_LIST = [int(x) for x in _TABLE]


def _raw(state: int, data: bytes) -> int:
    """The CRC register after ``data`` from ``state`` (no pre- or post-inversion), a byte at a time."""
    t = _TABLE_LIST
    for b in data:
        state = t[(state ^ b) & 0xFF] ^ (state >> 8)
    return state


def _apply(op: Sequence[int], x: int) -> int:
    """A GF(2) 32x32 operator (its 32 columns) applied to ``x``."""
    r = 0
    i = 0
    while x:
        if x & 1:
            r ^= op[i]
        x >>= 1
        i += 1
    return r


def _compose(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """The operator ``a`` after ``b``."""
    return [_apply(a, c) for c in b]


# feeding one zero byte into the register is linear in the register: its operator, then 2, 4, 8, ... bytes
_POWERS = [[_raw(1 << i, b"\0") for i in range(32)]]


def _zeros_op(n: int) -> list[int]:
    """The operator of feeding ``n`` zero bytes."""
    op = None
    k = 0
    while n:
        while len(_POWERS) <= k:
            _POWERS.append(_compose(_POWERS[-1], _POWERS[-1]))
        if n & 1:
            op = _POWERS[k] if op is None else _compose(_POWERS[k], op)
        n >>= 1
        k += 1
    return op if op is not None else [1 << i for i in range(32)]


def crc32c_combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """The CRC32C of ``A + B`` from ``crc32c(A)``, ``crc32c(B)`` and ``len(B)``, without the bytes."""
    if length_b <= 0:
        return crc_a
    return _apply(_zeros_op(length_b), crc_a) ^ crc_b


def _apply_vec(op: Sequence[int], x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for i in range(32):
        out ^= ((x >> np.uint32(i)) & np.uint32(1)) * np.uint32(op[i])
    return out


def _crc32c_numpy(data: np.ndarray) -> int:
    """CRC32C with numpy: many lanes a byte at a time in parallel, then their CRCs combined pairwise."""
    n = data.size
    if n < 1024:
        return _raw(0xFFFFFFFF, data.tobytes()) ^ 0xFFFFFFFF
    lanes = 1 << max(4, min(14, (n // 256).bit_length() - 1))
    length = n // lanes
    cols = np.ascontiguousarray(data[: lanes * length].reshape(lanes, length).T)
    state = np.zeros(lanes, dtype=np.uint32)
    table = _TABLE
    mask = np.uint32(0xFF)
    eight = np.uint32(8)
    for j in range(length):
        state = table[(state ^ cols[j]) & mask] ^ (state >> eight)
    op = _zeros_op(length)
    while state.size > 1:
        state = _apply_vec(op, state[0::2]) ^ state[1::2]
        op = _compose(op, op)
    raw = _apply(op, 0xFFFFFFFF) ^ int(state[0])
    raw = _raw(raw, data[lanes * length:].tobytes())
    return raw ^ 0xFFFFFFFF


def _native_crc32c() -> Any:
    try:
        import crc32c as _c

        return lambda b: _c.crc32c(b)
    except ImportError:
        pass
    try:
        import google_crc32c as _g

        return lambda b: _g.value(bytes(b))
    except ImportError:
        return None


_FAST = _native_crc32c()


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC32C (Castagnoli, as Java's ``java.util.zip.CRC32C``) of ``data``.

    Uses the ``crc32c`` or ``google-crc32c`` package when installed (GB/s), else numpy (about 200 MB/s).
    """
    if _FAST is not None:
        return int(_FAST(data))
    return _crc32c_numpy(np.frombuffer(data, dtype=np.uint8))


# --------------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Manifest:
    """The store's shape: every record is ``[seq_len, moe_layers, top_k]`` in ``dtype``.

    ``store_format`` is 3 (ids with no reserved value, missing rows recorded apart) or 2 (an older store; its ids keep
    their old dtype, e.g. uint16 for 256 experts); ``missing_as`` (-1) is what every id of a missing row is in the
    dtypes of ``missing_dtypes`` (``int16`` only up to 32768 experts); ``first_ordinal``/``last_ordinal`` the records
    stored when the manifest was read (-1 when there is none).
    """

    moe_layers: int
    top_k: int
    num_experts: int
    dtype: str
    store_format: int
    missing_as: int
    missing_dtypes: tuple[str, ...]
    slot_capacity: int
    first_ordinal: int
    last_ordinal: int


@dataclass(frozen=True)
class RequestInfo:
    """One finished request as ``/requests`` lists it: ``fetch(info)`` fetches exactly this record.

    ``missing_rows`` counts its rows the store could not vouch for (0 for most records) and ``missing_reasons`` how many
    of them had each reason (``{"never-written": 2}``; docs/contract.md). ``superseded_by`` is the ordinal of a later
    record of the same id (a retry finished again: fetching by id gives that one), else ``None``.

    Two other kinds of line become a ``RequestInfo`` too, so a listing never stops short: ``damaged`` (a record the
    store holds but cannot read: its checksum or bytes are wrong; the reason) and ``lost`` (records missing from the
    store that retention did not delete: the last line, naming the file and ordinals). Their ``request_id`` is ``""``.
    """

    index: str
    ordinal: int
    request_id: str
    round: int
    seq_len: int
    missing_rows: int = 0
    missing_reasons: Mapping[str, int] = field(default_factory=dict)
    superseded_by: int | None = None
    damaged: str | None = None
    lost: str | None = None

    @staticmethod
    def _of(line: Mapping[str, Any]) -> RequestInfo:
        if line.get("lost"):
            return RequestInfo("", -1, "", -1, -1, lost=str(line["reason"]))
        if line.get("damaged"):
            return RequestInfo(str(line["index"]), int(line["ordinal"]), "", -1, -1, damaged=str(line["reason"]))
        newer = line.get("supersededBy")
        reasons = {str(k): int(v) for k, v in dict(line.get("missingReasons", {})).items()}
        return RequestInfo(str(line["index"]), int(line["ordinal"]), str(line["requestId"]), int(line["round"]),
                           int(line["seqLen"]), int(line.get("missingRows", 0)), reasons, None if newer is None else int(newer))


RequestRef = int | str | RequestInfo


def _reasons(header: str) -> dict[str, int]:
    """``X-R3-Missing-Reasons`` (``reason=count,...``, empty when none) as a dict."""
    out = {}
    for part in header.split(","):
        if "=" in part:
            name, count = part.split("=", 1)
            out[name.strip()] = int(count)
    return out


def _describe(request: RequestRef) -> str:
    if isinstance(request, RequestInfo):
        return f"request {request.request_id!r} (ordinal {request.ordinal}, index {request.index})"
    if isinstance(request, str):
        return f"request {request!r}"
    return f"ordinal {request}"


def _layers_query(layers: Any) -> tuple[int, int] | None:
    if layers is None:
        return None
    if isinstance(layers, str):
        parts = layers.split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"layers={layers!r}: want 'FROM:TO' (both given), a (FROM, TO) pair, range(FROM, TO) or "
                             "slice(FROM, TO)")
        lo, hi = int(parts[0]), int(parts[1])
    elif isinstance(layers, range):
        if layers.step != 1:
            raise ValueError(f"layers={layers!r}: want a step of 1")
        lo, hi = layers.start, layers.stop
    elif isinstance(layers, slice):
        if layers.step not in (None, 1) or layers.start is None or layers.stop is None:
            raise ValueError(f"layers={layers!r}: want slice(FROM, TO) with both ends and no step")
        lo, hi = layers.start, layers.stop
    else:
        try:
            lo, hi = layers
        except (TypeError, ValueError):
            raise ValueError(f"layers={layers!r}: want a (FROM, TO) pair, 'FROM:TO', range(FROM, TO) or "
                             "slice(FROM, TO)") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (lo, hi)) or not 0 <= lo < hi:
        raise ValueError(f"layers={layers!r}: want whole numbers with 0 <= FROM < TO (a half-open range of MoE layers)")
    return int(lo), int(hi)


# --------------------------------------------------------------------------------------------------------- client


class ReplayClient:
    """A client of one ``r3 serve`` server. Thread-safe: every call opens its own connection.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8787`` (``http`` or ``https``).
        token: the bearer token; ``None`` takes ``$R3_TOKEN`` if set, else none. Never logged or put in messages.
        timeout_s: connect and read timeout of every call, in seconds (a :meth:`follow` waiting for new records uses
            its own ``read_timeout_s``).
    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url={url!r}: want http://HOST:PORT or https://HOST:PORT")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s!r}: want a positive number of seconds")
        self.url = url.rstrip("/")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._prefix = parsed.path.rstrip("/")
        if token is None:
            token = os.environ.get(TOKEN_ENV) or None
        self._token = token.strip() if token else None
        self.timeout_s = float(timeout_s)

    def __repr__(self) -> str:
        return f"ReplayClient({self.url!r}, token={'set' if self._token else None}, timeout_s={self.timeout_s})"

    # ------------------------------------------------------------------------------------------ transport

    def _not_r3(self, what: str, status: int, problem: str) -> NotAnR3Server:
        return NotAnR3Server(what, status, problem, f"{self.url} is not an r3 server, or not at this path")

    def _timed_out(self, what: str, status: int = 0) -> ReplayTimeout:
        return ReplayTimeout(what, status, f"no answer from {self.url} within {self.timeout_s:g} s (timeout_s)")

    def _open(self, path: str, what: str,
              read_timeout_s: float | None = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.timeout_s)
        headers = {"Accept": "*/*"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            conn.request("GET", self._prefix + path, headers=headers)
            res = conn.getresponse()
        except TimeoutError as e:
            conn.close()
            raise self._timed_out(what) from e
        except http.client.RemoteDisconnected as e:
            conn.close()
            raise ServerUnreachable(what, 0, f"cannot reach {self.url}: it closed the connection without an answer") from e
        except http.client.BadStatusLine as e:
            conn.close()
            raise self._not_r3(what, 0, f"the answer is not HTTP ({_body_line(str(e).encode(), '')})") from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise ServerUnreachable(what, 0, f"cannot reach {self.url}: {e}") from e
        if res.status != 200:
            content_type = res.getheader("content-type", "")
            try:
                body = res.read(64 * 1024)
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                conn.close()
            message = _body_line(body, content_type) or res.reason
            if _is_html(body, content_type) and res.status in (502, 503, 504):
                # r3 serve never sends HTML: a proxy in front of it answered for a server it could not reach
                raise ServerUnreachable(what, res.status, message, f"a proxy at {self.url} could not reach the server behind it")
            if _is_html(body, content_type) or (res.status == 404 and path == "/manifest"):
                raise self._not_r3(what, res.status, message)
            raise _BY_STATUS.get(res.status, ReplayError)(what, res.status, message)
        if read_timeout_s is not None and conn.sock is not None:
            conn.sock.settimeout(read_timeout_s)
        return conn, res

    def _get(self, path: str, what: str) -> tuple[http.client.HTTPResponse, bytearray]:
        conn, res = self._open(path, what)
        try:
            length = res.getheader("content-length")
            if length is not None:
                body = bytearray(int(length))
                view = memoryview(body)
                got = 0
                while got < len(body):
                    n = res.readinto(view[got:])
                    if not n:
                        raise ReplayError(what, res.status, f"the answer ended after {got} of {len(body)} bytes")
                    got += n
            else:
                body = bytearray(res.read())
            return res, body
        except TimeoutError as e:
            raise self._timed_out(what, res.status) from e
        except (OSError, http.client.HTTPException) as e:
            raise ReplayError(what, res.status, f"reading the answer failed: {e}") from e
        finally:
            conn.close()

    # ------------------------------------------------------------------------------------------ routes

    def health(self) -> bool:
        """Whether the server answers ``/health`` (needs no token)."""
        try:
            res, body = self._get("/health", "/health")
            return bool(json.loads(body.decode("utf-8")).get("status") == "ok")
        except (ReplayError, ValueError, AttributeError):
            return False  # unreachable, refused, or not an r3 server's JSON

    def manifest(self) -> Manifest:
        """The store's shape, dtype, how missing rows are served and the ordinals stored now."""
        res, body = self._get("/manifest", "/manifest")
        try:
            m = json.loads(body.decode("utf-8"))
            return Manifest(int(m["moeLayers"]), int(m["topK"]), int(m["numExperts"]), str(m["dtype"]), int(m["storeFormat"]),
                            int(m["missingAs"]), tuple(str(d) for d in m["missingDtypes"]), int(m["slotCapacity"]),
                            int(m["firstOrdinal"]), int(m["lastOrdinal"]))
        except KeyError as e:
            raise self._not_r3("/manifest", res.status,
                               f"the answer has no {e.args[0]!r}: {_body_line(bytes(body), '')}") from None
        except (ValueError, TypeError, AttributeError) as e:
            raise self._not_r3("/manifest", res.status, f"the answer is not an r3 manifest ({e}): "
                                                        f"{_body_line(bytes(body), res.getheader('content-type', ''))}") from None

    def _info(self, what: str, line: str | bytes) -> RequestInfo:
        """One listing line as a :class:`RequestInfo`; :class:`NotAnR3Server` when it is not an r3 listing line."""
        try:
            return RequestInfo._of(json.loads(line))
        except KeyError as e:
            problem = f"a listing line has no {e.args[0]!r}"
        except (ValueError, TypeError, AttributeError) as e:
            problem = f"a listing line is not an r3 record ({e})"
        text = line if isinstance(line, str) else line.decode("utf-8", "replace")
        raise self._not_r3(what, 200, f"{problem}: {_body_line(text.encode(), '')}")

    @staticmethod
    def _listing_query(after: None | str | RequestInfo, limit: int | None, follow: bool) -> str:
        params = []
        if after is not None:
            params.append(("after", after.index if isinstance(after, RequestInfo) else str(after)))
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
                raise ValueError(f"limit={limit!r}: want a whole number 0 or more")
            params.append(("limit", str(int(limit))))
        if follow:
            params.append(("follow", "true"))
        return "/requests" + ("?" + urllib.parse.urlencode(params) if params else "")

    def list_requests(self, after: None | str | RequestInfo = None, limit: int | None = None) -> list[RequestInfo]:
        """The finished requests stored now, in write order.

        Args:
            after: start after this record (a :class:`RequestInfo`, or its hex ``index``); ``None`` from the first.
            limit: at most this many.
        """
        query = self._listing_query(after, limit, follow=False)
        _, body = self._get(query, "/requests")
        return [self._info("/requests", line) for line in body.decode("utf-8", "replace").splitlines() if line.strip()]

    def follow(self, after: None | str | RequestInfo = None, limit: int | None = None,
               read_timeout_s: float | None = None) -> Iterator[RequestInfo]:
        """Every stored request, then each new one as it finishes (a generator over the live NDJSON listing).

        Ends after ``limit`` records, or never; closing the generator (``break``, ``.close()``) closes the connection
        and frees the server's follower place. With ``read_timeout_s``, waiting longer than that for the next record
        raises :class:`ReplayTimeout` (a :class:`TimeoutError`). Raises :class:`ServerBusy` when the server has
        ``--max-followers`` already.
        """
        query = self._listing_query(after, limit, follow=True)
        conn, res = self._open(query, "/requests?follow=true", read_timeout_s=read_timeout_s)
        try:
            while True:
                try:
                    line = res.readline()
                except TimeoutError as e:
                    raise ReplayTimeout("/requests?follow=true", res.status, f"no new record within {read_timeout_s} s") from e
                except OSError as e:
                    if "timed out" in str(e):
                        raise ReplayTimeout("/requests?follow=true", res.status,
                                            f"no new record within {read_timeout_s} s") from e
                    raise ReplayError("/requests?follow=true", res.status, f"the listing broke off: {e}") from e
                if not line:
                    return
                if line.strip():
                    yield self._info("/requests?follow=true", line)
        finally:
            conn.close()

    def fetch(self, request: RequestRef, *, start: int = 0, layers: Any = None, drop_last: bool = False,
              dtype: str = "native", missing: int = -1, as_tensor: bool = False, return_reasons: bool = False) -> Any:
        """One request's routing ``[S', L', K]``, checked against the server's checksums.

        Args:
            request: an ordinal (``int``, 0..N-1 in write order), a request id (``str``; the newest record with it), or
                a :class:`RequestInfo` from :meth:`list_requests`/:meth:`follow` (exactly that record).
            start: the first token position (only a new turn's rows: ``start`` = the earlier turns' length).
            layers: MoE layers ``(FROM, TO)`` half-open (also ``"FROM:TO"``, ``range``, ``slice``); all when None.
            drop_last: without the record's last row, ``S - 1`` rows. The record already has no row for the final generated
                token (never forwarded), so this drops the last forwarded token's row; leave it off unless a trainer's
                convention wants exactly that (docs/contract.md).
            dtype: ``"native"`` (the stored uint8/uint16/int32; refused with :class:`MissingRowsError` when the rows
                asked include a missing one), ``"int16"`` (up to 32768 experts), ``"int32"`` or ``"int64"``.
            missing: the value of every id of a missing row in ``int16``/``int32``/``int64`` (-1 as served; another
                value is set here).
            as_tensor: return a ``torch.Tensor`` (sharing the array's memory) instead of a numpy array.
            return_reasons: return ``(routing, reasons)``, where ``reasons`` counts the missing rows among those served
                by reason (``{"before-admission": 3}``, empty when none; docs/contract.md says what each means).

        Raises:
            ValueError: a malformed argument (nothing is sent).
            ChecksumError: the bytes do not match ``X-R3-Body-CRC32C`` (or, for a whole native fetch, ``X-R3-CRC32C``).
            MissingRowsError: ``dtype="native"`` for rows that include a missing one (the message names the count).
            BadRequest, Unauthorized, RequestNotFound, RequestDeleted, ReplayError: the server's answer, naming the
                request and carrying the server's reason.
            NotAnR3Server, ServerUnreachable, ReplayTimeout: the URL is not an r3 server, nobody listens there, or it
                did not answer within ``timeout_s``.
        """
        what = _describe(request)
        if isinstance(request, RequestInfo):
            path = f"/requests/index/{request.index}.npy"
        elif isinstance(request, str):
            if not request:
                raise ValueError("request id is empty")
            path = f"/requests/by-id/{urllib.parse.quote(request, safe='')}.npy"
        elif isinstance(request, (int, np.integer)) and not isinstance(request, bool) and request >= 0:
            path = f"/requests/{int(request)}.npy"
        else:
            raise ValueError(f"request={request!r}: want an ordinal (int >= 0), a request id (str) or a RequestInfo")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
            raise ValueError(f"start={start!r}: want a token position, a whole number 0 or more")
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: want one of {', '.join(DTYPES)}")
        if isinstance(missing, bool) or not isinstance(missing, (int, np.integer)):
            raise ValueError(f"missing={missing!r}: want an int")
        if dtype == "native" and missing != -1:
            raise ValueError(f"missing={missing!r} needs dtype='int16', 'int32' or 'int64' (the native dtype has no value for a "
                             "missing row)")
        if dtype == "int16" and not -(1 << 15) <= missing < (1 << 15):
            raise ValueError(f"missing={missing!r} does not fit dtype='int16'")
        span = _layers_query(layers)
        params = []
        if start:
            params.append(("start", str(int(start))))
        if span is not None:
            params.append(("layers", f"{span[0]}:{span[1]}"))
        if drop_last:
            params.append(("drop_last", "true"))
        if dtype != "native":
            params.append(("dtype", dtype))
        query = "?" + urllib.parse.urlencode(params) if params else ""
        res, body = self._get(path + query, what)
        if not any(name.lower().startswith("x-r3-") for name in res.headers):
            content_type = res.getheader("content-type", "")
            raise self._not_r3(what, res.status, f"the answer ({content_type or 'no content-type'}) has no X-R3- headers: "
                                                 f"{_body_line(bytes(body[:4096]), content_type)}")
        array = self._checked_array(what, res, body, whole=not params)
        rows = int(res.getheader("x-r3-seq-len", "-1"))
        if rows >= 0:
            want = max(rows - 1, 0) if drop_last else rows
            if array.shape[0] != want - start or (span is not None and array.shape[1] != span[1] - span[0]):
                raise ReplayError(what, res.status, f"the server sent shape {array.shape} for seq_len {rows} with start={start}, "
                                                    f"layers={span}, drop_last={drop_last}")
        if dtype != "native" and missing != -1:
            array[array == -1] = missing
        result: Any = array
        if as_tensor:
            try:
                import torch
            except ImportError as e:
                raise ImportError("as_tensor=True needs torch; install it, or take the numpy array (as_tensor=False)") from e
            result = torch.from_numpy(array)
        if return_reasons:
            return result, _reasons(res.getheader("x-r3-missing-reasons", ""))
        return result

    @staticmethod
    def _checked_array(what: str, res: http.client.HTTPResponse, body: bytearray, whole: bool) -> np.ndarray:
        sent = res.getheader("x-r3-body-crc32c")
        if sent is None:
            raise ChecksumError(what, res.status, "the answer has no X-R3-Body-CRC32C header: cannot check it (a server older "
                                                  "than this client, or a proxy that drops headers)")
        # where the array starts, from the .npy preamble alone (magic, version, header length), so the checksum is
        # checked before numpy parses a header that may be damaged
        view = memoryview(body)
        if len(body) >= 10 and bytes(view[:6]) == b"\x93NUMPY" and body[6] in (1, 2, 3):
            offset = 10 + int.from_bytes(view[8:10], "little") if body[6] == 1 else 12 + int.from_bytes(view[8:12], "little")
            offset = min(offset, len(body))
        else:
            offset = 0
        data_crc = crc32c(view[offset:])
        body_crc = crc32c_combine(crc32c(view[:offset]), data_crc, len(body) - offset)
        if body_crc != int(sent, 16):
            raise ChecksumError(what, res.status, f"body CRC32C {body_crc:08x}, the server sent X-R3-Body-CRC32C {sent}: "
                                                  "the bytes changed on the way")
        if offset == 0:
            raise ReplayError(what, res.status, "the answer is not a .npy file")
        stream = io.BytesIO(bytes(view[:offset]))
        try:
            version = np.lib.format.read_magic(stream)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, descr = reader(stream)
        except Exception as e:  # numpy raises ValueError, SyntaxError and others for a header it cannot read
            raise ReplayError(what, res.status, f"not a .npy answer: {e}") from e
        stored = res.getheader("x-r3-crc32c")
        if whole and stored is not None and data_crc != int(stored, 16):
            raise ChecksumError(what, res.status, f"rows CRC32C {data_crc:08x}, the writer stored X-R3-CRC32C {stored}")
        if fortran or len(shape) != 3:
            raise ReplayError(what, res.status, f"unexpected array: shape {shape}, fortran_order {fortran}")
        return np.frombuffer(body, dtype=descr, offset=offset).reshape(shape)
