"""Frames of the engine bridge protocol, version 3 (docs/engine-bridge.md), both directions.

Every frame is ``u32 body_length`` then the body: ``u8 type`` and the payload, all integers little-endian. A string is
``u16 byte_length`` + UTF-8 bytes, a blob ``u16 length`` + bytes; a body is at most 16 MiB. Standard library only.

The encoders return whole frames (length prefix included) as ``bytes``; :func:`decode` turns one frame body into a
message object; :class:`FrameReader` cuts a byte stream into frame bodies. Encoders raise :class:`ValueError` naming the
field for a value the wire cannot carry; :func:`decode` raises :class:`ProtocolError` for a malformed body.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

VERSION = 3
MAX_BODY = 16 * 1024 * 1024

BACKEND_HOST = 0
BACKEND_CUDA = 1

# engine to sidecar
HELLO = 1
STEP = 2
ADMITTED = 3
FINISHED = 4
ABORTED = 5
SLOTS_MOVED = 6
ROUND_CLEARED = 7
GOODBYE = 8
STEP_SLOTS = 9  # version 2: a STEP that carries its slot mapping
ADMITTED_CACHED = 10  # version 3: an ADMITTED with the prefix-cache hit (cached_tokens)
# sidecar to engine
WELCOME = 101
CONSUMED = 102
FAILED = 103
FAREWELL = 104
REQUEST_ERROR = 105  # version 3: one request's fault; the session goes on

REQUEST_ERROR_CODES = {1: "not-live", 2: "step-fault"}

FAILURE_CODES = {1: "protocol", 2: "hello", 3: "pipeline", 4: "busy"}

_LEN = struct.Struct("<I")
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")
_STEP = struct.Struct("<BQHI")
_CONSUMED = struct.Struct("<BQH")
_FAREWELL = struct.Struct("<BQQQ")
_HELLO_HEAD = struct.Struct("<BHBiHHIBBIH")
_BUFFER_RANGE = struct.Struct("<QQ")

_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


class ProtocolError(ValueError):
    """A frame that does not follow the protocol (bad length, unknown type, truncated payload)."""


# ---------------------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class BufferHandles:
    """Where one of the N buffers lives: memory handles, byte offsets and sizes of its routing and slots, and its ready event."""

    routing_handle: bytes
    routing_offset: int
    routing_bytes: int
    slots_handle: bytes
    slots_offset: int
    slots_bytes: int
    ready_event_handle: bytes


@dataclass(frozen=True)
class Hello:
    version: int
    backend: int
    device: int
    layers: int
    top_k: int
    num_experts: int
    id_bytes: int
    slot_bytes: int
    max_tokens: int
    engine_name: str
    buffers: tuple[BufferHandles, ...]


@dataclass(frozen=True)
class Step:
    """STEP, or STEP_SLOTS when ``slots`` holds the slot mapping's bytes (``tokens`` x HELLO's ``slot_bytes``)."""
    step_id: int
    buffer: int
    tokens: int
    slots: bytes | None = None


@dataclass(frozen=True)
class Admitted:
    request_id: str
    cached_tokens: int = 0


@dataclass(frozen=True)
class Finished:
    request_id: str
    slots: tuple[int, ...]


@dataclass(frozen=True)
class Aborted:
    request_id: str


@dataclass(frozen=True)
class SlotsMoved:
    source: tuple[int, ...]
    destination: tuple[int, ...]


@dataclass(frozen=True)
class RoundCleared:
    round: int


@dataclass(frozen=True)
class Goodbye:
    pass


@dataclass(frozen=True)
class Welcome:
    version: int
    backend: int
    consumed_event_handles: tuple[bytes, ...]
    store: str


@dataclass(frozen=True)
class Consumed:
    step_id: int
    buffer: int


@dataclass(frozen=True)
class Failed:
    code: int
    message: str

    def describe(self) -> str:
        """``FAILED code 3 (pipeline): <message>``."""
        return f"FAILED code {self.code} ({FAILURE_CODES.get(self.code, 'unknown')}): {self.message}"


@dataclass(frozen=True)
class RequestError:
    """One request's fault (version 3), and the session goes on.

    Code 1 (``not-live``): the FINISHED or ABORTED of ``request_id`` was refused and had no effect. Code 2
    (``step-fault``, ``request_id`` empty): a step held expert ids or slot mapping entries out of range; the message
    names the step and the first token of each kind. Those tokens' rows were dropped; abort the request a bad slot
    entry belonged to (its position keeps whatever the slot held, docs/contract.md).
    """

    code: int
    request_id: str
    message: str

    def describe(self) -> str:
        """``request <id>: <message> (code 1, not-live)``, or ``<message> (code 2, step-fault)``."""
        who = f"request {self.request_id}: " if self.request_id else ""
        return f"{who}{self.message} (code {self.code}, {REQUEST_ERROR_CODES.get(self.code, 'unknown')})"


@dataclass(frozen=True)
class Farewell:
    """The sidecar's answer to GOODBYE, sent once everything before it is stored: its counts for the connection."""

    steps: int
    tokens: int
    requests_finished: int


Message = (Hello | Step | Admitted | Finished | Aborted | SlotsMoved | RoundCleared | Goodbye | Welcome | Consumed | Failed
           | Farewell | RequestError)

# ---------------------------------------------------------------------------------------------------------- encoding


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


# ---------------------------------------------------------------------------------------------------------- decoding


