"""The session's connection to the sidecar: the HELLO/WELCOME handshake, and reading, sending and losing the sidecar
without ever blocking longer than ``ack_timeout_s``."""

from __future__ import annotations

import collections
import errno
import logging
import math
import select
import socket
import time
from collections.abc import Callable
from typing import Any, ClassVar, cast

from r3 import protocol
from r3.engine.errors import SidecarError
from r3.engine.transport import DeferredTransport, Transport
from r3.protocol import Consumed, Failed, Farewell, ProtocolError, RequestError, Welcome

log = logging.getLogger("r3.engine")


class _SidecarLink:
    """The socket half of :class:`~r3.engine.RoutingCapture`: what the sidecar sent (CONSUMED, FAILED, FAREWELL,
    REQUEST_ERROR), frames out, held-back STEPs of a deferred transport, and the failure policy (raise or detach)."""

    MAX_KEPT_REQUEST_ERRORS: ClassVar[int]
    _sock: socket.socket
    _buffers: Transport
    _n: int
    _on_failure: str
    _ack_timeout_s: float
    _reader: protocol.FrameReader
    _poll: Any
    _poll_send: Any
    _outstanding: list[int | None]
    _unwaited: list[bool]
    _pending: collections.deque[tuple[int, int, bytes]]
    _ready_views: tuple[int, tuple[Any, Any], Any] | None
    _last_consumed: int | None
    _failure: SidecarError | None
    _detached: bool
    _closed: bool
    _farewell: Farewell | None
    _request_errors: collections.deque[RequestError]
    _request_error_count: int
    _on_request_error: Callable[[RequestError], None] | None
    _dropped: int

    def _flush(self, step: int | None, *, block: bool) -> None:
        """Sends the held-back STEPs (transport ``pinned``) whose copy has completed, in order; with ``block``, all of
        them, waiting for each copy (the engine's sampling sync has usually completed them already)."""
        if not self._pending:
            return
        copied = cast(DeferredTransport, self._buffers).copied
        while self._pending and not self._detached:
            held, b, frame = self._pending[0]
            if not copied(b, block):
                return
            self._pending.popleft()
            self._send(frame, held if step is None else step)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the capture is closed")
        if self._failure is not None and not self._detached:
            raise self._error()

    def _error(self) -> SidecarError:
        f = self._failure
        assert f is not None
        return SidecarError(f.cause, last_consumed=f.last_consumed, code=f.code, step=f.step)

    def _lost(self, cause: str, step: int | None, code: int | None = None) -> None:
        """The sidecar is gone: raise (policy raise) or detach once (policy drop). The first cause is kept."""
        if self._failure is None:
            self._failure = SidecarError(cause, last_consumed=self._last_consumed, code=code, step=step)
        if self._on_failure == "raise":
            raise self._error()
        if not self._detached:
            self._detached = True
            self._dropped += len(self._pending)  # held back, never sent
            self._pending.clear()
            self._ready_views = None
            self._outstanding = [None] * self._n
            self._unwaited = [False] * self._n
            log.warning("r3: %s; the capture detached, later steps are dropped and counted", self._failure)
            try:
                self._sock.close()
            except OSError:
                pass

    def _drain(self, step: int | None = None) -> None:
        """Reads and handles everything the sidecar sent so far, without blocking."""
        while not self._detached:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as e:
                self._lost(f"the sidecar's connection failed: {e}", step)
                return
            if not data:
                if self._farewell is None:  # after FAREWELL the sidecar closes: that is the end, not a loss
                    self._lost("the sidecar closed the connection", step)
                return
            try:
                for body in self._reader.feed(data):
                    self._handle(protocol.decode(body), step)
                    if self._detached:
                        return
            except ProtocolError as e:
                self._lost(f"protocol error from the sidecar: {e}", step, code=1)
                return

    def _handle(self, msg: protocol.Message, step: int | None) -> None:
        if isinstance(msg, Consumed):
            b = msg.buffer
            if b >= self._n or self._outstanding[b] != msg.step_id:
                held = "nothing" if b >= self._n or self._outstanding[b] is None else f"step {self._outstanding[b]}"
                raise ProtocolError(f"CONSUMED(step {msg.step_id}, buffer {b}) but that buffer holds {held}")
            self._outstanding[b] = None
            self._unwaited[b] = True
            self._last_consumed = msg.step_id
        elif isinstance(msg, Failed):  # the sidecar closes the connection after it
            self._lost(msg.describe(), step, msg.code)
        elif isinstance(msg, Farewell):
            self._farewell = msg
        elif isinstance(msg, RequestError):
            self._request_error_count += 1
            if len(self._request_errors) < self.MAX_KEPT_REQUEST_ERRORS:
                self._request_errors.append(msg)
            if self._on_request_error is not None:
                try:
                    self._on_request_error(msg)
                except Exception:  # the engine's callback never breaks the step loop
                    log.exception("r3: on_request_error raised for %s", msg.describe())
        else:
            raise ProtocolError(f"unexpected {type(msg).__name__} from the sidecar")

    def _await_consumed(self, b: int, step: int) -> None:
        held = self._outstanding[b]
        deadline = time.monotonic() + self._ack_timeout_s
        while self._outstanding[b] is not None and not self._detached:
            self._wait_readable(deadline, f"CONSUMED of step {held} (buffer {b})", step)

    def _wait_readable(self, deadline: float, awaited: str, step: int | None) -> None:
        """Blocks until the socket has something to read (then handles it) or the deadline passes (the sidecar is lost)."""
        remaining = deadline - time.monotonic()
        if remaining > 0 and self._poll.poll(max(1, math.ceil(remaining * 1000))):
            self._drain(step)
        elif time.monotonic() >= deadline:
            self._lost(f"no {awaited} within ack_timeout_s={self._ack_timeout_s}s", step)

    def _send(self, frame: bytes, step: int | None) -> None:
        """Sends the whole frame; while the socket is full, reads what the sidecar sends (so neither side blocks the
        other) for at most ``ack_timeout_s``."""
        view = memoryview(frame)
        deadline: float | None = None
        while view and not self._detached:
            try:
                sent = self._sock.send(view)
                view = view[sent:]
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:  # EPIPE, ECONNRESET: read what is left, a FAILED says more than the broken pipe
                self._drain(step)
                if not self._detached:
                    self._lost(f"the sidecar closed the connection ({errno.errorcode.get(e.errno or 0, e)})", step)
                return
            if deadline is None:
                deadline = time.monotonic() + self._ack_timeout_s
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._lost(f"the sidecar read nothing for ack_timeout_s={self._ack_timeout_s}s (socket full)", step)
                return
            events = self._poll_send.poll(max(1, math.ceil(remaining * 1000)))
            if any(e & (select.POLLIN | select.POLLHUP | select.POLLERR) for _, e in events):
                self._drain(step)


