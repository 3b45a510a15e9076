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

from test_sidecar_integration import (EXPERTS, LAYERS, TOP_K, FakeEngine, Sidecar, connect,  # noqa: E402
                                      export, r3, sidecar)

__all__ = ["r3", "sidecar"]  # the fixtures, imported so pytest finds them here
pytestmark = pytest.mark.timeout(240)


class CudaFakeEngine(FakeEngine):
    """The fake engine with its routing on the GPU, written late on a busy stream."""

    def step(self, work: dict[str, int], padding: int = 0, hooks: bool = False) -> None:
        slots = []
        for rid, n in work.items():
            start = self.forwarded[rid]
            slots += [self.slot(rid, p) for p in range(start, start + n)]
            self.forwarded[rid] = start + n
        slots += [-1] * padding
        ids = self.rng.integers(0, EXPERTS, (len(slots), LAYERS, TOP_K), dtype=np.int64).astype(np.int32)
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
        for i, s in enumerate(slots):
            if s >= 0:
                self.rows[s] = ids[i]
        self.steps += 1
        self.tokens += len(slots)


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
        summary = capture.close()
        stats = capture.stats
    assert summary is not None, sidecar.log_tail()
    assert (summary.steps, summary.tokens, summary.requests_finished) == (engine.steps, engine.tokens, 3)
    assert stats.steps == engine.steps and stats.dropped_steps == 0 and not stats.detached
    assert sidecar.wait() == 0, sidecar.log_tail()

    stored = export(r3, sidecar.store, tmp_path / "npy")
    assert sorted(stored) == ["A", "B", "D"], "the aborted request C is not stored"
    for rid, routing in engine.expected.items():
        np.testing.assert_array_equal(stored[rid].astype(np.int64), routing.astype(np.int64), err_msg=f"request {rid}")

