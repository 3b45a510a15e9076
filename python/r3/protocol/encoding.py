"""The encoders: each returns one whole frame (length prefix included) as ``bytes``, or raises :class:`ValueError`
naming the field for a value the wire cannot carry."""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence

from r3.protocol.messages import Hello, Welcome
from r3.protocol.wire import (
    _BUFFER_RANGE,
    _CONSUMED,
    _FAREWELL,
    _HELLO_HEAD,
    _I32_MAX,
    _I32_MIN,
    _LEN,
    _STEP,
    _U16,
    _U64,
    ABORTED,
    ADMITTED,
    ADMITTED_CACHED,
    CONSUMED,
    FAILED,
    FAREWELL,
    FINISHED,
    GOODBYE,
    HELLO,
    MAX_BODY,
    REQUEST_ERROR,
    ROUND_CLEARED,
    SLOTS_MOVED,
    STEP,
    STEP_SLOTS,
    WELCOME,
)


def _frame(body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise ValueError(f"a frame body is at most {MAX_BODY} bytes, this one has {len(body)}")
    return _LEN.pack(len(body)) + body


def _string(value: str, name: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {type(value).__name__}")
    raw = value.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"{name} has {len(raw)} UTF-8 bytes, at most 65535 fit")
    return _U16.pack(len(raw)) + raw


def _blob(value: bytes, name: str) -> bytes:
    raw = bytes(value)
    if len(raw) > 0xFFFF:
        raise ValueError(f"{name} has {len(raw)} bytes, at most 65535 fit")
    return _U16.pack(len(raw)) + raw


def _unsigned(value: int, bits: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(value.__index__())  # numpy and torch integer scalars
        except AttributeError:
            raise ValueError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must be in [0, 2**{bits}), got {value}")
    return value


def int32_array(values: Iterable[int], name: str) -> array[int]:
    """``values`` as a little-endian-ready ``array('i')``; ``ValueError`` naming ``name`` for a value outside int32."""
    if isinstance(values, array) and values.typecode == "i":
        return values
    if hasattr(values, "tolist"):  # numpy arrays, torch tensors
        values = values.tolist()
    try:
        return array("i", values)
    except OverflowError:
        bad = next(v for v in values if not _I32_MIN <= int(v) <= _I32_MAX)
        raise ValueError(f"{name} holds {bad}, outside int32") from None
    except TypeError as e:
        raise ValueError(f"{name} must be a sequence of integers: {e}") from None


def _i32s(values: array[int]) -> bytes:
    if sys.byteorder != "little":
        values = array("i", values)
        values.byteswap()
    return values.tobytes()


def encode_hello(hello: Hello) -> bytes:
    """The HELLO frame; ``ValueError`` naming the field that does not fit."""
    n = len(hello.buffers)
    if not 1 <= n <= 64:
        raise ValueError(f"buffers must be 1..64, got {n}")
    parts = [_HELLO_HEAD.pack(
        HELLO,
        _unsigned(hello.version, 16, "version"),
        _unsigned(hello.backend, 8, "backend"),
        hello.device,
        _unsigned(hello.layers, 16, "layers"),
        _unsigned(hello.top_k, 16, "top_k"),
        _unsigned(hello.num_experts, 32, "num_experts"),
        _unsigned(hello.id_bytes, 8, "id_bytes"),
        _unsigned(hello.slot_bytes, 8, "slot_bytes"),
        _unsigned(hello.max_tokens, 32, "max_tokens"),
        n), _string(hello.engine_name, "engine_name")]
    for i, b in enumerate(hello.buffers):
        parts += [
            _blob(b.routing_handle, f"buffer {i} routing handle"),
            _BUFFER_RANGE.pack(_unsigned(b.routing_offset, 64, "routing offset"),
                               _unsigned(b.routing_bytes, 64, "routing bytes")),
            _blob(b.slots_handle, f"buffer {i} slots handle"),
            _BUFFER_RANGE.pack(_unsigned(b.slots_offset, 64, "slots offset"), _unsigned(b.slots_bytes, 64, "slots bytes")),
            _blob(b.ready_event_handle, f"buffer {i} ready event handle"),
        ]
    return _frame(b"".join(parts))


def encode_step(step_id: int, buffer: int, tokens: int) -> bytes:
    """The STEP frame (a 15-byte body after the length)."""
    return _frame(_STEP.pack(STEP, _unsigned(step_id, 64, "step_id"), _unsigned(buffer, 16, "buffer"),
                             _unsigned(tokens, 32, "tokens")))


def encode_step_slots(step_id: int, buffer: int, tokens: int, slots: bytes | memoryview) -> bytes:
    """The STEP_SLOTS frame (version 2): STEP's 15 bytes, then the step's slot mapping as sent (``tokens`` integers of
    HELLO's ``slot_bytes``, little-endian), which the sidecar uses instead of the engine's slots buffer."""
    head = _STEP.pack(STEP_SLOTS, _unsigned(step_id, 64, "step_id"), _unsigned(buffer, 16, "buffer"),
                      _unsigned(tokens, 32, "tokens"))
    if len(head) + len(slots) > MAX_BODY:
        raise ValueError(f"STEP_SLOTS of {len(slots)} slot bytes exceeds the {MAX_BODY}-byte body limit")
    return _LEN.pack(len(head) + len(slots)) + head + bytes(slots)


def encode_admitted(request_id: str, cached_tokens: int = 0) -> bytes:
    """ADMITTED, or ADMITTED_CACHED (version 3) when ``cached_tokens`` leading positions came from the prefix cache."""
    if cached_tokens == 0:
        return _frame(bytes([ADMITTED]) + _string(request_id, "request_id"))
    return _frame(bytes([ADMITTED_CACHED]) + _string(request_id, "request_id")
                  + struct.pack("<I", _unsigned(cached_tokens, 32, "cached_tokens")))


def encode_finished(request_id: str, slots: Sequence[int] | array[int]) -> bytes:
    """FINISHED with the request's slots in token order; ``ValueError`` for a slot outside int32."""
    values = int32_array(slots, "finished slots")
    return _frame(bytes([FINISHED]) + _string(request_id, "request_id") + _LEN.pack(len(values)) + _i32s(values))


def encode_aborted(request_id: str) -> bytes:
    return _frame(bytes([ABORTED]) + _string(request_id, "request_id"))


def encode_slots_moved(source: Sequence[int] | array[int], destination: Sequence[int] | array[int]) -> bytes:
    """SLOTS_MOVED; ``ValueError`` when the two lists differ in length or hold a value outside int32."""
    src = int32_array(source, "source slots")
    dst = int32_array(destination, "destination slots")
    if len(src) != len(dst):
        raise ValueError(f"source and destination slots differ in length: {len(src)} and {len(dst)}")
    return _frame(bytes([SLOTS_MOVED]) + _LEN.pack(len(src)) + _i32s(src) + _i32s(dst))


def encode_round_cleared(round_id: int) -> bytes:
    return _frame(bytes([ROUND_CLEARED]) + _U64.pack(_unsigned(round_id, 64, "round")))


def encode_goodbye() -> bytes:
    return _frame(bytes([GOODBYE]))


def encode_welcome(welcome: Welcome) -> bytes:
    """WELCOME (the sidecar's side; used by test sidecars)."""
    handles = welcome.consumed_event_handles
    parts = [struct.pack("<BHBH", WELCOME, welcome.version, welcome.backend, len(handles))]
    parts += [_blob(h, "consumed event handle") for h in handles]
    parts.append(_string(welcome.store, "store"))
    return _frame(b"".join(parts))


def encode_consumed(step_id: int, buffer: int) -> bytes:
    return _frame(_CONSUMED.pack(CONSUMED, step_id, buffer))


def encode_failed(code: int, message: str) -> bytes:
    return _frame(struct.pack("<BH", FAILED, code) + _string(message, "message"))


def encode_request_error(code: int, request_id: str, message: str) -> bytes:
    return _frame(bytes([REQUEST_ERROR]) + _U16.pack(_unsigned(code, 16, "code")) + _string(request_id, "request_id")
                  + _string(message, "message"))


def encode_farewell(steps: int, tokens: int, requests_finished: int) -> bytes:
    return _frame(_FAREWELL.pack(FAREWELL, steps, tokens, requests_finished))
