"""The CUDA path against the real sidecar, killed mid-run: the engine's stream must never hang on a dead sidecar's
consumed event, and the engine gets a clear error (``raise``) or goes on counting (``drop``).

Needs a CUDA device, PyTorch, and ``R3_SIDECAR_CMD``: the command that starts ``r3 sidecar`` (on the GPU machine,
``bundle/jre/bin/java $(cat bundle/jvm.flags) -cp bundle/r3-bundle.jar dev.routingreplay.examples.R3Command sidecar``);
``--socket S --store D --backend cuda --once`` is appended. Skips, saying why, elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time

import pytest

torch = pytest.importorskip("torch", reason="the CUDA path needs PyTorch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
SIDECAR = os.environ.get("R3_SIDECAR_CMD")
if not SIDECAR:
    pytest.skip("R3_SIDECAR_CMD is not set (the command that starts r3 sidecar on this machine)", allow_module_level=True)

from r3.engine import RoutingCapture, SidecarError  # noqa: E402

LAYERS, TOP_K, EXPERTS, MAX_TOKENS = 48, 8, 128, 512
pytestmark = pytest.mark.timeout(240)


def _start_sidecar(folder: str) -> tuple[subprocess.Popen, str]:
    sock = os.path.join(folder, "r3.sock")
    cmd = f"exec {SIDECAR} --socket {sock} --store {os.path.join(folder, 'store')} --backend cuda --once --slots 65536"
    proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not os.path.exists(sock):
        assert proc.poll() is None, f"the sidecar exited: {proc.stdout.read()}"
        time.sleep(0.05)
    return proc, sock


def _synchronize_within(seconds: float) -> bool:
    done = threading.Event()

    def run() -> None:
        torch.cuda.synchronize()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(seconds)


def _step(capture: RoutingCapture, n: int, gen: torch.Generator) -> None:
    routing, _ = capture.begin_step()
    ids = torch.randint(0, EXPERTS, (n, LAYERS, TOP_K), device="cuda", dtype=torch.int32, generator=gen)
    routing[:n].copy_(ids)
    torch.cuda._sleep(200_000)  # about 0.1 ms of GPU work per step, so the sidecar has steps in flight when it dies
    capture.end_step(n, slot_mapping=torch.arange(n, dtype=torch.int64))


@pytest.mark.parametrize("policy", ["drop", "raise"])
def test_kill_9_of_the_cuda_sidecar_never_hangs_the_engine(policy: str) -> None:
    with tempfile.TemporaryDirectory(prefix="r3k-", dir="/tmp") as folder:
        proc, sock = _start_sidecar(folder)
        try:
            gen = torch.Generator(device="cuda").manual_seed(1)
            capture = RoutingCapture.connect(sock, layers=LAYERS, top_k=TOP_K, num_experts=EXPERTS,
                                             max_tokens=MAX_TOKENS, device="cuda:0", buffers=4, on_failure=policy,
                                             ack_timeout_s=10.0)
            for _ in range(40):
                _step(capture, 256, gen)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            error = None
            try:
                for _ in range(200):
                    _step(capture, 256, gen)
            except SidecarError as e:
                error = e
            assert _synchronize_within(30), "the engine's stream hangs after the sidecar was killed"
            if policy == "raise":
                assert error is not None, "a dead sidecar raises under 'raise'"
                assert "lost" in str(error) or "closed" in str(error), str(error)
            else:
                assert error is None
                stats = capture.stats
                assert stats.detached and stats.dropped_steps > 0, stats
                assert stats.steps == 240
            try:
                capture.close()
            except SidecarError:
                assert policy == "raise"
        finally:
            if proc.poll() is None:
                proc.kill()
