"""The engine module against the real sidecar: ``r3 sidecar --backend host --once`` of this build, a fake engine with
random routing, and the store read back with ``r3 export`` and numpy.

The r3 class path comes from ``r3_build``: ``examples/target/classpath.txt`` (Maven writes it at ``package``) plus
``examples/target/classes``. The tests skip, saying why, when the build has not written it or when this build's r3 has
no ``sidecar`` command.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import r3_build
from r3.engine import RoutingCapture, SidecarError, slots_from_block_table
from r3.trainer import ReplayClient

REPO = Path(__file__).resolve().parents[2]
MAIN = "dev.routingreplay.examples.R3Command"
LAYERS, TOP_K, EXPERTS, MAX_TOKENS, BLOCK = 4, 2, 16, 64, 4

pytestmark = pytest.mark.timeout(240)


def _r3_command() -> list[str]:
    return r3_build.command()


@pytest.fixture(scope="module")
def r3() -> list[str]:
    """The ``r3`` command line of this build; skips (with the reason) where there is none or it has no sidecar."""
    if r3_build.classpath() is None:
        pytest.skip(r3_build.NO_CLASSPATH)
    cmd = _r3_command()
    probe = subprocess.run([*cmd, "sidecar", "--help"], capture_output=True, text=True, timeout=120)
    if "--socket" not in probe.stdout:
        if "Unmatched argument" in probe.stderr or "Usage: r3 " in probe.stdout:
            pytest.skip("this build's r3 has no sidecar command (the engine bridge's sidecar is not merged yet)")
        raise AssertionError(f"r3 sidecar --help failed ({probe.returncode}): {probe.stdout}{probe.stderr}")
    return cmd


@dataclass
class Sidecar:
    process: subprocess.Popen
    socket: str
    store: Path
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no log)"

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the sidecar did not exit within {timeout} s; its log:\n{self.log_tail()}") from None


@pytest.fixture
def sidecar(r3: list[str], short_dir: str, tmp_path: Path) -> Iterator[Sidecar]:
    """``r3 sidecar --backend host --once`` on a socket in a short folder; killed at teardown if still running."""
    yield from run_sidecar(r3, short_dir, tmp_path)


def run_sidecar(r3: list[str], short_dir: str, tmp_path: Path, *extra: str) -> Iterator[Sidecar]:
    """Starts ``r3 sidecar --backend host --once`` with ``extra`` options, yields it once its socket exists, and kills it
    at the end if it still runs (a fixture's body)."""
    log = tmp_path / "sidecar.log"
    socket_path = os.path.join(short_dir, "r3.sock")
    store = tmp_path / "store"
    with open(log, "wb") as out:
        process = subprocess.Popen([*r3, "sidecar", "--socket", socket_path, "--store", str(store), "--backend", "host",
                                    "--once", *extra], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    s = Sidecar(process, socket_path, store, log)
    try:
        deadline = time.monotonic() + 90
        while not os.path.exists(socket_path):  # the JVM starts; fail at once if it exits instead
            assert process.poll() is None, f"the sidecar exited with {process.returncode}: {s.log_tail()}"
            assert time.monotonic() < deadline, f"the sidecar made no socket within 90 s: {s.log_tail()}"
            time.sleep(0.05)
        yield s
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def connect(s: Sidecar, **overrides) -> RoutingCapture:
    args = dict(layers=LAYERS, top_k=TOP_K, num_experts=EXPERTS, max_tokens=MAX_TOKENS, device="host", buffers=3,
                ack_timeout_s=30.0, connect_timeout_s=90.0, engine_name="pytest-fake-engine")
    args.update(overrides)
    try:
        return RoutingCapture.connect(s.socket, **args)
    except SidecarError as e:
        raise AssertionError(f"{e}; the sidecar's log:\n{s.log_tail()}") from e


def distinct_experts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random routing ``[n, LAYERS, TOP_K]`` int32 as a real gate makes it: the top-k of a layer are distinct experts."""
    return np.argsort(rng.random((n, LAYERS, EXPERTS)), axis=-1)[..., :TOP_K].astype(np.int32)


@dataclass
class FakeEngine:
    """Requests with block tables over a KV pool of 4-token blocks, random routing per forwarded token, and what the
    store must hold: the newest row of each slot, gathered in token order at finish."""

    capture: RoutingCapture
    rng: np.random.Generator
    free_blocks: list[int] = field(default_factory=lambda: list(range(64)))
    tables: dict[str, list[int]] = field(default_factory=dict)
    forwarded: dict[str, int] = field(default_factory=dict)
    rows: dict[int, np.ndarray] = field(default_factory=dict)
    expected: dict[str, np.ndarray] = field(default_factory=dict)
    steps: int = 0
    tokens: int = 0

    def admit(self, rid: str) -> None:
        self.tables[rid] = []
        self.forwarded[rid] = 0
        self.capture.admitted(rid)

    def slot(self, rid: str, pos: int) -> int:
        table = self.tables[rid]
        while len(table) <= pos // BLOCK:
            table.append(self.free_blocks.pop(0))
        return table[pos // BLOCK] * BLOCK + pos % BLOCK

    def plan(self, work: dict[str, int], padding: int) -> tuple[list[int], np.ndarray]:
        """The slots and random routing of one forward: ``work[rid]`` new tokens of each request, then ``padding``
        padding tokens (slot -1)."""
        slots = []
        for rid, n in work.items():
            start = self.forwarded[rid]
            slots += [self.slot(rid, p) for p in range(start, start + n)]
            self.forwarded[rid] = start + n
        slots += [-1] * padding
        return slots, distinct_experts(self.rng, len(slots))

    def remember(self, slots: list[int], ids: np.ndarray) -> None:
        """What the store must now hold: each slot's newest row."""
        for i, s in enumerate(slots):
            if s >= 0:
                self.rows[s] = ids[i]
        self.steps += 1
        self.tokens += len(slots)

    def step(self, work: dict[str, int], padding: int = 0, hooks: bool = False) -> None:
        """One forward: ``work[rid]`` new tokens of each request, then ``padding`` padding tokens (slot -1)."""
        slots, ids = self.plan(work, padding)
        if hooks:  # begin/end: each "layer hook" writes its slice of the shared buffer
            routing, slot_view = self.capture.begin_step()
            for layer in range(LAYERS):
                routing[:len(slots), layer, :] = ids[:, layer, :]
            slot_view[:len(slots)] = slots
            self.capture.end_step(len(slots))
        else:
            self.capture.capture(ids, np.array(slots, dtype=np.int64))
        self.remember(slots, ids)

    def finish(self, rid: str, by_block_table: bool) -> None:
        n = self.forwarded[rid]
        slots = list(slots_from_block_table(self.tables[rid], BLOCK, n))
        self.expected[rid] = np.stack([self.rows[s] for s in slots])
        if by_block_table:
            self.capture.finished(rid, block_table=np.array(self.tables[rid]), block_size=BLOCK, seq_len=n)
        else:
            self.capture.finished(rid, slots=slots)
        self.free(rid)

    def abort(self, rid: str) -> None:
        self.capture.aborted(rid)
        self.free(rid)

    def free(self, rid: str) -> None:
        self.free_blocks += self.tables.pop(rid)
        del self.forwarded[rid]


def export(r3: list[str], store: Path, out: Path) -> dict[str, np.ndarray]:
    done = subprocess.run([*r3, "export", "--store", str(store), "--out", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"r3 export failed ({done.returncode}): {done.stdout}{done.stderr}"
    with open(out / "manifest.tsv", newline="") as f:
        return {row["request_id"]: np.load(out / row["file"]) for row in csv.DictReader(f, delimiter="\t")}


def test_the_store_holds_what_the_engine_wrote(r3: list[str], sidecar: Sidecar, tmp_path: Path) -> None:
    engine = FakeEngine(connect(sidecar), np.random.default_rng(20261126))
    with engine.capture as capture:
        engine.admit("A")
        engine.admit("B")
        engine.step({"A": 9, "B": 5})  # prefill
        engine.admit("C")
        engine.step({"A": 1, "B": 1, "C": 12}, padding=2)  # decode A, B; prefill C
        for k in range(12):  # decode: more steps than buffers, so buffers are reused behind CONSUMED
            engine.step({rid: 1 for rid in list(engine.forwarded)}, padding=k % 3, hooks=k % 2 == 1)
            if k == 4:
                engine.abort("C")
                engine.admit("D")
            if k == 6:
                engine.finish("A", by_block_table=False)
        engine.step({"B": 1, "D": 1})
        engine.finish("B", by_block_table=True)
        engine.finish("D", by_block_table=True)
    assert_stored_as_written(r3, sidecar, engine, tmp_path)


def assert_stored_as_written(r3: list[str], sidecar: Sidecar, engine: FakeEngine, tmp_path: Path) -> None:
    """After A, B, D finished and C aborted: the counts agree, the sidecar exited cleanly, and the exported store holds
    exactly A, B and D with the rows the engine wrote."""
    capture = engine.capture
    summary = capture.close()  # closed already: the same FAREWELL again
    stats = capture.stats
    assert summary is not None, sidecar.log_tail()
    assert (summary.steps, summary.tokens, summary.requests_finished) == (engine.steps, engine.tokens, 3)
    assert stats.steps == engine.steps and stats.dropped_steps == 0 and not stats.detached
    assert sidecar.wait() == 0, sidecar.log_tail()

    stored = export(r3, sidecar.store, tmp_path / "npy")
    assert sorted(stored) == ["A", "B", "D"], "the aborted request C is not stored"
    for rid, routing in engine.expected.items():
        got = stored[rid]
        assert got.shape == routing.shape == (len(routing), LAYERS, TOP_K)
        np.testing.assert_array_equal(got.astype(np.int64), routing.astype(np.int64), err_msg=f"request {rid}")


@pytest.mark.parametrize("policy", ["raise", "drop"])
def test_kill_9_of_the_sidecar_mid_run(sidecar: Sidecar, policy: str) -> None:
    engine = FakeEngine(connect(sidecar, on_failure=policy, ack_timeout_s=20.0), np.random.default_rng(7))
    capture = engine.capture
    engine.admit("A")
    for _ in range(5):
        engine.step({"A": 2})
    sidecar.process.send_signal(signal.SIGKILL)
    sidecar.process.wait(30)
    t0 = time.monotonic()
    if policy == "raise":
        with pytest.raises(SidecarError) as raised:
            for _ in range(10):  # within one ring of buffers at the latest
                engine.step({"A": 1})
        assert "the sidecar closed the connection" in str(raised.value) or "connection failed" in str(raised.value)
        assert raised.value.last_consumed is not None and raised.value.step is not None
        assert f"at step {raised.value.step}" in str(raised.value)
        with pytest.raises(SidecarError):
            capture.close()
    else:
        for _ in range(20):
            engine.step({"A": 1})
            engine.capture.admitted("more")
        stats = capture.stats
        assert stats.detached and stats.steps == 25
        assert 17 <= stats.dropped_steps <= 20, stats
        assert capture.close() is None
    assert time.monotonic() - t0 < 10.0, "losing the sidecar never costs the ack timeout"


def test_an_expert_id_out_of_range_is_a_missing_row_and_the_session_goes_on(sidecar: Sidecar) -> None:
    """Issue 21, case 4: one bad id fails that row, not the session; the engine hears of it as a step fault."""
    errors = []
    capture = connect(sidecar, buffers=2, on_request_error=errors.append)
    ids = distinct_experts(np.random.default_rng(4), 3)
    ids[1, 2, 1] = EXPERTS  # one past the last expert
    capture.admitted("r")
    capture.capture(ids, np.array([0, 1, 2]))
    capture.capture(distinct_experts(np.random.default_rng(5), 1), np.array([3]))
    capture.finished("r", slots=[0, 1, 2, 3])
    farewell = capture.close()
    assert farewell is not None and farewell.requests_finished == 1, sidecar.log_tail()
    assert sidecar.wait() == 0, sidecar.log_tail()
    assert [e.code for e in errors] == [2] and "1 expert id out of range (first at token 1)" in errors[0].message, errors
    assert capture.stats.request_errors == 1
    from test_trainer_client import Server  # the live r3 serve helper

    server = Server(sidecar.store)
    try:
        got, reasons = ReplayClient(server.url).fetch("r", dtype="int64", return_reasons=True)
    finally:
        server.stop()
    assert reasons == {"invalid-id": 1}
    np.testing.assert_array_equal(got[1], -1)
    np.testing.assert_array_equal(got[[0, 2]], ids[[0, 2]].astype(np.int64))
