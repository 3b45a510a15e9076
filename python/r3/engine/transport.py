"""The seam between the session (:class:`~r3.engine.RoutingCapture`) and where the N shared buffers live.

A :class:`Transport` holds the N routing and slot buffers the engine writes and the sidecar reads, and the
synchronisation between them. Three implement it, one module each: :mod:`r3.engine.host` (a mapped file, numpy, no
GPU), :mod:`r3.engine.cuda_ipc` (CUDA allocations shared by IPC with ready and consumed events) and
:mod:`r3.engine.pinned` (the host file registered with CUDA; the engine copies each step into it and STEP waits for
that copy: a :class:`DeferredTransport`). The helpers below are shared by those modules.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

from r3.engine.checks import _INT_DTYPES, _dtype_name
from r3.protocol import BufferHandles

__all__ = ["DeferredTransport", "Transport"]

_HANDLE_BYTES = 64  # cudaIpcMemHandle_t and cudaIpcEventHandle_t


class Transport(Protocol):
    """N shared buffers and their synchronisation, as the session uses them (the calls in step order)."""

    backend: int
    """The HELLO's backend (``protocol.BACKEND_HOST`` or ``BACKEND_CUDA``)."""
    ordinal: int
    """The HELLO's device ordinal."""
    device_name: str
    """Where step tensors must live, for error messages (``cpu``, ``cuda:0``)."""
    routing_bytes: int
    """Bytes of one routing buffer ``[max_tokens, layers, top_k]``."""
    slots_bytes: int
    """Bytes of one slot buffer ``[max_tokens]``."""
    deferred: bool
    """True when STEP must wait until :meth:`DeferredTransport.copied` (the pinned transport)."""

    def handles(self) -> list[BufferHandles]:
        """What HELLO says of each buffer (where the sidecar opens it)."""
        ...

    def open_consumed_events(self, handles: Sequence[bytes]) -> None:
        """Opens the sidecar's consumed events from WELCOME; ``ProtocolError`` for handles this transport cannot use."""
        ...

    def on_device(self, x: Any) -> bool:
        """Whether ``x`` lives where :meth:`copy_in` takes step tensors."""
        ...

    def copy_in(self, b: int, n: int, topk_ids: Any, slot_mapping: Any) -> bytes | None:
        """Copies a step's rows and slots into buffer b; returns the slots as bytes where they go in STEP_SLOTS."""
        ...

    def accepts_slots(self, x: Any) -> bool:
        """Whether ``end_step(slot_mapping=x)`` can take ``x`` (its device)."""
        ...

    def copy_slots(self, b: int, n: int, slot_mapping: Any) -> bytes | None:
        """Copies a step's slots into buffer b; returns them as bytes where they go in STEP_SLOTS instead."""
        ...

    def views(self, b: int) -> tuple[Any, Any]:
        """The routing ``[max_tokens, layers, top_k]`` and slots ``[max_tokens]`` that ``begin_step`` hands out."""
        ...

    def finish_views(self, b: int, n: int, slots_given: bool) -> None:
        """Moves what the forward wrote into the views to buffer b, where they are not buffer b itself."""
        ...

    def wait_consumed(self, b: int) -> Any:
        """Orders the current stream after the sidecar's consumed event of buffer b; returns that stream."""
        ...

    def current_stream(self) -> Any:
        """The stream the engine writes on now (``None`` on the host)."""
        ...

    def stream_key(self) -> Any:
        """What identifies the current stream cheaply."""
        ...

    def record_ready(self, b: int) -> None:
        """Marks buffer b's rows as written on the current stream (before STEP is sent)."""
        ...

    def close(self) -> None:
        """Releases the buffers (the host file is unlinked)."""
        ...


class DeferredTransport(Transport, Protocol):
    """A transport whose STEP goes out only once its copy into the shared buffer has completed."""

    def copied(self, b: int, block: bool) -> bool:
        """Whether buffer b's copy has completed; with ``block``, waits for it first."""
        ...


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
