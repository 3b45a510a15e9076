"""The engine side of the engine bridge: hand a rollout engine's MoE routing to an ``r3 sidecar`` (docs/engine-bridge.md).

The engine writes each step's router top-k ids and slot mapping into one of N shared buffers (CUDA IPC memory on a
GPU, a mapped file on the host backend), then :meth:`RoutingCapture.end_step` records that buffer's ready event and
sends ``STEP``; the sidecar packs and stores the rows and answers ``CONSUMED``. Before a buffer is written again,
:meth:`RoutingCapture.begin_step` waits for its ``CONSUMED`` (the only place the engine ever blocks, metered in
:attr:`RoutingCapture.stats`) and, on CUDA, makes the current stream wait on the sidecar's consumed event.

With ``transport="pinned"`` (CUDA engines, a ``--backend host`` sidecar) the buffers are host memory shared with the
sidecar instead: the engine copies each step into one on its stream, and STEP is sent once that copy is done.

PyTorch is imported only when a CUDA device is used; the host backend (``device="host"``) needs numpy and no GPU.
A :class:`RoutingCapture` is not thread-safe: call it from the thread that drives the forward passes.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import math
import mmap
import os
import select
import socket
import tempfile
import time
import weakref
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from r3 import protocol
from r3.protocol import BufferHandles, Consumed, Failed, Farewell, Hello, ProtocolError, RequestError, Welcome

__all__ = ["RoutingCapture", "SidecarError", "CaptureStats", "Timing", "Farewell", "slots_from_block_table"]

log = logging.getLogger("r3.engine")

_HANDLE_BYTES = 64  # cudaIpcMemHandle_t and cudaIpcEventHandle_t
_INT_DTYPES = ("int32", "int64")


class SidecarError(RuntimeError):
    """The sidecar failed, closed the connection, or did not answer in time.

    ``cause`` says what happened (the sidecar's FAILED message, "the sidecar closed the connection", an ack timeout);
    ``last_consumed`` is the id of the last step the sidecar acknowledged (``None`` before the first); ``code`` is the
    FAILED code (1 protocol, 2 hello, 3 pipeline, 4 busy) or ``None`` when the sidecar sent none.
    """

    def __init__(self, cause: str, *, last_consumed: int | None = None, code: int | None = None,
                 step: int | None = None) -> None:
        if step is None and last_consumed is None:
            text = f"r3 sidecar: {cause}"
        else:
            where = "" if step is None else f" at step {step}"
            consumed = "none yet" if last_consumed is None else str(last_consumed)
            text = f"r3 sidecar lost{where} (last step consumed: {consumed}): {cause}"
        super().__init__(text)
        self.cause = cause
        self.last_consumed = last_consumed
        self.code = code
        self.step = step


# ------------------------------------------------------------------------------------------------------------ stats


@dataclass(frozen=True)
class Timing:
    """A metered duration: how many samples, their total, and the median and 99th percentile (seconds; about 6% wide)."""

    count: int
    total: float
    p50: float
    p99: float


@dataclass(frozen=True)
class CaptureStats:
    """Counters of one :class:`RoutingCapture`.

    ``steps``: steps ended (:meth:`~RoutingCapture.end_step` or :meth:`~RoutingCapture.capture`), sent or not.
    ``dropped_steps``: of those, the ones never sent because the capture had detached (policy ``drop``).
    ``waits``: steps whose :meth:`~RoutingCapture.begin_step` had to block for a ``CONSUMED``.
    ``wait_seconds``: the time blocked waiting for ``CONSUMED``, one sample per step (0 when the buffer was free).
    ``call_seconds``: Python time inside ``capture``/``begin_step``/``end_step``, not counting that wait.
    ``last_consumed``: the last step id the sidecar acknowledged. ``detached``: the sidecar was lost (policy ``drop``).
    ``request_errors``: REQUEST_ERRORs received (one request's fault each; see :meth:`~RoutingCapture.request_errors`).
    """

    steps: int
    dropped_steps: int
    waits: int
    wait_seconds: Timing
    call_seconds: Timing
    last_consumed: int | None
    detached: bool
    request_errors: int = 0


class _Histogram:
    """Fixed log-scale histogram of durations: exact zeros, then 20 buckets a decade from 100 ns to 1000 s.

    Constant memory whatever the number of samples; quantiles are the geometric middle of their bucket (within about
    6%), clamped to the smallest and largest sample seen.
    """

    _PER_DECADE = 20
    _LOW_EXP = -7
    _BUCKETS = 10 * _PER_DECADE

    __slots__ = ("count", "total", "zeros", "below", "above", "buckets", "low", "high")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.zeros = 0
        self.below = 0
        self.above = 0
        self.buckets = [0] * self._BUCKETS
        self.low = math.inf
        self.high = 0.0

    def record(self, seconds: float) -> None:
        self.count += 1
        if seconds <= 0.0:
            self.zeros += 1
            return
        self.total += seconds
        self.low = min(self.low, seconds)
        self.high = max(self.high, seconds)
        i = int((math.log10(seconds) - self._LOW_EXP) * self._PER_DECADE)
        if i < 0:
            self.below += 1
        elif i >= self._BUCKETS:
            self.above += 1
        else:
            self.buckets[i] += 1

    def quantile(self, q: float) -> float:
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = self.zeros
        if rank <= seen:
            return 0.0
        seen += self.below
        if rank <= seen:
            return self.low
        for i, n in enumerate(self.buckets):
            seen += n
            if rank <= seen:
                mid: float = 10.0 ** ((i + 0.5) / self._PER_DECADE + self._LOW_EXP)
                return min(max(mid, self.low), self.high)
        return self.high

    def timing(self) -> Timing:
        return Timing(self.count, self.total, self.quantile(0.5), self.quantile(0.99))


# ------------------------------------------------------------------------------------------------------- validation


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _describe(x: Any) -> str:
    """``float16 [64, 48, 8] on cpu`` for a numpy array or a tensor; the type name for anything else."""
    dtype = getattr(x, "dtype", None)
    shape = getattr(x, "shape", None)
    if dtype is None or shape is None:
        return type(x).__name__
    device = getattr(x, "device", None)
    where = "cpu" if device is None else str(device)
    return f"{_dtype_name(dtype)} [{', '.join(str(int(d)) for d in shape)}] on {where}"


def _check_step_tensors(topk_ids: Any, slot_mapping: Any, *, layers: int, top_k: int, max_tokens: int, device: str,
                        on_device: Any) -> int:
    """The token count of a step, after checking both tensors; ``ValueError`` naming the tensor and what was wrong."""
    shape = getattr(topk_ids, "shape", None)
    ok = (shape is not None and on_device(topk_ids) and _dtype_name(getattr(topk_ids, "dtype", "")) in _INT_DTYPES
          and len(shape) == 3 and tuple(int(d) for d in shape[1:]) == (layers, top_k))
    if not ok or shape is None:
        raise ValueError(f"expected int32 or int64 topk ids of shape [tokens, {layers}, {top_k}] on {device}, "
                         f"got {_describe(topk_ids)}")
    n = int(shape[0])
    if n > max_tokens:
        raise ValueError(f"expected int32 or int64 topk ids of shape [tokens, {layers}, {top_k}] with tokens <= "
                         f"max_tokens {max_tokens} on {device}, got {_describe(topk_ids)}")
    shape = getattr(slot_mapping, "shape", None)
    ok = (shape is not None and on_device(slot_mapping)
          and _dtype_name(getattr(slot_mapping, "dtype", "")) in _INT_DTYPES and tuple(int(d) for d in shape) == (n,))
    if not ok:
        raise ValueError(f"expected int32 or int64 slot mapping of shape [{n}] (one slot per token of the topk ids) "
                         f"on {device}, got {_describe(slot_mapping)}")
    return n


def _check_slot_mapping(slot_mapping: Any, n: int, *, device: str, accepted: Any) -> None:
    """``ValueError`` naming the slot mapping unless it is int32/int64 ``[n]`` and ``accepted`` takes its device."""
    shape = getattr(slot_mapping, "shape", None)
    ok = (shape is not None and accepted(slot_mapping)
          and _dtype_name(getattr(slot_mapping, "dtype", "")) in _INT_DTYPES and tuple(int(d) for d in shape) == (n,))
    if not ok:
        raise ValueError(f"expected int32 or int64 slot mapping of shape [{n}] (num_tokens) on {device} or the cpu, "
                         f"got {_describe(slot_mapping)}")


def slots_from_block_table(block_table: Sequence[int] | Any, block_size: int, seq_len: int) -> array[int]:
    """The KV-cache slots of positions ``0 .. seq_len-1``: ``block_table[pos // block_size] * block_size + pos % block_size``.

    ``block_table`` is a list, numpy array or CPU tensor of block ids. Returns an ``array('i')`` of ``seq_len`` slots.
    Raises ``ValueError`` when ``block_size`` is not positive, ``seq_len`` is negative or needs more blocks than the
    table has, or a slot falls outside int32.
    """
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if seq_len < 0:
        raise ValueError(f"seq_len must be 0 or more, got {seq_len}")
    blocks = block_table.tolist() if hasattr(block_table, "tolist") else list(block_table)
    needed = -(-seq_len // block_size)
    if needed > len(blocks):
        raise ValueError(f"block_table has {len(blocks)} blocks of {block_size} ({len(blocks) * block_size} positions), "
                         f"seq_len {seq_len} needs {needed}")
    slots = array("i")
    try:
        for i in range(needed):
            base = int(blocks[i]) * block_size
            if base < 0:
                raise ValueError(f"block_table[{i}] is {blocks[i]}, a block id is 0 or more")
            slots.extend(range(base, base + min(block_size, seq_len - i * block_size)))
    except OverflowError:
        raise ValueError(f"block_table[{i}] = {blocks[i]} gives slots outside int32 (block_size {block_size})") from None
    return slots


# --------------------------------------------------------------------------------------------------------- backends


class _HostBuffers:
    """The N routing and slot buffers in one file that both processes map (``/dev/shm`` when writable).

    File layout: the N routing buffers ``[max_tokens, layers, top_k]`` one after the other, then (64-byte aligned)
    the N slot buffers ``[max_tokens]``. The file is unlinked on :meth:`close` (or when this object is collected).
    """

    backend = protocol.BACKEND_HOST
    ordinal = 0
    device_name = "cpu"

    def __init__(self, n: int, max_tokens: int, layers: int, top_k: int, id_dtype: Any, slot_dtype: Any) -> None:
        import numpy as np

        self._np = np
        self.id_dtype = _numpy_int_dtype(np, id_dtype, "id_dtype", np.int32)
        self.slot_dtype = _numpy_int_dtype(np, slot_dtype, "slot_dtype", np.int64)
        self.routing_bytes = max_tokens * layers * top_k * self.id_dtype.itemsize
        self.slots_bytes = max_tokens * self.slot_dtype.itemsize
        slots_at = -(-n * self.routing_bytes // 64) * 64
        size = slots_at + n * self.slots_bytes
        folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        fd, self.path = tempfile.mkstemp(prefix="r3-engine-", suffix=".buffers", dir=folder)
        self._unlink = weakref.finalize(self, _unlink_quietly, self.path)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._slots_at = slots_at
        self.routing = np.ndarray((n, max_tokens, layers, top_k), dtype=self.id_dtype, buffer=self._map)
        self.slots = np.ndarray((n, max_tokens), dtype=self.slot_dtype, buffer=self._map, offset=slots_at)
        self.slots.fill(-1)

    def handles(self) -> list[BufferHandles]:
        path = os.fsencode(self.path)
        return [BufferHandles(path, b * self.routing_bytes, self.routing_bytes,
                              path, self._slots_at + b * self.slots_bytes, self.slots_bytes, b"")
                for b in range(len(self.routing))]

    def open_consumed_events(self, handles: Sequence[bytes]) -> None:
        bad = [i for i, h in enumerate(handles) if h]
        if bad:
            raise ProtocolError(f"WELCOME: the host backend has no events, consumed event handle {bad[0]} is not empty")

    def on_device(self, x: Any) -> bool:
        if isinstance(x, self._np.ndarray):
            return True
        device = getattr(x, "device", None)
        return getattr(device, "type", None) == "cpu" and hasattr(x, "numpy")

    def copy_in(self, b: int, n: int, topk_ids: Any, slot_mapping: Any) -> None:
        if not isinstance(topk_ids, self._np.ndarray):
            topk_ids = topk_ids.numpy()
        if not isinstance(slot_mapping, self._np.ndarray):
            slot_mapping = slot_mapping.numpy()
        self.routing[b, :n] = topk_ids
        self.slots[b, :n] = slot_mapping

    def accepts_slots(self, x: Any) -> bool:
        return self.on_device(x)

    def copy_slots(self, b: int, n: int, slot_mapping: Any) -> None:
        if not isinstance(slot_mapping, self._np.ndarray):
            slot_mapping = slot_mapping.numpy()
        self.slots[b, :n] = slot_mapping

    deferred = False  # STEP goes out at once: the rows are in the file before end_step returns

    def views(self, b: int) -> tuple[Any, Any]:
        """What :meth:`RoutingCapture.begin_step` hands out for buffer b: its routing and slots."""
        return self.routing[b], self.slots[b]

    def finish_views(self, b: int, n: int, slots_given: bool) -> None:
        """The views are buffer b itself: nothing to move."""

    def wait_consumed(self, b: int) -> None:
        """Host work is ordered by the messages themselves: the sidecar read the buffer before sending CONSUMED."""

    def current_stream(self) -> None:
        """The host backend has no streams."""

    def stream_key(self) -> Any:
        """What identifies the current stream cheaply (the host backend has none)."""
        return None

    def record_ready(self, b: int) -> None:
        """Nothing to record: the writes are in the mapped file before STEP is sent."""

    def close(self) -> None:
        self.routing = self.slots = None  # type: ignore[assignment]
        try:
            self._map.close()
        except BufferError:
            pass  # views handed out by begin_step are still alive: the mapping goes with the last of them
        self._unlink()


def _numpy_int_dtype(np: Any, dtype: Any, name: str, default: Any) -> Any:
    if dtype is None:
        return np.dtype(default)
    d = None
    for candidate in (dtype, _dtype_name(dtype)):  # numpy dtypes and names; torch.int32 and friends
        try:
            d = np.dtype(candidate)
            break
        except TypeError:
            pass
    if d is None or d.name not in _INT_DTYPES:
        raise ValueError(f"{name} must be int32 or int64 for the host backend, got {dtype}")
    return d


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _CudaBuffers:
    """The N routing and slot buffers as two CUDA allocations shared by IPC, with one ready and one consumed event each.

    ``routing`` is one tensor ``[N, max_tokens, layers, top_k]`` and ``slots`` one ``[N, max_tokens]``: buffer b of
    either is a byte offset inside the allocation whose IPC handle is sent. Ready events are created here
    (``interprocess=True``); consumed events are the sidecar's, opened from WELCOME.
    """

    backend = protocol.BACKEND_CUDA

    def __init__(self, torch: Any, device: Any, n: int, max_tokens: int, layers: int, top_k: int, id_dtype: Any,
                 slot_dtype: Any) -> None:
        self.torch = torch
        self.device = device
        self.ordinal = device.index
        self.device_name = str(device)
        self.id_dtype = _torch_int_dtype(torch, id_dtype, "id_dtype", torch.int32)
        self.slot_dtype = _torch_int_dtype(torch, slot_dtype, "slot_dtype", torch.int64)
        with torch.cuda.device(device):
            self.routing = torch.zeros((n, max_tokens, layers, top_k), dtype=self.id_dtype, device=device)
            self.slots = torch.full((n, max_tokens), -1, dtype=self.slot_dtype, device=device)
            self.ready = [torch.cuda.Event(enable_timing=False, interprocess=True) for _ in range(n)]
            self._ready_handles = [bytes(e.ipc_handle()) for e in self.ready]
            torch.cuda.current_stream(device).synchronize()  # the fills are done before the sidecar maps the memory
            self._routing_handle, self._routing_at = _cuda_memory_handle(self.routing, "routing")
            self._slots_handle, self._slots_at = _cuda_memory_handle(self.slots, "slots")
        self.routing_bytes = self.routing[0].numel() * self.routing.element_size()
        self.slots_bytes = self.slots[0].numel() * self.slots.element_size()
        self.consumed: list[Any] = []

    def handles(self) -> list[BufferHandles]:
        return [BufferHandles(self._routing_handle, self._routing_at + b * self.routing_bytes, self.routing_bytes,
                              self._slots_handle, self._slots_at + b * self.slots_bytes, self.slots_bytes,
                              self._ready_handles[b])
                for b in range(len(self.ready))]

    def open_consumed_events(self, handles: Sequence[bytes]) -> None:
        for i, h in enumerate(handles):
            if len(h) != _HANDLE_BYTES:
                raise ProtocolError(f"WELCOME: consumed event handle {i} has {len(h)} bytes, a CUDA IPC event handle "
                                    f"has {_HANDLE_BYTES}")
        self.consumed = [self.torch.cuda.Event.from_ipc_handle(self.device, h) for h in handles]

    def on_device(self, x: Any) -> bool:
        return isinstance(x, self.torch.Tensor) and x.device == self.device

    def copy_in(self, b: int, n: int, topk_ids: Any, slot_mapping: Any) -> bytes | None:
        self.routing[b, :n].copy_(topk_ids)
        return self.copy_slots(b, n, slot_mapping)

    def accepts_slots(self, x: Any) -> bool:
        return isinstance(x, self.torch.Tensor) and (x.device == self.device or x.device.type == "cpu")

    def copy_slots(self, b: int, n: int, slot_mapping: Any) -> bytes | None:
        """A CUDA slot mapping is copied into buffer b on the current stream; a CPU one goes in the STEP message
        itself (STEP_SLOTS: returned as bytes), so the engine's stream gets no copy at all."""
        if slot_mapping.device.type != "cpu":
            self.slots[b, :n].copy_(slot_mapping)
            return None
        if slot_mapping.dtype != self.slot_dtype:
            slot_mapping = slot_mapping.to(self.slot_dtype)
        data: bytes = slot_mapping.contiguous().numpy().tobytes()
        return data

    deferred = False  # STEP goes out at once: the sidecar's stream waits on the ready event

    def views(self, b: int) -> tuple[Any, Any]:
        """What :meth:`RoutingCapture.begin_step` hands out for buffer b: its routing and slots, device memory."""
        return self.routing[b], self.slots[b]

    def finish_views(self, b: int, n: int, slots_given: bool) -> None:
        """The views are buffer b itself: nothing to move."""

    def wait_consumed(self, b: int) -> Any:
        """Makes the current stream wait on buffer b's consumed event; returns that stream."""
        stream = self.torch.cuda.current_stream(self.device)
        stream.wait_event(self.consumed[b])
        return stream

    def current_stream(self) -> Any:
        return self.torch.cuda.current_stream(self.device)

    def stream_key(self) -> Any:
        return _stream_key(self.torch, self.device)

    def record_ready(self, b: int) -> None:
        self.ready[b].record(self.torch.cuda.current_stream(self.device))

    def close(self) -> None:
        # PyTorch keeps an allocation it shared by IPC until exit (its consumers would release it, the JVM does not).
        self.consumed = []
        self.ready = []
        self.routing = self.slots = None


class _PinnedHostBuffers(_HostBuffers):
    """``transport="pinned"``: the engine copies each step to the sidecar's host memory itself; the sidecar needs no GPU.

    The N buffers are the host backend's mapped file (the sidecar runs ``--backend host``), registered with CUDA
    (``cudaHostRegister``) so that the copy into it is an asynchronous DMA on the engine's current stream. The engine
    keeps one device routing buffer and one device slots buffer: :meth:`views` hands them out for every step, the
    forward writes them, and :meth:`finish_views` copies the step's rows into buffer b (``non_blocking``) and records
    b's copied event. Reusing the device buffers is ordered by the stream (the next forward runs after the copy); the
    host buffer b is written again only after the sidecar's CONSUMED for it. STEP is sent once b's copy has completed
    (:meth:`copied`), which the engine's own sampling sync makes true by the next call.
    """

    deferred = True

    def __init__(self, torch: Any, device: Any, n: int, max_tokens: int, layers: int, top_k: int, id_dtype: Any,
                 slot_dtype: Any) -> None:
        tid = _torch_int_dtype(torch, id_dtype, "id_dtype", torch.int32)
        tslot = _torch_int_dtype(torch, slot_dtype, "slot_dtype", torch.int64)
        super().__init__(n, max_tokens, layers, top_k, _dtype_name(tid), _dtype_name(tslot))
        self.torch = torch
        self.device = device
        self.device_name = str(device)
        size = len(self._map)
        self._pinned: ctypes.Array[ctypes.c_char] | None = (ctypes.c_char * size).from_buffer(self._map)
        self._address = ctypes.addressof(self._pinned)
        with torch.cuda.device(device):
            err = int(torch.cuda.cudart().cudaHostRegister(self._address, size, 0))
            if err != 0:
                self._pinned = None
                super().close()
                raise RuntimeError(f"cudaHostRegister of the {size}-byte shared buffer file failed with cudaError {err}")
            self._registered = True
            self.device_routing = torch.zeros((max_tokens, layers, top_k), dtype=tid, device=device)
            self.device_slots = torch.full((max_tokens,), -1, dtype=tslot, device=device)
            self.copied_events = [torch.cuda.Event(enable_timing=False) for _ in range(n)]
        self.host_routing = [torch.from_numpy(self.routing[b]) for b in range(n)]
        self.host_slots = [torch.from_numpy(self.slots[b]) for b in range(n)]
        self._copy_stream: Any = None
        self._last: int | None = None

    def views(self, b: int) -> tuple[Any, Any]:
        """The device routing and slots buffers (the same for every b); the current stream is ordered after the last
        copy out of them when it is not the stream that copy ran on."""
        stream = self.torch.cuda.current_stream(self.device)
        if self._last is not None and self._copy_stream is not None and stream != self._copy_stream:
            stream.wait_event(self.copied_events[self._last])
        return self.device_routing, self.device_slots

    def on_device(self, x: Any) -> bool:
        return isinstance(x, self.torch.Tensor) and x.device == self.device

    def accepts_slots(self, x: Any) -> bool:
        return isinstance(x, self.torch.Tensor) and (x.device == self.device or x.device.type == "cpu")

    def copy_in(self, b: int, n: int, topk_ids: Any, slot_mapping: Any) -> None:
        self.host_routing[b][:n].copy_(topk_ids, non_blocking=True)
        self.copy_slots(b, n, slot_mapping)

    def copy_slots(self, b: int, n: int, slot_mapping: Any) -> None:
        if slot_mapping.device.type == "cpu":
            self.host_slots[b][:n].copy_(slot_mapping)  # plain memory copy: the caller may reuse its tensor at once
        else:
            self.host_slots[b][:n].copy_(slot_mapping, non_blocking=True)

    def finish_views(self, b: int, n: int, slots_given: bool) -> None:
        """Copies the begun step's rows (and its slots, unless end_step was given them) into buffer b."""
        self.host_routing[b][:n].copy_(self.device_routing[:n], non_blocking=True)
        if not slots_given:
            self.host_slots[b][:n].copy_(self.device_slots[:n], non_blocking=True)

    def stream_key(self) -> Any:
        return _stream_key(self.torch, self.device)

    def record_ready(self, b: int) -> None:
        self._copy_stream = self.torch.cuda.current_stream(self.device)
        self.copied_events[b].record(self._copy_stream)
        self._last = b

    def copied(self, b: int, block: bool) -> bool:
        """Whether buffer b's copy has completed; with ``block``, waits for it first."""
        if block:
            self.copied_events[b].synchronize()
            return True
        return bool(self.copied_events[b].query())

    def close(self) -> None:
        if getattr(self, "_registered", False):
            try:
                self.torch.cuda.synchronize(self.device)  # no copy may still write the mapping
            finally:
                self._registered = False
                self.torch.cuda.cudart().cudaHostUnregister(self._address)
        self.host_routing = self.host_slots = []
        self._pinned = None
        super().close()


def _stream_key(torch: Any, device: Any) -> int:
    """The current stream's ``cudaStream_t`` as an int, by the cheapest call PyTorch has (a few hundred ns)."""
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return int(raw(device.index))
    return int(torch.cuda.current_stream(device).cuda_stream)


def _torch_int_dtype(torch: Any, dtype: Any, name: str, default: Any) -> Any:
    if dtype is None:
        return default
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), None)
    if dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name} must be torch.int32 or torch.int64, got {dtype}")
    return dtype


