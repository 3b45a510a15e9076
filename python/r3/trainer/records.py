"""What the server describes: the store's :class:`Manifest`, one listed record's :class:`RequestInfo`, and the ways a
fetch names a request (:data:`RequestRef`) and its query (layers, missing-row reasons)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
