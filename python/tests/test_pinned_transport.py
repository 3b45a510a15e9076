"""``transport="pinned"`` against the real sidecar: a CUDA engine copies each step into the host sidecar's shared memory
on its own stream, and STEP goes out only once that copy is done.

The sidecar is ``r3 sidecar --backend host`` of this build (no GPU in the JVM); the engine needs PyTorch with a CUDA
device, so this runs on the GPU machine and skips, saying why, elsewhere. Steps are made slow on the GPU
(``torch.cuda._sleep``) so that STEPs are held back when the next call comes, lifecycle calls arrive while copies are
still running, and buffers are reused behind CONSUMED.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the pinned transport needs PyTorch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device (the pinned transport copies from the GPU)", allow_module_level=True)

from test_sidecar_integration import (LAYERS, FakeEngine, Sidecar,  # noqa: E402
                                      assert_stored_as_written, connect, r3, sidecar)

__all__ = ["r3", "sidecar"]  # the fixtures, imported so pytest finds them here
pytestmark = pytest.mark.timeout(240)


class CudaFakeEngine(FakeEngine):
    """The fake engine with its routing on the GPU, written late on a busy stream."""

    def step(self, work: dict[str, int], padding: int = 0, hooks: bool = False) -> None:
        slots, ids = self.plan(work, padding)
        on_gpu = torch.from_numpy(ids).to("cuda")
        torch.cuda.synchronize()
        torch.cuda._sleep(2_000_000)  # ~1 ms of GPU time before the rows exist: the copy is still queued at end_step
        if hooks:
            routing, _ = self.capture.begin_step()
            for layer in range(LAYERS):
                routing[:len(slots), layer, :].copy_(on_gpu[:, layer, :])
            self.capture.end_step(len(slots), slot_mapping=torch.tensor(slots, dtype=torch.int64))
        else:
            self.capture.capture(on_gpu, torch.tensor(slots, dtype=torch.int64, device="cuda"))
        self.remember(slots, ids)


def test_the_host_sidecar_stores_what_a_cuda_engine_copied(r3: list[str], sidecar: Sidecar, tmp_path: Path) -> None:
    capture = connect(sidecar, device="cuda:0", transport="pinned", buffers=3)
    engine = CudaFakeEngine(capture, np.random.default_rng(20261127))
    with capture:
        engine.admit("A")
        engine.admit("B")
        engine.step({"A": 9, "B": 5})
        engine.admit("C")
        engine.step({"A": 1, "B": 1, "C": 12}, padding=2, hooks=True)
        for k in range(14):  # more steps than buffers, no sync between them: STEPs wait for their copies
            engine.step({rid: 1 for rid in list(engine.forwarded)}, padding=k % 3, hooks=k % 2 == 1)
            if k == 4:
                engine.abort("C")
                engine.admit("D")
            if k == 6:
                engine.finish("A", by_block_table=False)  # right after a step whose copy is still queued
        engine.step({"B": 1, "D": 1}, hooks=True)
        engine.finish("B", by_block_table=True)
        engine.finish("D", by_block_table=True)
    assert_stored_as_written(r3, sidecar, engine, tmp_path)
