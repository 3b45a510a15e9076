"""The host transport: the N buffers in one file both processes map (``device="host"``, ``r3 sidecar --backend
host``); numpy, no GPU."""

from __future__ import annotations

import mmap
import os
import tempfile
import weakref
from collections.abc import Sequence
from typing import Any

from r3 import protocol
from r3.engine.transport import _numpy_int_dtype, _unlink_quietly
from r3.protocol import BufferHandles, ProtocolError


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
