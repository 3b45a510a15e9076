"""The CUDA path against a sidecar in another process (tests/cuda_sidecar.py, CUDA driver API over ctypes): memory and
events shared by CUDA IPC, and the two orderings of the handshake on the GPU.

- ready[b]: each step's rows are written on the engine's stream behind a long sleep kernel and STEP is sent at once;
  the sidecar's stream waits on ready[b], so it must read the rows, not what the buffer held before.
- consumed[b]: the sidecar's stream is busy for about 20 ms before its copy and CONSUMED is sent at once; the engine's
  next write of that buffer waits on consumed[b], so the copy must still see the step it was for.

Skipped without a CUDA device (CI has none); run on a GPU machine with PyTorch: python3 -m pytest python/tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from r3.engine import RoutingCapture  # noqa: E402

LAYERS, TOP_K, EXPERTS, MAX_TOKENS = 4, 2, 64, 256
SIDECAR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_sidecar.py")


def pattern(step: int, n: int, dev: torch.device) -> torch.Tensor:
    """value(k, i) = (7k + i) mod 61 over the flat [n, layers, top_k] rows, as cuda_sidecar.value."""
    flat = torch.arange(n * LAYERS * TOP_K, device=dev, dtype=torch.int64)
    return ((step * 7 + flat) % 61).view(n, LAYERS, TOP_K)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("id_dtype, slot_dtype, buffers, switch", [(torch.int32, torch.int64, 2, False),
                                                                 (torch.int64, torch.int32, 3, False),
                                                                 (torch.int32, torch.int64, 2, True)])
def test_steps_cross_by_cuda_ipc_in_handshake_order(socket_path: str, tmp_path, id_dtype, slot_dtype,
                                                    buffers: int, switch: bool) -> None:
    """``switch``: every step on the other of two streams, so the buffer end_step readied on one stream is written on
    another, which must wait on consumed[b] too (begin_step's fast path must notice the change)."""
    result = tmp_path / "result.json"
    sidecar = subprocess.Popen([sys.executable, SIDECAR, socket_path, str(result)])
    dev = torch.device("cuda:0")
    try:
        capture = RoutingCapture.connect(socket_path, layers=LAYERS, top_k=TOP_K, num_experts=EXPERTS,
                                         max_tokens=MAX_TOKENS, device=dev, buffers=buffers, id_dtype=id_dtype,
                                         slot_dtype=slot_dtype, ack_timeout_s=60, connect_timeout_s=60)
        streams = [torch.cuda.Stream(dev), torch.cuda.Stream(dev)]
        for k in range(24):
            # the current stream is not the default one: the module must follow it
            with torch.cuda.stream(streams[k % 2 if switch else 0]):
                n = 64 + k
                if k % 3 == 2 and not switch:  # style 1: a whole tensor, copied in on the current stream
                    torch.cuda._sleep(20_000_000)
                    ids = pattern(k, n, dev).to(id_dtype)
                    assert capture.capture(ids, torch.arange(n, device=dev) + k * 1000) == k
                    continue
                routing, slots = capture.begin_step()  # style 2: "hooks" write the shared buffer
                torch.cuda._sleep(20_000_000)  # about 10 ms: STEP leaves long before the rows are written
                for layer in range(LAYERS):
                    routing[:n, layer, :] = pattern(k, n, dev)[:, layer, :]
                slots[:n] = torch.arange(n, device=dev) + k * 1000
                assert capture.end_step(n) == k
        summary = capture.close()
        stats = capture.stats
        assert sidecar.wait(60) == 0
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait(30)
    verdict = json.loads(result.read_text())
    print("stats:", stats, "verdict:", verdict)
    assert verdict["steps"] == 24 and summary.steps == 24
    assert verdict["mismatched_steps"] == [], verdict
    # every buffer is an offset in the routing or the slots tensor's cudaMalloc block (small ones may share a block)
    assert verdict["buffers_mapped"] in (1, 2), verdict
    assert stats.steps == 24 and stats.dropped_steps == 0


def test_a_cpu_tensor_is_refused_naming_the_device(socket_path: str, tmp_path) -> None:
    sidecar = subprocess.Popen([sys.executable, SIDECAR, socket_path, str(tmp_path / "r.json")])
    try:
        with RoutingCapture.connect(socket_path, layers=48, top_k=8, num_experts=128, max_tokens=128,
                                    device="cuda:0", connect_timeout_s=60) as capture:
            with pytest.raises(ValueError) as raised:
                capture.capture(torch.zeros(64, 48, 8, dtype=torch.float16), torch.zeros(64, dtype=torch.int64))
            assert str(raised.value) == ("expected int32 or int64 topk ids of shape [tokens, 48, 8] on cuda:0, "
                                         "got float16 [64, 48, 8] on cpu")
        sidecar.wait(60)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