def _cuda_memory_handle(tensor: Any, name: str) -> tuple[bytes, int]:
    """The 64-byte cudaIpcMemHandle_t of the allocation holding ``tensor``, and the tensor's byte offset in it.

    ``_share_cuda_()`` returns (device, handle, storage bytes, storage offset in the cudaMalloc block, ...); since
    PyTorch 2.2 or so the handle is framed: a version byte, ``c`` (a cudaMalloc block) or ``e`` (expandable segments,
    which cudaIpcOpenMemHandle cannot open), then the 64 bytes.
    """
    shared = tensor.untyped_storage()._share_cuda_()
    handle = bytes(shared[1])
    storage_offset = int(shared[3])
    if len(handle) == _HANDLE_BYTES + 2 and handle[1:2] == b"c":
        handle = handle[2:]
    elif len(handle) == _HANDLE_BYTES + 2 and handle[1:2] == b"e":
        raise RuntimeError(f"the {name} buffer lives in an expandable segment (PYTORCH_CUDA_ALLOC_CONF="
                           "expandable_segments:True), which CUDA IPC cannot share; run the engine without it")
    elif len(handle) != _HANDLE_BYTES:
        raise RuntimeError(f"unknown PyTorch IPC handle for the {name} buffer: {len(handle)} bytes starting "
                           f"{handle[:2].hex()}")
    return handle, storage_offset + tensor.storage_offset() * tensor.element_size()


