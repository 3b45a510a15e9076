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

from r3.trainer.checksum import _FAST as _FAST
from r3.trainer.checksum import _POLY as _POLY
from r3.trainer.checksum import _POWERS as _POWERS
from r3.trainer.checksum import _TABLE as _TABLE
from r3.trainer.checksum import _TABLE_LIST as _TABLE_LIST
from r3.trainer.checksum import _apply as _apply
from r3.trainer.checksum import _apply_vec as _apply_vec
from r3.trainer.checksum import _compose as _compose
from r3.trainer.checksum import _crc32c_numpy as _crc32c_numpy
from r3.trainer.checksum import _native_crc32c as _native_crc32c
from r3.trainer.checksum import _raw as _raw
from r3.trainer.checksum import _table as _table
from r3.trainer.checksum import _zeros_op as _zeros_op
from r3.trainer.checksum import crc32c, crc32c_combine
from r3.trainer.client import DTYPES as DTYPES
from r3.trainer.client import TOKEN_ENV as TOKEN_ENV
from r3.trainer.client import ReplayClient
from r3.trainer.errors import _BODY_CHARS as _BODY_CHARS
from r3.trainer.errors import _BY_STATUS as _BY_STATUS
from r3.trainer.errors import _TITLE as _TITLE
from r3.trainer.errors import (
    BadRequest,
    ChecksumError,
    MissingRowsError,
    NotAnR3Server,
    ReplayError,
    ReplayTimeout,
    RequestDeleted,
    RequestNotFound,
    ServerBusy,
    ServerUnreachable,
    Unauthorized,
)
from r3.trainer.errors import _body_line as _body_line
from r3.trainer.errors import _is_html as _is_html
from r3.trainer.records import Manifest, RequestInfo
from r3.trainer.records import RequestRef as RequestRef
from r3.trainer.records import _describe as _describe
from r3.trainer.records import _layers_query as _layers_query
from r3.trainer.records import _reasons as _reasons

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
