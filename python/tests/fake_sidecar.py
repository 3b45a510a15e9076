"""A sidecar in a thread, host backend only, for the engine module's tests: the sidecar half of the protocol over a
real Unix socket, reading the engine's buffers from the mapped file as the real one does.

Every socket operation has a timeout, so a test that goes wrong fails instead of hanging.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from r3 import protocol
from r3.protocol import Goodbye, Hello, Step, Welcome

IO_TIMEOUT_S = 20.0


@dataclass
class StepSeen:
    step_id: int
    buffer: int
    routing: np.ndarray  # [tokens, layers, top_k], copied out of the buffer when the STEP arrived
    slots: np.ndarray  # [tokens]


@dataclass
class FakeSidecar:
    """Serves one engine connection. Knobs, all off by default:

    ``delay_s``: sleep before each CONSUMED (a slow sidecar). ``ack``: False never sends CONSUMED.
    ``die_at_step``: on this STEP, close the connection without a word (as a killed process).
    ``fail_at_step``: on this STEP, send FAILED code 3 with ``fail_message`` and close.
    ``refuse_hello``: (code, message) to answer HELLO with FAILED.
    ``before_consume``: called with the step id before its CONSUMED is sent (tests use it to hold acks back).
    ``busy``: answer FAILED code 4 at once and close, without reading HELLO (another engine is connected).
    ``stall_s``: after WELCOME, read nothing for this long (the real sidecar stops reading while its ring is full).
    ``wrong_consumed``: acknowledge each step with the next step's id (a broken sidecar).
    """

    path: str
    delay_s: float = 0.0
    ack: bool = True
    die_at_step: int | None = None
    fail_at_step: int | None = None
    fail_message: str = "expert id 300 out of range (num_experts 64) at token 3, layer 1"
    refuse_hello: tuple[int, str] | None = None
    before_consume: Callable[[int], None] | None = None
    busy: bool = False
    stall_s: float = 0.0
    wrong_consumed: bool = False
    store: str = "/fake/store"

    hello: Hello | None = None
    steps: list[StepSeen] = field(default_factory=list)
    messages: list[protocol.Message] = field(default_factory=list)
    consumed_at: dict[int, float] = field(default_factory=dict)
    got_goodbye: bool = False
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._listener.settimeout(IO_TIMEOUT_S)
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="fake-sidecar", daemon=True)
        self._thread.start()

    # -- the test's side -----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Closes both sockets and joins the thread (bounded); raises what the thread raised, if anything."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() still waiting (close alone does not)
        except OSError:
            pass
        self._listener.close()
        if self._conn is not None:
            try:
                self._conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(IO_TIMEOUT_S)
        assert not self._thread.is_alive(), "the fake sidecar did not stop"
        if self.error is not None:
            raise self.error

    def join(self) -> None:
        self._thread.join(IO_TIMEOUT_S)
        assert not self._thread.is_alive(), "the fake sidecar did not finish"

    def lifecycle(self) -> list[protocol.Message]:
        """The messages other than HELLO and STEP, in arrival order."""
        return [m for m in self.messages if not isinstance(m, (Hello, Step))]

    # -- the sidecar's side --------------------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # stopped before an engine came
            self._conn = conn
            conn.settimeout(IO_TIMEOUT_S)
            with conn:
                self._session(conn)
        except BaseException as e:  # reported by stop()
            self.error = e

    def _session(self, conn: socket.socket) -> None:
        if self.busy:
            conn.sendall(protocol.encode_failed(4, "another engine is connected"))
            return
        reader = protocol.FrameReader()
        frames = self._frames(conn, reader)
        hello = protocol.decode(next(frames))
        assert isinstance(hello, Hello), hello
        self.hello = hello
        self.messages.append(hello)
        if self.refuse_hello is not None:
            conn.sendall(protocol.encode_failed(*self.refuse_hello))
            return
        np_id = np.dtype(f"<i{hello.id_bytes}")
        np_slot = np.dtype(f"<i{hello.slot_bytes}")
        routing, slots = [], []
        for b in hello.buffers:
            routing.append(np.memmap(b.routing_handle.decode(), dtype=np_id, mode="r", offset=b.routing_offset,
                                     shape=(hello.max_tokens, hello.layers, hello.top_k)))
            assert b.routing_bytes == hello.max_tokens * hello.layers * hello.top_k * hello.id_bytes
            slots.append(np.memmap(b.slots_handle.decode(), dtype=np_slot, mode="r", offset=b.slots_offset,
                                   shape=(hello.max_tokens,)))
            assert b.slots_bytes == hello.max_tokens * hello.slot_bytes
            assert b.ready_event_handle == b""
        conn.sendall(protocol.encode_welcome(Welcome(protocol.VERSION, protocol.BACKEND_HOST,
                                                     tuple(b"" for _ in hello.buffers), self.store)))
        time.sleep(self.stall_s)
        tokens = 0
        for body in frames:
            msg = protocol.decode(body)
            self.messages.append(msg)
            if isinstance(msg, Step):
                if msg.step_id == self.die_at_step:
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                if msg.step_id == self.fail_at_step:
                    conn.sendall(protocol.encode_failed(3, self.fail_message))
                    return
                seen_slots = (np.array(slots[msg.buffer][:msg.tokens]) if msg.slots is None  # STEP_SLOTS: in the message
                              else np.frombuffer(msg.slots, dtype=slots[msg.buffer].dtype).copy())
                self.steps.append(StepSeen(msg.step_id, msg.buffer, np.array(routing[msg.buffer][:msg.tokens]), seen_slots))
                tokens += msg.tokens
                if not self.ack:
                    continue
                if self.delay_s:
                    time.sleep(self.delay_s)
                if self.before_consume is not None:
                    self.before_consume(msg.step_id)
                self.consumed_at[msg.step_id] = time.monotonic()
                conn.sendall(protocol.encode_consumed(msg.step_id + self.wrong_consumed, msg.buffer))
            elif isinstance(msg, Goodbye):
                self.got_goodbye = True
                finished = sum(isinstance(m, protocol.Finished) for m in self.messages)
                conn.sendall(protocol.encode_farewell(len(self.steps), tokens, finished))
                return

    @staticmethod
    def _frames(conn: socket.socket, reader: protocol.FrameReader):
        while True:
            try:
                data = conn.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            yield from reader.feed(data)