def _handshake(path: str, hello: bytes, timeout_s: float) -> tuple[socket.socket, Welcome]:
    """Connects (retrying while the socket is absent or refuses), sends HELLO, reads WELCOME; a non-blocking socket."""
    deadline = time.monotonic() + timeout_s
    last: OSError | None = None
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError) as e:
            sock.close()
            last = e
        except OSError as e:
            sock.close()
            raise SidecarError(f"cannot connect to {path}: {e}") from e
        if time.monotonic() + 0.05 >= deadline:
            raise SidecarError(f"no sidecar listening at {path} within connect_timeout_s={timeout_s}s ({last})")
        time.sleep(0.05)
    try:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            sock.sendall(hello)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a sidecar that refuses (busy) may close before reading HELLO: its FAILED is still to be read
        reader = protocol.FrameReader()
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                raise SidecarError(f"the sidecar at {path} closed the connection before WELCOME")
            bodies = reader.feed(data)
            if bodies:
                msg = protocol.decode(bodies[0])
                if isinstance(msg, Failed):
                    raise SidecarError(f"the sidecar refused the HELLO: {msg.describe()}", code=msg.code)
                if not isinstance(msg, Welcome):
                    raise SidecarError(f"the sidecar answered HELLO with {type(msg).__name__}, not WELCOME")
                if len(bodies) > 1 or reader.pending:
                    raise SidecarError("the sidecar sent more than WELCOME before the first step")
                sock.setblocking(False)
                return sock, msg
    except TimeoutError:
        sock.close()
        raise SidecarError(f"no WELCOME from {path} within connect_timeout_s={timeout_s}s") from None
    except ProtocolError as e:
        sock.close()
        raise SidecarError(f"protocol error from the sidecar: {e}", code=1) from e
    except OSError as e:
        sock.close()
        raise SidecarError(f"the connection to {path} failed during the handshake: {e}") from e
    except BaseException:
        sock.close()
        raise
