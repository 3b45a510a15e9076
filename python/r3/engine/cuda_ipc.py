"""The CUDA IPC transport (``transport="ipc"`` on a CUDA device, ``r3 sidecar --backend cuda``): the N buffers are
device memory the sidecar opens by IPC handle, ordered by ready and consumed events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r3 import protocol
from r3.engine.transport import _HANDLE_BYTES, _cuda_memory_handle, _stream_key, _torch_int_dtype
from r3.protocol import BufferHandles, ProtocolError


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
