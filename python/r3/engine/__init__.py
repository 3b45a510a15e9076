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

from r3.engine.capture import RoutingCapture
from r3.engine.checks import _INT_DTYPES as _INT_DTYPES
from r3.engine.checks import _check_range as _check_range
from r3.engine.checks import _check_slot_mapping as _check_slot_mapping
from r3.engine.checks import _check_step_tensors as _check_step_tensors
from r3.engine.checks import _describe as _describe
from r3.engine.checks import _dtype_name as _dtype_name
from r3.engine.checks import slots_from_block_table
from r3.engine.cuda_ipc import _CudaBuffers as _CudaBuffers
from r3.engine.errors import SidecarError
from r3.engine.host import _HostBuffers as _HostBuffers
from r3.engine.link import _handshake as _handshake
from r3.engine.pinned import _PinnedHostBuffers as _PinnedHostBuffers
from r3.engine.stats import CaptureStats, Timing
from r3.engine.stats import _Histogram as _Histogram
from r3.engine.transport import _HANDLE_BYTES as _HANDLE_BYTES
from r3.engine.transport import DeferredTransport, Transport
from r3.engine.transport import _cuda_memory_handle as _cuda_memory_handle
from r3.engine.transport import _numpy_int_dtype as _numpy_int_dtype
from r3.engine.transport import _resolve_device as _resolve_device
from r3.engine.transport import _stream_key as _stream_key
from r3.engine.transport import _torch_int_dtype as _torch_int_dtype
from r3.protocol import Farewell

__all__ = ["RoutingCapture", "SidecarError", "CaptureStats", "Timing", "Farewell", "slots_from_block_table", "Transport",
           "DeferredTransport"]
