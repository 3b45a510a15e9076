"""The pinned transport (``transport="pinned"`` on a CUDA device, ``r3 sidecar --backend host``): the engine copies
each step into the host transport's file, registered with CUDA, and STEP waits for that copy."""

from __future__ import annotations

import ctypes
from typing import Any

from r3.engine.checks import _dtype_name
from r3.engine.host import _HostBuffers
from r3.engine.transport import _stream_key, _torch_int_dtype


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
