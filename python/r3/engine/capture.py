"""The session: :class:`RoutingCapture`, an engine's connection to an ``r3 sidecar`` over one of the transports."""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any, Literal

from r3 import protocol
from r3.engine.checks import _check_range, _check_slot_mapping, _check_step_tensors
from r3.engine.cuda_ipc import _CudaBuffers
from r3.engine.errors import SidecarError
from r3.engine.host import _HostBuffers
from r3.engine.lifecycle import _Lifecycle
from r3.engine.link import _handshake
from r3.engine.pinned import _PinnedHostBuffers
from r3.engine.stats import CaptureStats, _Histogram
from r3.engine.transport import Transport, _resolve_device
from r3.protocol import Farewell, Hello, ProtocolError, RequestError, Welcome

__all__ = ["RoutingCapture"]

log = logging.getLogger("r3.engine")


class RoutingCapture(_Lifecycle):
    """An engine's connection to an ``r3 sidecar``: N shared routing buffers and the handshake over a Unix socket.

    Make one with :meth:`connect`. Per step, either :meth:`capture` (the whole ``[tokens, layers, top_k]`` tensor)
    or :meth:`begin_step` / :meth:`end_step` (hooks write the shared buffer directly). Lifecycle calls
    (:meth:`admitted`, :meth:`finished`, :meth:`aborted`, :meth:`slots_moved`, :meth:`round_cleared`) travel in the
    same ordered stream as the steps. :meth:`close` (or leaving a ``with`` block) says GOODBYE and waits until
    everything is stored.

    Failure policy ``raise``: once the sidecar is lost (FAILED, connection closed, no answer within
    ``ack_timeout_s``), every later call raises :class:`SidecarError`. Policy ``drop``: the capture detaches once
    (one warning logged), never waits again, and counts each later step in ``stats.dropped_steps``; ``begin_step``
    still returns writable buffers so hooks keep working. Only :meth:`begin_step` (a buffer not yet consumed) and
    :meth:`close` (FAREWELL) wait for the sidecar's answer; every call reads what the sidecar sent without blocking.

    One request's fault never ends the session: a FINISHED or ABORTED of an id that is not live (never admitted, or
    already finished or aborted) is answered with a :class:`~r3.protocol.RequestError` that the next call picks up,
    without raising in the step loop. Collect them with :meth:`request_errors` (or pass ``on_request_error`` to
    :meth:`connect`): such a request has no record, so log it and fix the integration (admit every request before its
    first step, finish it once; admit it again to record a retry). A step with expert ids or slot mapping entries out
    of range is answered the same way (code 2, ``step-fault``, naming the step and the first bad token): abort the
    request whose token had the bad slot, since the row went nowhere and its position keeps what the slot held. Rows the
    store cannot vouch for (invalid or duplicate ids, slots never written, rows of an earlier round or from before the
    admission past its cached prefix) are stored as missing rows with a reason (docs/contract.md), not reported here.
    """

    #: REQUEST_ERRORs kept for :meth:`request_errors` at most; later ones are counted in ``stats`` and dropped.
    MAX_KEPT_REQUEST_ERRORS = 10_000

    def __init__(self, sock: socket.socket, buffers: Transport, welcome: Welcome, *,
                 layers: int, top_k: int, max_tokens: int, on_failure: str, ack_timeout_s: float,
                 on_request_error: Callable[[RequestError], None] | None = None) -> None:
        """Use :meth:`connect`."""
        self._sock = sock
        self._buffers = buffers
        self._n = len(buffers.handles())
        self._layers = layers
        self._top_k = top_k
        self._max_tokens = max_tokens
        self._on_failure = on_failure
        self._ack_timeout_s = ack_timeout_s
        self._reader = protocol.FrameReader()
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._poll_send = select.poll()
        self._poll_send.register(sock, select.POLLIN | select.POLLOUT)
        self._outstanding: list[int | None] = [None] * self._n
        self._unwaited = [False] * self._n
        self._waited_on: list[Any] = [None] * self._n  # the stream that waited on buffer b's consumed event
        self._pending: collections.deque[tuple[int, int, bytes]] = collections.deque()  # (step, buffer, STEP frame)
        # (buffer, its views, the stream key they were readied for): what end_step prepared for the next begin_step
        self._ready_views: tuple[int, tuple[Any, Any], Any] | None = None
        self._sequence = 0
        self._next_step_id = 0
        self._open: int | None = None
        self._last_consumed: int | None = None
        self._failure: SidecarError | None = None
        self._detached = False
        self._closed = False
        self._farewell: Farewell | None = None
        self._request_errors: collections.deque[RequestError] = collections.deque()
        self._request_error_count = 0
        self._on_request_error = on_request_error
        self._steps = 0
        self._dropped = 0
        self._waits = 0
        self._wait = _Histogram()
        self._call = _Histogram()
        self.store: str = welcome.store
        """The store folder the sidecar writes to (from WELCOME)."""

    # -- connect ---------------------------------------------------------------------------------------------------

    @classmethod
    def connect(cls, socket_path: str | os.PathLike[str], *, layers: int, top_k: int, num_experts: int,
                max_tokens: int, device: Any = "cuda:0", buffers: int = 4, id_dtype: Any = None,
                slot_dtype: Any = None, on_failure: Literal["raise", "drop"] = "raise", ack_timeout_s: float = 60.0,
                connect_timeout_s: float = 30.0, engine_name: str = "r3-python",
                transport: Literal["ipc", "pinned"] = "ipc",
                on_request_error: Callable[[RequestError], None] | None = None) -> RoutingCapture:
        """Allocates the N shared buffers, connects to the sidecar and does the HELLO/WELCOME handshake.

        ``device`` is ``"host"`` (mapped files, numpy, no GPU), a CUDA device string or a ``torch.device``.
        ``id_dtype`` / ``slot_dtype``: int32 or int64 (torch dtypes on CUDA; numpy dtypes or ``"int32"``/``"int64"`` on
        the host), defaults int32 and int64. ``transport`` (CUDA only): ``"ipc"`` shares the N buffers as CUDA IPC
        memory that the sidecar reads on the GPU (``r3 sidecar --backend cuda``); ``"pinned"`` keeps one device buffer
        in the engine and copies each step into the sidecar's host memory on the engine's stream, so the sidecar needs
        no GPU at all (``--backend host``) and STEP is sent once that copy is done (see docs/engine-bridge.md for
        which is cheaper where). Blocks until WELCOME: retries the connection while the socket is absent
        or refuses (the sidecar may still be starting), at most ``connect_timeout_s`` in all. ``on_request_error`` is
        called (on the engine's thread, inside whichever capture call read it) with each REQUEST_ERROR; an exception it
        raises is logged, never propagated.

        Raises ``ValueError`` for a bad argument, and :class:`SidecarError` (whatever ``on_failure`` says: capture never
        started) when the sidecar cannot be reached in time or refuses the HELLO (with its FAILED message).
        """
        _check_range("layers", layers, 1, 0xFFFF)
        _check_range("top_k", top_k, 1, 0xFFFF)
        _check_range("num_experts", num_experts, 1, 0xFFFFFFFF)
        _check_range("max_tokens", max_tokens, 1, 0xFFFFFFFF)
        _check_range("buffers", buffers, 1, 64)
        if on_failure not in ("raise", "drop"):
            raise ValueError(f'on_failure must be "raise" or "drop", got {on_failure!r}')
        if not ack_timeout_s > 0 or not connect_timeout_s > 0:
            raise ValueError(f"timeouts must be positive, got ack_timeout_s={ack_timeout_s}, "
                             f"connect_timeout_s={connect_timeout_s}")
        if transport not in ("ipc", "pinned"):
            raise ValueError(f'transport must be "ipc" or "pinned", got {transport!r}')
        torch, dev = _resolve_device(device)
        backend: Transport
        if torch is None:
            if transport != "ipc":
                raise ValueError(f'transport="{transport}" is for a CUDA device; device="host" already shares host memory')
            backend = _HostBuffers(buffers, max_tokens, layers, top_k, id_dtype, slot_dtype)
        elif transport == "pinned":
            backend = _PinnedHostBuffers(torch, dev, buffers, max_tokens, layers, top_k, id_dtype, slot_dtype)
        else:
            backend = _CudaBuffers(torch, dev, buffers, max_tokens, layers, top_k, id_dtype, slot_dtype)
        id_bytes = backend.routing_bytes // (max_tokens * layers * top_k)
        hello = Hello(protocol.VERSION, backend.backend, backend.ordinal, layers, top_k, num_experts, id_bytes,
                      backend.slots_bytes // max_tokens, max_tokens, engine_name, tuple(backend.handles()))
        frame = protocol.encode_hello(hello)
        sock = None
        try:
            sock, welcome = _handshake(os.fspath(socket_path), frame, connect_timeout_s)
            if welcome.version != protocol.VERSION or welcome.backend != backend.backend:
                raise SidecarError(f"WELCOME has version {welcome.version}, backend {welcome.backend}; this engine "
                                   f"speaks version {protocol.VERSION} with backend {backend.backend}")
            if len(welcome.consumed_event_handles) != buffers:
                raise SidecarError(f"WELCOME has {len(welcome.consumed_event_handles)} consumed events for "
                                   f"{buffers} buffers")
            try:
                backend.open_consumed_events(welcome.consumed_event_handles)
            except ProtocolError as e:
                raise SidecarError(str(e)) from e
        except BaseException:
            if sock is not None:
                sock.close()
            backend.close()
            raise
        return cls(sock, backend, welcome, layers=layers, top_k=top_k, max_tokens=max_tokens, on_failure=on_failure,
                   ack_timeout_s=ack_timeout_s, on_request_error=on_request_error)

    # -- steps -----------------------------------------------------------------------------------------------------

    def capture(self, topk_ids: Any, slot_mapping: Any, step_id: int | None = None) -> int:
        """Copies one step's ``[tokens, layers, top_k]`` top-k ids and ``[tokens]`` slot mapping in and sends it.

        Both must be int32 or int64 on this capture's device (a CUDA tensor; on the host a numpy array or a CPU
        tensor), ``tokens <= max_tokens``; otherwise ``ValueError`` naming the tensor and what was wrong, and nothing
        is sent. On CUDA the copy runs on the current stream. Blocks only as :meth:`begin_step` does. Returns the
        step id (``step_id`` or the previous one plus 1). Raises :class:`SidecarError` when the sidecar is lost
        (policy ``raise``).
        """
        start = time.perf_counter()
        b = self._buffers
        n = _check_step_tensors(topk_ids, slot_mapping, layers=self._layers, top_k=self._top_k,
                                max_tokens=self._max_tokens, device=b.device_name, on_device=b.on_device)
        self._check_step_id(step_id)
        waited = self._begin()
        inline = None
        if not self._detached:
            inline = b.copy_in(self._open, n, topk_ids, slot_mapping)  # type: ignore[arg-type]
        result = self._end(n, step_id, inline)
        self._call.record(time.perf_counter() - start - waited)
        return result

    def begin_step(self) -> tuple[Any, Any]:
        """The next buffer's routing ``[max_tokens, layers, top_k]`` and slots ``[max_tokens]`` views, ready to write.

        If the buffer still holds a step the sidecar has not consumed, blocks (metered in ``stats.wait_seconds``) until
        its CONSUMED arrives, at most ``ack_timeout_s``; on CUDA then makes the current stream wait on the sidecar's
        consumed event, so the forward must write the buffer on that stream (or one ordered after it). The previous
        :meth:`end_step` usually did both already (the wait on the stream current then), so in steady state this call
        only hands out the views; it waits again if the current stream has changed since. Write rows
        ``[:tokens]`` (slot -1 for padding tokens), then call :meth:`end_step`. Raises :class:`SidecarError` when the
        sidecar is lost (policy ``raise``), ``RuntimeError`` when a step is already begun or the capture is closed.
        """
        start = time.perf_counter()
        ready = self._ready_views
        if ready is not None:
            # steady state: end_step readied this buffer (consumed, waited on) and took its views; only check that
            # nothing changed since, so nothing of the capture runs between two launches but these few lines
            self._ready_views = None
            b, views, key = ready
            if (self._open is None and not self._closed and self._failure is None and not self._detached
                    and b == self._sequence % self._n and self._outstanding[b] is None and not self._unwaited[b]
                    and key == self._buffers.stream_key()):
                self._open = b
                self._wait.record(0.0)
                self._call.record(time.perf_counter() - start)
                return views
        waited = self._begin()
        views = self._buffers.views(self._open)  # type: ignore[arg-type]
        self._call.record(time.perf_counter() - start - waited)
        return views

    def end_step(self, num_tokens: int, step_id: int | None = None, *, slot_mapping: Any = None) -> int:
        """Hands the begun step's first ``num_tokens`` rows to the sidecar: records ready (CUDA), sends STEP.

        ``slot_mapping`` (optional): the step's ``[num_tokens]`` int32/int64 slots, given after the forward was
        launched, so nothing of it runs before the launch (on CUDA a CPU tensor travels in the STEP message itself,
        STEP_SLOTS, and the engine's stream gets no copy; it may be reused at once; a CUDA tensor is copied into the
        buffer on the current stream); without it the slots view that :meth:`begin_step` returned must hold them. Waits
        for no answer (only for socket space while the sidecar is not reading, at most ``ack_timeout_s``). Returns the step id
        (``step_id`` or the previous one plus 1). Raises ``ValueError`` for ``num_tokens`` outside
        ``0..max_tokens`` or a bad slot mapping (nothing is sent), ``RuntimeError`` without a begun step,
        :class:`SidecarError` when the sidecar is lost (policy ``raise``; with ``drop`` the step is counted in
        ``stats.dropped_steps``).
        """
        start = time.perf_counter()
        if self._closed:
            raise RuntimeError("the capture is closed")
        if self._open is None:
            raise RuntimeError("end_step without begin_step")
        _check_range("num_tokens", num_tokens, 0, self._max_tokens)
        self._check_step_id(step_id)
        inline = None
        if slot_mapping is not None:
            _check_slot_mapping(slot_mapping, int(num_tokens), device=self._buffers.device_name,
                                accepted=self._buffers.accepts_slots)
            if not self._detached:
                inline = self._buffers.copy_slots(self._open, int(num_tokens), slot_mapping)
        if not self._detached:
            self._buffers.finish_views(self._open, int(num_tokens), slot_mapping is not None)
        result = self._end(int(num_tokens), step_id, inline)
        self._call.record(time.perf_counter() - start)
        return result

    def _begin(self) -> float:
        """Opens the next buffer; returns the seconds spent waiting for CONSUMED."""
        self._ready_views = None
        self._check_open()
        if self._open is not None:
            raise RuntimeError("begin_step called twice: end_step the begun step first")
        b = self._sequence % self._n
        step = self._next_step_id  # the step about to be written, unless end_step names another
        waited = 0.0
        if not self._detached:
            if self._outstanding[b] is not None:
                self._drain(step)  # end_step drained last time: usually this buffer's CONSUMED is in already
            if self._outstanding[b] is not None and not self._detached:
                t0 = time.perf_counter()
                try:
                    if self._pending:
                        self._flush(step, block=True)  # a STEP held back must go out before its CONSUMED can come
                    self._await_consumed(b, step)
                finally:
                    waited = time.perf_counter() - t0
                    self._waits += 1
                    self._wait.record(waited)
            else:
                self._wait.record(0.0)
            if not self._detached:
                if self._unwaited[b]:
                    self._waited_on[b] = self._buffers.wait_consumed(b)
                    self._unwaited[b] = False
                elif self._waited_on[b] is not None and self._waited_on[b] != self._buffers.current_stream():
                    # end_step made another stream wait: this one must too, it is the one that writes the buffer
                    self._waited_on[b] = self._buffers.wait_consumed(b)
        else:
            self._wait.record(0.0)
        self._open = b
        return waited

    def _end(self, n: int, step_id: int | None, inline_slots: bytes | None = None) -> int:
        """Sends the begun step: STEP, or STEP_SLOTS with ``inline_slots`` (a CPU slot mapping on the CUDA transport)."""
        b = self._open
        assert b is not None
        self._open = None
        step = self._next_step_id if step_id is None else int(step_id)
        self._next_step_id = step + 1
        self._sequence += 1
        self._steps += 1
        if not self._detached:
            self._drain(step)
        if self._detached:
            self._dropped += 1
            return step
        self._buffers.record_ready(b)
        self._outstanding[b] = step
        if self._buffers.deferred:
            self._pending.append((step, b, protocol.encode_step(step, b, n)))
            self._flush(step, block=False)
        elif inline_slots is not None:
            self._send(protocol.encode_step_slots(step, b, n, inline_slots), step)
        else:
            self._send(protocol.encode_step(step, b, n), step)
        if self._detached:
            self._dropped += 1
            return step
        # Ready the next buffer now, while the GPU runs this step, so begin_step has nothing left to do before the
        # next forward: its CONSUMED is usually in already (the drain above), then the stream's wait is enqueued here.
        nb = self._sequence % self._n
        waited_now = False
        if self._outstanding[nb] is None and self._unwaited[nb]:
            self._waited_on[nb] = self._buffers.wait_consumed(nb)
            self._unwaited[nb] = False
            waited_now = True
        if self._outstanding[nb] is None and not self._unwaited[nb] and (waited_now or self._waited_on[nb] is None):
            self._ready_views = (nb, self._buffers.views(nb), self._buffers.stream_key())
        return step

    def _check_step_id(self, step_id: int | None) -> None:
        if step_id is not None:
            _check_range("step_id", step_id, 0, 2**64 - 1)

    def __enter__(self) -> RoutingCapture:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except SidecarError as e:  # the exception already in flight says more
            log.warning("r3: closing the capture after an error failed too: %s", e)

    # -- state -----------------------------------------------------------------------------------------------------

    @property
    def stats(self) -> CaptureStats:
        """A snapshot of the counters (see :class:`CaptureStats`)."""
        return CaptureStats(self._steps, self._dropped, self._waits, self._wait.timing(), self._call.timing(),
                            self._last_consumed, self._detached, self._request_error_count)

    @property
    def buffers(self) -> int:
        """N, the number of shared buffers in the handshake ring."""
        return self._n

    @property
    def detached(self) -> bool:
        """True once the sidecar was lost under policy ``drop``."""
        return self._detached

    @property
    def closed(self) -> bool:
        return self._closed
