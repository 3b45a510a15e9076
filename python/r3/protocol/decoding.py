"""From bytes to messages: :func:`decode` turns one frame body into a message, :class:`FrameReader` cuts a byte stream
into frame bodies; both raise :class:`ProtocolError` for what does not follow the protocol."""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Any

from r3.protocol.messages import (
    Aborted,
    Admitted,
    BufferHandles,
    Consumed,
    Failed,
    Farewell,
    Finished,
    Goodbye,
    Hello,
    Message,
    RequestError,
    RoundCleared,
    SlotsMoved,
    Step,
    Welcome,
)
from r3.protocol.wire import (
    _BUFFER_RANGE,
    _LEN,
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
    ProtocolError,
)


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