class _Cursor:
    __slots__ = ("body", "pos", "what")

    def __init__(self, body: bytes | memoryview, what: str) -> None:
        self.body = memoryview(body)
        self.pos = 1
        self.what = what

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.body):
            raise ProtocolError(f"{self.what} frame truncated: wanted {n} more bytes at offset {self.pos}, "
                                f"the body has {len(self.body)}")
        view = self.body[self.pos:self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: struct.Struct) -> tuple[Any, ...]:
        return fmt.unpack(self.take(fmt.size))

    def u16(self) -> int:
        return int(self.unpack(_U16)[0])

    def u32(self) -> int:
        return int(self.unpack(_LEN)[0])

    def u64(self) -> int:
        return int(self.unpack(_U64)[0])

    def blob(self) -> bytes:
        return bytes(self.take(self.u16()))

    def string(self) -> str:
        try:
            return str(self.take(self.u16()), "utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"{self.what} frame: a string is not UTF-8 ({e})") from None

    def i32s(self, n: int) -> tuple[int, ...]:
        values = array("i")
        values.frombytes(self.take(4 * n))
        if sys.byteorder != "little":
            values.byteswap()
        return tuple(values)

    def done(self) -> None:
        if self.pos != len(self.body):
            raise ProtocolError(f"{self.what} frame has {len(self.body) - self.pos} bytes after its payload")


_NAMES = {HELLO: "HELLO", STEP: "STEP", STEP_SLOTS: "STEP_SLOTS", ADMITTED: "ADMITTED", ADMITTED_CACHED: "ADMITTED_CACHED",
          FINISHED: "FINISHED", ABORTED: "ABORTED", SLOTS_MOVED: "SLOTS_MOVED", ROUND_CLEARED: "ROUND_CLEARED",
          GOODBYE: "GOODBYE", WELCOME: "WELCOME", CONSUMED: "CONSUMED", FAILED: "FAILED", FAREWELL: "FAREWELL",
          REQUEST_ERROR: "REQUEST_ERROR"}


def decode(body: bytes | memoryview) -> Message:
    """One frame body (type byte and payload, without the length) as a message; :class:`ProtocolError` if malformed."""
    if len(body) == 0:
        raise ProtocolError("empty frame body (no type byte)")
    kind = body[0]
    if kind not in _NAMES:
        raise ProtocolError(f"unknown frame type {kind}")
    c = _Cursor(body, _NAMES[kind])
    msg: Message
    if kind == HELLO:
        (version, backend, device, layers, top_k, num_experts, id_bytes, slot_bytes, max_tokens,
         n) = c.unpack(struct.Struct("<HBiHHIBBIH"))
        name = c.string()
        buffers = []
        for _ in range(n):
            rh = c.blob()
            ro, rb = c.unpack(_BUFFER_RANGE)
            sh = c.blob()
            so, sb = c.unpack(_BUFFER_RANGE)
            buffers.append(BufferHandles(rh, ro, rb, sh, so, sb, c.blob()))
        msg = Hello(version, backend, device, layers, top_k, num_experts, id_bytes, slot_bytes, max_tokens, name,
                    tuple(buffers))
    elif kind == STEP:
        step_id, buffer, tokens = c.unpack(struct.Struct("<QHI"))
        msg = Step(step_id, buffer, tokens)
    elif kind == STEP_SLOTS:
        step_id, buffer, tokens = c.unpack(struct.Struct("<QHI"))
        msg = Step(step_id, buffer, tokens, bytes(c.take(len(c.body) - c.pos)))
    elif kind == ADMITTED:
        msg = Admitted(c.string())
    elif kind == ADMITTED_CACHED:
        rid = c.string()
        msg = Admitted(rid, c.u32())
    elif kind == FINISHED:
        rid = c.string()
        msg = Finished(rid, c.i32s(c.u32()))
    elif kind == ABORTED:
        msg = Aborted(c.string())
    elif kind == SLOTS_MOVED:
        n = c.u32()
        msg = SlotsMoved(c.i32s(n), c.i32s(n))
    elif kind == ROUND_CLEARED:
        msg = RoundCleared(c.u64())
    elif kind == GOODBYE:
        msg = Goodbye()
    elif kind == WELCOME:
        version, backend, n = c.unpack(struct.Struct("<HBH"))
        handles = tuple(c.blob() for _ in range(n))
        msg = Welcome(version, backend, handles, c.string())
    elif kind == CONSUMED:
        step_id, buffer = c.unpack(struct.Struct("<QH"))
        msg = Consumed(step_id, buffer)
    elif kind == FAILED:
        code = c.u16()
        msg = Failed(code, c.string())
    elif kind == REQUEST_ERROR:
        code = c.u16()
        rid = c.string()
        msg = RequestError(code, rid, c.string())
    else:
        msg = Farewell(*c.unpack(struct.Struct("<QQQ")))
    c.done()
    return msg


class FrameReader:
    """Cuts a byte stream into frame bodies. Feed it what ``recv`` returned; it keeps a partial frame for the next feed.

    :meth:`feed` raises :class:`ProtocolError` for a length prefix over 16 MiB (the stream is then unusable).
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Adds ``data`` and returns every complete frame body now available, in order."""
        self._buf += data
        bodies = []
        pos = 0
        while len(self._buf) - pos >= 4:
            (n,) = _LEN.unpack_from(self._buf, pos)
            if n > MAX_BODY:
                del self._buf[:pos]
                raise ProtocolError(f"frame length {n} is over the {MAX_BODY}-byte limit")
            if len(self._buf) - pos - 4 < n:
                break
            bodies.append(bytes(self._buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        del self._buf[:pos]
        return bodies

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)
