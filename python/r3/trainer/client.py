"""The :class:`ReplayClient`: one ``r3 serve`` server over HTTP, every answer checked (see :mod:`r3.trainer`)."""

from __future__ import annotations

import http.client
import io
import json
import os
import urllib.parse
from collections.abc import Iterator
from typing import Any

import numpy as np

from r3.trainer.checksum import crc32c, crc32c_combine
from r3.trainer.errors import (
    _BY_STATUS,
    ChecksumError,
    NotAnR3Server,
    ReplayError,
    ReplayTimeout,
    ServerUnreachable,
    _body_line,
    _is_html,
)
from r3.trainer.records import Manifest, RequestInfo, RequestRef, _describe, _layers_query, _reasons

TOKEN_ENV = "R3_TOKEN"
DTYPES = ("native", "int16", "int32", "int64")


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
