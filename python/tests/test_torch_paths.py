"""The PyTorch side of the engine module that runs without a GPU: tensor validation with CUDA devices named,
CPU tensors on the host backend, torch dtypes, and the framing of PyTorch's IPC memory handle.

Skipped without PyTorch (CI has none); run with a CPU PyTorch: ``python -m pytest python/tests``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fake_sidecar import FakeSidecar  # noqa: E402
from r3 import engine  # noqa: E402
from r3.engine import RoutingCapture  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def on_cuda0(x) -> bool:
    return isinstance(x, torch.Tensor) and x.device == torch.device("cuda:0")


def test_the_doc_example_message() -> None:
    with pytest.raises(ValueError) as raised:
        engine._check_step_tensors(torch.zeros(64, 48, 8, dtype=torch.float16), torch.zeros(64, dtype=torch.int64),
                                   layers=48, top_k=8, max_tokens=8192, device="cuda:0", on_device=on_cuda0)
    assert str(raised.value) == ("expected int32 or int64 topk ids of shape [tokens, 48, 8] on cuda:0, "
                                 "got float16 [64, 48, 8] on cpu")


def test_a_cpu_tensor_is_refused_for_a_cuda_capture() -> None:
    with pytest.raises(ValueError, match=r"^expected int32 or int64 topk ids of shape \[tokens, 48, 8\] on cuda:0, "
                                         r"got int32 \[64, 48, 8\] on cpu$"):
        engine._check_step_tensors(torch.zeros(64, 48, 8, dtype=torch.int32), torch.zeros(64, dtype=torch.int64),
                                   layers=48, top_k=8, max_tokens=8192, device="cuda:0", on_device=on_cuda0)


def test_torch_dtypes() -> None:
    assert engine._torch_int_dtype(torch, None, "id_dtype", torch.int32) is torch.int32
    assert engine._torch_int_dtype(torch, "int64", "id_dtype", torch.int32) is torch.int64
    with pytest.raises(ValueError, match="slot_dtype must be torch.int32 or torch.int64, got torch.int16"):
        engine._torch_int_dtype(torch, torch.int16, "slot_dtype", torch.int64)
    assert engine._numpy_int_dtype(np, torch.int64, "id_dtype", np.int32) == np.int64


def test_device_resolution() -> None:
    assert engine._resolve_device("host") == (None, None)
    with pytest.raises(ValueError, match='device must be "host" or a CUDA device, got cpu'):
        engine._resolve_device("cpu")
    t, dev = engine._resolve_device(torch.device("cuda", 1))
    assert t is torch and dev == torch.device("cuda:1")


def test_cpu_tensors_on_the_host_backend(socket_path: str) -> None:
    sidecar = FakeSidecar(socket_path)
    try:
        with RoutingCapture.connect(socket_path, layers=2, top_k=2, num_experts=8, max_tokens=8, device="host",
                                    id_dtype=torch.int32, slot_dtype=torch.int64, ack_timeout_s=5,
                                    connect_timeout_s=5) as capture:
            ids = torch.randint(0, 8, (5, 2, 2), dtype=torch.int64)
            capture.capture(ids, torch.arange(5))
            capture.close()
        np.testing.assert_array_equal(sidecar.steps[0].routing, ids.numpy())
        np.testing.assert_array_equal(sidecar.steps[0].slots, np.arange(5))
    finally:
        sidecar.stop()


class _Storage:
    def __init__(self, handle: bytes, offset: int) -> None:
        self.shared = (0, handle, 1 << 20, offset, b"ref", 0, b"event", True)

    def _share_cuda_(self):
        return self.shared


class _Tensor:
    def __init__(self, handle: bytes, offset: int, element_offset: int = 0) -> None:
        self.storage = _Storage(handle, offset)
        self.element_offset = element_offset

    def untyped_storage(self) -> _Storage:
        return self.storage

    def storage_offset(self) -> int:
        return self.element_offset

    def element_size(self) -> int:
        return 4


def test_pytorch_ipc_handle_framing() -> None:
    raw = bytes(range(64))
    assert engine._cuda_memory_handle(_Tensor(b"\x01c" + raw, 512), "routing") == (raw, 512)
    assert engine._cuda_memory_handle(_Tensor(raw, 0, element_offset=10), "routing") == (raw, 40)
    with pytest.raises(RuntimeError, match="expandable segment"):
        engine._cuda_memory_handle(_Tensor(b"\x01e" + raw, 0), "slots")
    with pytest.raises(RuntimeError, match="unknown PyTorch IPC handle for the slots buffer: 10 bytes"):
        engine._cuda_memory_handle(_Tensor(b"\x01x" + raw[:8], 0), "slots")