def _resolve_device(device: Any) -> tuple[Any, Any]:
    """(torch, torch.device) for a CUDA device, (None, None) for ``"host"``."""
    if isinstance(device, str) and device == "host":
        return None, None
    try:
        import torch
    except ImportError as e:
        raise ImportError(f'device={device!r} needs PyTorch, which cannot be imported here ({e}); device="host" '
                          "runs on mapped files without it") from e

    dev = torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f'device must be "host" or a CUDA device, got {device}')
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return torch, dev


# ---------------------------------------------------------------------------------------------------------- capture


class RoutingCapture:
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

    def __init__(self, sock: socket.socket, buffers: _HostBuffers | _CudaBuffers | _PinnedHostBuffers, welcome: Welcome, *,
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
        backend: _HostBuffers | _CudaBuffers | _PinnedHostBuffers
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

    def _flush(self, step: int | None, *, block: bool) -> None:
        """Sends the held-back STEPs (transport ``pinned``) whose copy has completed, in order; with ``block``, all of
        them, waiting for each copy (the engine's sampling sync has usually completed them already)."""
        if not self._pending:
            return
        copied = self._buffers.copied  # type: ignore[union-attr]
        while self._pending and not self._detached:
            held, b, frame = self._pending[0]
            if not copied(b, block):
                return
            self._pending.popleft()
            self._send(frame, held if step is None else step)

    def _check_step_id(self, step_id: int | None) -> None:
        if step_id is not None:
            _check_range("step_id", step_id, 0, 2**64 - 1)

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def admitted(self, request_id: str, cached_tokens: int = 0) -> None:
        """Sends ADMITTED: the request is live; its finish records rows written by steps after this call.

        ``cached_tokens``: how many leading positions the prefix cache served at this admission (vLLM's
        ``num_cached_tokens``, SGLang's ``cached_tokens``); their rows may come from an earlier request of the round.
        Rows past it that no step wrote after this call are missing rows (``before-admission``), never another
        request's data. Admitting a live id again (a preempted request resumed) replaces its admission. Waits for no
        answer; raises as :meth:`end_step` does (``ValueError`` for an id over 65535 UTF-8 bytes or a negative count).
        """
        _check_range("cached_tokens", cached_tokens, 0, 0xFFFFFFFF)
        self._lifecycle(lambda: protocol.encode_admitted(request_id, cached_tokens))

    def finished(self, request_id: str, slots: Sequence[int] | Any = None, *, block_table: Sequence[int] | Any = None,
                 block_size: int | None = None, seq_len: int | None = None) -> None:
        """Sends FINISHED: the sidecar gathers the request's routing from these slots, in token order.

        Give either ``slots`` (one per token: prompt then output, without the final token, which was never forwarded)
        or ``block_table`` with ``block_size`` and ``seq_len`` (the tokens that have routing): slot of position
        ``pos < seq_len`` is ``block_table[pos // block_size] * block_size + pos % block_size``. Send it before the
        request's KV blocks are reused. Waits for no answer (a 32k-token request is 128 kB: while the sidecar is
        not reading, the send waits for socket space, at most ``ack_timeout_s``); raises ``ValueError`` for bad slots or block
        table arguments, and as :meth:`end_step` does when the sidecar is lost.
        """
        if (slots is None) == (block_table is None):
            raise ValueError("finished takes either slots or block_table (with block_size and seq_len), not both or none")
        if block_table is not None:
            if block_size is None or seq_len is None:
                raise ValueError("finished with a block_table needs block_size and seq_len")
            slots = slots_from_block_table(block_table, int(block_size), int(seq_len))
        self._lifecycle(lambda: protocol.encode_finished(request_id, slots))

    def aborted(self, request_id: str) -> None:
        """Sends ABORTED (the request's routing is not gathered). Waits for no answer."""
        self._lifecycle(lambda: protocol.encode_aborted(request_id))

    def slots_moved(self, source: Sequence[int] | Any, destination: Sequence[int] | Any) -> None:
        """Sends SLOTS_MOVED: the rows of ``source[i]`` now belong to ``destination[i]`` (KV blocks copied or swapped).
        ``ValueError`` when the lengths differ or a slot is outside int32. Waits for no answer."""
        self._lifecycle(lambda: protocol.encode_slots_moved(source, destination))

    def round_cleared(self, round_id: int) -> None:
        """Sends ROUND_CLEARED for ``round_id`` (a u64). Waits for no answer."""
        self._lifecycle(lambda: protocol.encode_round_cleared(round_id))

    def request_errors(self) -> list[RequestError]:
        """The REQUEST_ERRORs received since the last call, oldest first (reads what the sidecar sent, never blocks).

        Each names a request whose FINISHED or ABORTED was refused (code 1, ``not-live``): it has no record. The
        session goes on. At most :attr:`MAX_KEPT_REQUEST_ERRORS` are kept between calls; ``stats.request_errors``
        counts them all.
        """
        if not self._closed and not self._detached and self._failure is None:
            self._drain()
        out = list(self._request_errors)
        self._request_errors.clear()
        return out

    def _lifecycle(self, encode: Any) -> None:
        self._check_open()
        frame = encode()  # ValueError before anything is sent
        if self._detached:
            return
        self._drain()
        if self._pending:
            self._flush(None, block=True)  # the steps before it go first: FINISHED gathers their rows
        if not self._detached:
            self._send(frame, None)

    # -- close -----------------------------------------------------------------------------------------------------

    def close(self) -> Farewell | None:
        """Sends GOODBYE and waits (at most ``ack_timeout_s``) for FAREWELL, sent once everything before it is stored;
        then closes the socket and releases the buffers (the host file is unlinked).

        Returns the sidecar's counts (steps, tokens, requests finished), or ``None`` when the capture had detached
        (policy ``drop``). A begun step that was not ended is not sent. Raises :class:`SidecarError` when the sidecar
        is lost (policy ``raise``), after releasing everything. Calling it again returns the same result.
        """
        if self._closed:
            return self._farewell
        self._closed = True
        try:
            if not self._detached and self._failure is None:
                self._drain()
                if self._pending:
                    self._flush(None, block=True)
                if not self._detached:
                    self._send(protocol.encode_goodbye(), None)
                deadline = time.monotonic() + self._ack_timeout_s
                while self._farewell is None and not self._detached:
                    self._wait_readable(deadline, "FAREWELL (everything stored)", None)
            if self._failure is not None and not self._detached:
                raise self._error()
            return self._farewell
        finally:
            self._release()

    def _release(self) -> None:
        try:
            self._sock.close()
        finally:
            self._buffers.close()

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

    # -- the socket ------------------------------------------------------------------------------------------------

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


def _check_range(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = value.__index__()
        except AttributeError:
            raise ValueError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")


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
