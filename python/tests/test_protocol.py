"""Frames of the engine bridge protocol: every message type round-trips, and malformed frames are refused by name."""

from __future__ import annotations

import struct

import pytest

from r3 import protocol
from r3.protocol import (Aborted, Admitted, BufferHandles, Consumed, Failed, Farewell, Finished, FrameReader, Goodbye,
                         Hello, ProtocolError, RoundCleared, SlotsMoved, Step, Welcome)

pytestmark = pytest.mark.timeout(60)


def body(frame: bytes) -> bytes:
    (n,) = struct.unpack_from("<I", frame)
    assert n == len(frame) - 4, "the length prefix counts the body"
    return frame[4:]


def test_every_message_round_trips() -> None:
    buffers = tuple(BufferHandles(bytes(range(64)), 1 << 33, 4096, b"/dev/shm/x", 17, 256, bytes([i]) * 64)
                    for i in range(3))
    hello = Hello(1, protocol.BACKEND_CUDA, 2, 48, 8, 128, 4, 8, 8192, "vllm-\u00e9", buffers)
    welcome = Welcome(1, protocol.BACKEND_CUDA, (b"a" * 64, b"b" * 64, b"c" * 64), "/data/store")
    cases = [
        (protocol.encode_hello(hello), hello),
        (protocol.encode_step(2**64 - 1, 63, 8192), Step(2**64 - 1, 63, 8192)),
        (protocol.encode_step_slots(5, 2, 3, struct.pack("<3q", 7, -1, 2**40)), Step(5, 2, 3, struct.pack("<3q", 7, -1, 2**40))),
        (protocol.encode_step_slots(6, 0, 0, b""), Step(6, 0, 0, b"")),
        (protocol.encode_admitted("req-1"), Admitted("req-1")),
        (protocol.encode_finished("req-1", [0, 5, -1, 2**31 - 1]), Finished("req-1", (0, 5, -1, 2**31 - 1))),
        (protocol.encode_finished("", []), Finished("", ())),
        (protocol.encode_aborted("req-2"), Aborted("req-2")),
        (protocol.encode_slots_moved([1, 2], [3, 4]), SlotsMoved((1, 2), (3, 4))),
        (protocol.encode_round_cleared(7), RoundCleared(7)),
        (protocol.encode_goodbye(), Goodbye()),
        (protocol.encode_welcome(welcome), welcome),
        (protocol.encode_consumed(9, 1), Consumed(9, 1)),
        (protocol.encode_failed(3, "disk full"), Failed(3, "disk full")),
        (protocol.encode_farewell(10, 640, 3), Farewell(10, 640, 3)),
    ]
    for frame, message in cases:
        assert protocol.decode(body(frame)) == message


def test_step_has_a_15_byte_body_in_little_endian() -> None:
    frame = protocol.encode_step(0x0102030405060708, 0x0A0B, 0x11223344)
    assert frame == bytes.fromhex("0f000000" "02" "0807060504030201" "0b0a" "44332211")


def test_hello_layout_matches_the_spec() -> None:
    b = BufferHandles(b"h", 16, 32, b"s", 48, 64, b"")
    frame = protocol.encode_hello(Hello(1, 0, -1, 2, 3, 4, 4, 8, 5, "e", (b,)))
    expected = (struct.pack("<BHBiHHIBBIH", 1, 1, 0, -1, 2, 3, 4, 4, 8, 5, 1) + b"\x01\x00e"
                + b"\x01\x00h" + struct.pack("<QQ", 16, 32) + b"\x01\x00s" + struct.pack("<QQ", 48, 64) + b"\x00\x00")
    assert body(frame) == expected


def test_frame_reader_reassembles_frames_fed_a_byte_at_a_time() -> None:
    stream = protocol.encode_consumed(1, 0) + protocol.encode_failed(3, "x" * 1000) + protocol.encode_farewell(1, 2, 3)
    reader = FrameReader()
    got = []
    for i in range(len(stream)):
        got += [protocol.decode(b) for b in reader.feed(stream[i:i + 1])]
    assert got == [Consumed(1, 0), Failed(3, "x" * 1000), Farewell(1, 2, 3)]
    assert reader.pending == 0


def test_frame_reader_refuses_a_length_over_16_mib() -> None:
    with pytest.raises(ProtocolError, match="over the 16777216-byte limit"):
        FrameReader().feed(struct.pack("<I", 16 * 1024 * 1024 + 1))


@pytest.mark.parametrize("raw, message", [
    (b"", "empty frame body"),
    (b"\x63", "unknown frame type 99"),
    (b"\x66\x01\x00", "CONSUMED frame truncated"),
    (protocol.encode_consumed(1, 2)[4:] + b"\x00", "CONSUMED frame has 1 bytes after its payload"),
    (b"\x67\x03\x00\x02\x00\xff\xfe", "not UTF-8"),
])
def test_malformed_bodies_are_refused_by_name(raw: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        protocol.decode(raw)


@pytest.mark.parametrize("encode, message", [
    (lambda: protocol.encode_step(-1, 0, 0), "step_id must be in"),
    (lambda: protocol.encode_step(0, 1 << 16, 0), "buffer must be in"),
    (lambda: protocol.encode_admitted("x" * 70000), "request_id has 70000 UTF-8 bytes"),
    (lambda: protocol.encode_finished("r", [2**31]), "finished slots holds 2147483648, outside int32"),
    (lambda: protocol.encode_slots_moved([1, 2], [3]), "differ in length: 2 and 1"),
    (lambda: protocol.encode_round_cleared(-1), "round must be in"),
    (lambda: protocol.encode_finished("r", ["a"]), "finished slots must be a sequence of integers"),
])
def test_values_the_wire_cannot_carry_are_refused_by_name(encode, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode()


def test_a_body_over_16_mib_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 16777216 bytes"):
        protocol.encode_finished("r", range(4 * 1024 * 1024))


def test_numpy_slots_encode_like_lists() -> None:
    np = pytest.importorskip("numpy")
    assert protocol.encode_finished("r", np.arange(5, dtype=np.int64)) == protocol.encode_finished("r", range(5))
