"""RoutingCapture on the host backend against a fake sidecar (tests/fake_sidecar.py) over a real Unix socket."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from typing import Iterator

import numpy as np
import pytest

from fake_sidecar import FakeSidecar
from r3 import protocol
from r3.engine import RoutingCapture, SidecarError, slots_from_block_table

pytestmark = pytest.mark.timeout(60)

LAYERS, TOP_K, EXPERTS, MAX_TOKENS = 3, 2, 16, 32


@pytest.fixture
def sidecars(socket_path: str) -> Iterator[list[FakeSidecar]]:
    made: list[FakeSidecar] = []
    yield made
    for s in made:
        s.stop()


@pytest.fixture
def start(socket_path: str, sidecars: list[FakeSidecar]):
    def start(**knobs) -> FakeSidecar:
        s = FakeSidecar(socket_path, **knobs)
        sidecars.append(s)
        return s
    return start


def connect(path: str, **overrides) -> RoutingCapture:
    args = dict(layers=LAYERS, top_k=TOP_K, num_experts=EXPERTS, max_tokens=MAX_TOKENS, device="host", buffers=2,
                ack_timeout_s=5.0, connect_timeout_s=5.0, engine_name="test-engine")
    args.update(overrides)
    return RoutingCapture.connect(path, **args)


def random_step(rng: np.random.Generator, n: int, dtype=np.int32) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, EXPERTS, (n, LAYERS, TOP_K)).astype(dtype), rng.permutation(1000)[:n].astype(np.int64)


# ------------------------------------------------------------------------------------------------------- handshake


def test_steps_reach_the_sidecar_as_written_and_close_returns_the_farewell(start, socket_path: str) -> None:
    sidecar = start()
    rng = np.random.default_rng(1)
    written = []
    with connect(socket_path, id_dtype="int64", slot_dtype=np.int32) as capture:
        assert capture.store == "/fake/store"
        for k in range(9):
            ids, slots = random_step(rng, int(rng.integers(0, MAX_TOKENS + 1)), np.int64 if k % 2 else np.int32)
            assert capture.capture(ids, slots) == k
            written.append((ids, slots))
        routing, slot_view = capture.begin_step()
        routing[:4] = 7
        slot_view[:4] = [10, 11, -1, 13]
        assert capture.end_step(4, step_id=100) == 100
        assert capture.capture(*random_step(rng, 1)) == 101, "without an id the step after 100 is 101"
        summary = capture.close()
        assert summary == protocol.Farewell(steps=11, tokens=sum(len(s) for _, s in written) + 4 + 1,
                                            requests_finished=0)
        assert capture.close() is summary, "close is idempotent"
    hello = sidecar.hello
    assert (hello.layers, hello.top_k, hello.num_experts, hello.max_tokens, hello.id_bytes, hello.slot_bytes,
            hello.backend, hello.engine_name, len(hello.buffers)) == (LAYERS, TOP_K, EXPERTS, MAX_TOKENS, 8, 4, 0,
                                                                      "test-engine", 2)
    assert [s.step_id for s in sidecar.steps] == list(range(9)) + [100, 101]
    assert [s.buffer for s in sidecar.steps] == [k % 2 for k in range(11)], "step k uses buffer k mod N"
    for seen, (ids, slots) in zip(sidecar.steps, written):
        np.testing.assert_array_equal(seen.routing, ids)
        np.testing.assert_array_equal(seen.slots, slots)
    np.testing.assert_array_equal(sidecar.steps[9].routing, np.full((4, LAYERS, TOP_K), 7))
    np.testing.assert_array_equal(sidecar.steps[9].slots, [10, 11, -1, 13])
    assert sidecar.got_goodbye
    path = hello.buffers[0].routing_handle.decode()
    assert not os.path.exists(path), "the mapped file is unlinked on close"
    assert os.path.dirname(path) == ("/dev/shm" if os.access("/dev/shm", os.W_OK) else os.path.dirname(path))


def test_end_step_copies_a_slot_mapping_given_after_the_forward(start, socket_path: str) -> None:
    sidecar = start()
    rng = np.random.default_rng(3)
    written = []
    with connect(socket_path) as capture:
        for k in range(5):
            ids, slots = random_step(rng, int(rng.integers(1, MAX_TOKENS + 1)))
            routing, slot_view = capture.begin_step()
            slot_view[:] = 99  # stale values: end_step's slot mapping replaces the first num_tokens of them
            routing[:len(ids)] = ids
            capture.end_step(len(ids), slot_mapping=slots)
            written.append((ids, slots))
        routing, _ = capture.begin_step()
        with pytest.raises(ValueError, match=r"slot mapping of shape \[3\] \(num_tokens\).*got float64 \[3\]"):
            capture.end_step(3, slot_mapping=np.zeros(3))
        with pytest.raises(ValueError, match=r"slot mapping of shape \[3\].*got int64 \[2\]"):
            capture.end_step(3, slot_mapping=np.zeros(2, dtype=np.int64))
        capture.end_step(0)
        capture.close()
    assert len(sidecar.steps) == 6, "a refused slot mapping sends nothing"
    for seen, (ids, slots) in zip(sidecar.steps, written):
        np.testing.assert_array_equal(seen.routing, ids)
        np.testing.assert_array_equal(seen.slots, slots)


def test_the_engine_blocks_on_buffer_reuse_until_consumed_and_meters_the_wait(start, socket_path: str) -> None:
    release = threading.Event()
    order: list[str] = []

    def hold(step: int) -> None:
        if step == 0:
            assert release.wait(10), "the test never released step 0"
            order.append("consumed 0")

    start(before_consume=hold)
    with connect(socket_path, buffers=2) as capture:
        capture.begin_step(), capture.end_step(1)  # step 0 in buffer 0, held by the sidecar
        capture.begin_step(), capture.end_step(1)  # step 1 in buffer 1: free, no wait
        assert capture.stats.waits == 0
        threading.Timer(0.3, lambda: (order.append("release"), release.set())).start()
        t0 = time.monotonic()
        routing, _ = capture.begin_step()  # buffer 0 again: blocks until CONSUMED(0)
        waited = time.monotonic() - t0
        order.append("begun")
        capture.end_step(0)
        stats = capture.stats
    assert order == ["release", "consumed 0", "begun"]
    assert waited >= 0.25
    assert stats.waits == 1 and stats.steps == 3 and stats.last_consumed in (0, 1)
    assert stats.wait_seconds.count == 3
    assert 0.25 <= stats.wait_seconds.total <= waited + 0.01
    assert stats.wait_seconds.p50 == 0.0, "two of three steps did not wait"
    assert 0.2 <= stats.wait_seconds.p99 <= waited * 1.1
    assert stats.call_seconds.count == 6 and stats.call_seconds.p99 < 0.2, "the wait is not call time"


def test_no_wait_when_the_sidecar_keeps_up(start, socket_path: str) -> None:
    start()
    rng = np.random.default_rng(2)
    with connect(socket_path, buffers=4) as capture:
        for _ in range(40):
            capture.capture(*random_step(rng, 8))
            time.sleep(0.01)  # the engine's forward: the sidecar consumes meanwhile
        stats = capture.stats
    assert stats.waits == 0 and stats.wait_seconds.total == 0.0 and stats.steps == 40
    assert stats.call_seconds.p50 > 0.0


def test_consumed_messages_are_drained_so_a_long_run_never_fills_the_socket(start, socket_path: str) -> None:
    sidecar = start()
    with connect(socket_path, buffers=64) as capture:
        for k in range(3000):
            capture.begin_step()
            capture.end_step(1)
            if k % 7 == 0:
                capture.admitted(f"r{k}")
        assert capture.close().steps == 3000
    assert len(sidecar.steps) == 3000


def test_a_slow_sidecar_slows_the_engine_and_loses_nothing(start, socket_path: str) -> None:
    sidecar = start(delay_s=0.05)
    rng = np.random.default_rng(3)
    written = []
    with connect(socket_path, buffers=2) as capture:
        for _ in range(8):
            written.append(random_step(rng, 5))
            capture.capture(*written[-1])
        stats = capture.stats
    assert stats.waits >= 4
    assert stats.wait_seconds.total >= 0.15
    for seen, (ids, slots) in zip(sidecar.steps, written, strict=True):
        np.testing.assert_array_equal(seen.routing, ids)
        np.testing.assert_array_equal(seen.slots, slots)


# -------------------------------------------------------------------------------------------------------- failures


def test_a_sidecar_that_dies_raises_naming_the_step_and_the_last_consumed(start, socket_path: str) -> None:
    start(die_at_step=3)
    capture = connect(socket_path, buffers=2)
    for _ in range(3):
        capture.capture(*random_step(np.random.default_rng(), 2))
    capture.begin_step()
    capture.end_step(2)  # STEP 3: the sidecar closes on it
    with pytest.raises(SidecarError) as raised:
        for _ in range(10):  # at the latest when buffer 1 (step 3's) is needed again
            capture.begin_step()
            capture.end_step(1)
    e = raised.value
    assert "the sidecar closed the connection" in str(e)
    assert "last step consumed: 2" in str(e) and e.last_consumed == 2 and e.code is None
    assert e.step is not None and "at step" in str(e)
    with pytest.raises(SidecarError, match="closed the connection"):
        capture.admitted("later")
    with pytest.raises(SidecarError):
        capture.close()
    assert capture.close() is None, "closed: the second close has nothing to say"


def test_a_sidecar_that_dies_under_drop_detaches_counts_and_never_waits(start, socket_path: str, caplog) -> None:
    start(die_at_step=2)
    rng = np.random.default_rng(4)
    caplog.set_level(logging.WARNING, logger="r3.engine")
    capture = connect(socket_path, buffers=2, on_failure="drop", ack_timeout_s=30.0)
    t0 = time.monotonic()
    for _ in range(20):
        capture.capture(*random_step(rng, 3))
        routing, slots = capture.begin_step()
        routing[:1] = 1  # the views stay writable for the hooks
        slots[:1] = 5
        capture.end_step(1)
        capture.finished("r", [1, 2])
    assert time.monotonic() - t0 < 5.0, "a detached capture never waits (ack_timeout_s is 30 s)"
    stats = capture.stats
    assert stats.detached and capture.detached
    assert stats.steps == 40
    assert 36 <= stats.dropped_steps <= 38, stats  # steps 0, 1 consumed; 2 sent into the void (and maybe 3)
    assert stats.last_consumed == 1
    lost = [r for r in caplog.records if "detached" in r.getMessage()]
    assert len(lost) == 1, "the detach is logged once"
    assert capture.close() is None


def test_failed_raises_with_the_sidecars_message(start, socket_path: str) -> None:
    start(fail_at_step=1)
    capture = connect(socket_path, buffers=1)
    capture.capture(*random_step(np.random.default_rng(), 2))
    capture.capture(*random_step(np.random.default_rng(), 2))  # step 1: FAILED
    with pytest.raises(SidecarError) as raised:
        capture.capture(*random_step(np.random.default_rng(), 2))  # buffer 0 needed again: waits for CONSUMED(1)
    e = raised.value
    assert e.code == 3
    assert "FAILED code 3 (pipeline): expert id 300 out of range (num_experts 64) at token 3, layer 1" in str(e)
    assert "last step consumed: 0" in str(e)
    with pytest.raises(SidecarError, match="expert id 300"):
        capture.close()


def test_failed_under_drop_detaches(start, socket_path: str) -> None:
    start(fail_at_step=0)
    with connect(socket_path, buffers=1, on_failure="drop") as capture:
        for _ in range(5):
            capture.capture(*random_step(np.random.default_rng(), 2))
        assert capture.detached and capture.stats.dropped_steps == 4
    assert capture.close() is None


def test_no_consumed_within_the_ack_timeout_raises(start, socket_path: str) -> None:
    start(ack=False)
    capture = connect(socket_path, buffers=1, ack_timeout_s=0.3)
    capture.capture(*random_step(np.random.default_rng(), 2))
    t0 = time.monotonic()
    with pytest.raises(SidecarError, match=r"at step 1 \(last step consumed: none yet\): no CONSUMED of step 0 "
                                           r"\(buffer 0\) within ack_timeout_s=0.3s"):
        capture.begin_step()
    assert 0.25 <= time.monotonic() - t0 < 2.0
    assert capture.stats.waits == 1 and capture.stats.wait_seconds.total >= 0.25
    with pytest.raises(SidecarError):
        capture.close()


def test_no_consumed_within_the_ack_timeout_under_drop_detaches(start, socket_path: str) -> None:
    start(ack=False)
    with connect(socket_path, buffers=1, ack_timeout_s=0.2, on_failure="drop") as capture:
        capture.capture(*random_step(np.random.default_rng(), 2))
        capture.capture(*random_step(np.random.default_rng(), 2))  # waits 0.2 s, detaches, the step is dropped
        t0 = time.monotonic()
        for _ in range(10):
            capture.capture(*random_step(np.random.default_rng(), 2))
        assert time.monotonic() - t0 < 0.2
        assert capture.stats.dropped_steps == 11
    assert capture.close() is None


def test_a_consumed_for_another_step_is_a_protocol_error(start, socket_path: str) -> None:
    start(wrong_consumed=True)
    capture = connect(socket_path, buffers=1)
    capture.capture(*random_step(np.random.default_rng(), 1), step_id=4)
    with pytest.raises(SidecarError, match=r"protocol error from the sidecar: CONSUMED\(step 5, buffer 0\) but that "
                                           r"buffer holds step 4") as raised:
        capture.begin_step()
    assert raised.value.code == 1
    with pytest.raises(SidecarError):
        capture.close()


def test_connect_fails_when_no_sidecar_listens(socket_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []

    def mkstemp(*args, **kwargs):
        fd, path = real_mkstemp(*args, **kwargs)
        made.append(path)
        return fd, path

    real_mkstemp = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    t0 = time.monotonic()
    with pytest.raises(SidecarError, match="no sidecar listening at .* within connect_timeout_s=0.3s"):
        connect(socket_path, connect_timeout_s=0.3)
    assert time.monotonic() - t0 < 2.0
    assert len(made) == 1 and os.path.basename(made[0]).startswith("r3-engine-")
    assert os.path.dirname(made[0]) == ("/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir())
    assert not os.path.exists(made[0]), "the buffers' file is unlinked when connect fails"


def test_a_busy_sidecar_refuses_with_its_message(start, socket_path: str) -> None:
    start(busy=True)
    with pytest.raises(SidecarError, match=r"FAILED code 4 \(busy\): another engine is connected") as e:
        connect(socket_path)
    assert e.value.code == 4


def test_a_sidecar_that_stops_reading_holds_the_engine_back_then_takes_everything(start, socket_path: str) -> None:
    sidecar = start(stall_s=0.5)
    slots = list(range(1_000_000))  # 4 MB: far more than the socket buffers hold
    with connect(socket_path) as capture:
        t0 = time.monotonic()
        capture.finished("long", slots)
        assert time.monotonic() - t0 >= 0.3, "the send waited for the sidecar to read"
        capture.close()
    assert sidecar.lifecycle()[0] == protocol.Finished("long", tuple(slots))


def test_a_sidecar_that_never_reads_again_is_lost_after_the_ack_timeout(start, socket_path: str) -> None:
    start(stall_s=3.0)
    capture = connect(socket_path, ack_timeout_s=0.3)
    with pytest.raises(SidecarError, match=r"the sidecar read nothing for ack_timeout_s=0.3s \(socket full\)"):
        capture.finished("long", range(1_000_000))
    with pytest.raises(SidecarError):
        capture.close()


def test_connect_waits_for_a_sidecar_that_starts_late(socket_path: str, sidecars: list[FakeSidecar]) -> None:
    threading.Timer(0.3, lambda: sidecars.append(FakeSidecar(socket_path))).start()
    with connect(socket_path, connect_timeout_s=5.0) as capture:
        capture.capture(*random_step(np.random.default_rng(), 1))
        assert capture.close().steps == 1


def test_a_refused_hello_raises_with_the_sidecars_message(start, socket_path: str) -> None:
    start(refuse_hello=(2, "top_k 2 does not match the store's 8"))
    with pytest.raises(SidecarError, match=r"refused the HELLO: FAILED code 2 \(hello\): top_k 2 does not match") as e:
        connect(socket_path, on_failure="drop")
    assert e.value.code == 2


# ------------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("ids, slots, message", [
    (np.zeros((4, LAYERS, TOP_K), np.float16), np.zeros(4, np.int64),
     "expected int32 or int64 topk ids of shape [tokens, 3, 2] on cpu, got float16 [4, 3, 2] on cpu"),
    (np.zeros((4, LAYERS, 5), np.int32), np.zeros(4, np.int64),
     "expected int32 or int64 topk ids of shape [tokens, 3, 2] on cpu, got int32 [4, 3, 5] on cpu"),
    (np.zeros((4, LAYERS * TOP_K), np.int32), np.zeros(4, np.int64),
     "expected int32 or int64 topk ids of shape [tokens, 3, 2] on cpu, got int32 [4, 6] on cpu"),
    (np.zeros((MAX_TOKENS + 1, LAYERS, TOP_K), np.int32), np.zeros(MAX_TOKENS + 1, np.int64),
     "expected int32 or int64 topk ids of shape [tokens, 3, 2] with tokens <= max_tokens 32 on cpu, "
     "got int32 [33, 3, 2] on cpu"),
    (np.zeros((4, LAYERS, TOP_K), np.int32), np.zeros(5, np.int64),
     "expected int32 or int64 slot mapping of shape [4] (one slot per token of the topk ids) on cpu, "
     "got int64 [5] on cpu"),
    (np.zeros((4, LAYERS, TOP_K), np.int32), np.zeros((4, 1), np.int64),
     "expected int32 or int64 slot mapping of shape [4] (one slot per token of the topk ids) on cpu, "
     "got int64 [4, 1] on cpu"),
    (np.zeros((4, LAYERS, TOP_K), np.int32), np.zeros(4, np.float32),
     "expected int32 or int64 slot mapping of shape [4] (one slot per token of the topk ids) on cpu, "
     "got float32 [4] on cpu"),
    ([[[0, 1]] * LAYERS], np.zeros(1, np.int64),
     "expected int32 or int64 topk ids of shape [tokens, 3, 2] on cpu, got list"),
])
def test_bad_step_tensors_are_refused_naming_the_tensor(start, socket_path: str, ids, slots, message: str) -> None:
    sidecar = start()
    with connect(socket_path) as capture:
        with pytest.raises(ValueError) as raised:
            capture.capture(ids, slots)
        assert str(raised.value) == message
        assert capture.stats.steps == 0
    assert sidecar.steps == [], "nothing was sent"


class _CudaTensorLike:
    """What validation sees of a CUDA tensor: dtype, shape and device (no torch here)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.dtype, self.shape, self.device = "torch.int32", shape, "cuda:0"


def test_a_tensor_on_another_device_is_refused(start, socket_path: str) -> None:
    start()
    with connect(socket_path) as capture:
        with pytest.raises(ValueError, match=r"^expected int32 or int64 topk ids of shape \[tokens, 3, 2\] on cpu, "
                                             r"got int32 \[4, 3, 2\] on cuda:0$"):
            capture.capture(_CudaTensorLike((4, LAYERS, TOP_K)), np.zeros(4, np.int64))
        with pytest.raises(ValueError, match=r"slot mapping of shape \[4\] .* got int32 \[4\] on cuda:0$"):
            capture.capture(np.zeros((4, LAYERS, TOP_K), np.int32), _CudaTensorLike((4,)))


def test_bad_arguments_are_refused_by_name(start, socket_path: str) -> None:
    start()
    with pytest.raises(ValueError, match="buffers must be in 1..64, got 65"):
        connect(socket_path, buffers=65)
    with pytest.raises(ValueError, match='on_failure must be "raise" or "drop"'):
        connect(socket_path, on_failure="ignore")
    with pytest.raises(ValueError, match='transport must be "ipc" or "pinned", got \'shm\''):
        connect(socket_path, transport="shm")
    with pytest.raises(ValueError, match='transport="pinned" is for a CUDA device; device="host" already shares'):
        connect(socket_path, transport="pinned")
    with pytest.raises(ValueError, match="id_dtype must be int32 or int64 for the host backend, got int16"):
        connect(socket_path, id_dtype="int16")
    with connect(socket_path) as capture:
        with pytest.raises(RuntimeError, match="end_step without begin_step"):
            capture.end_step(1)
        capture.begin_step()
        with pytest.raises(RuntimeError, match="begin_step called twice"):
            capture.begin_step()
        with pytest.raises(ValueError, match="num_tokens must be in 0..32, got 33"):
            capture.end_step(MAX_TOKENS + 1)
        capture.end_step(0)
        with pytest.raises(ValueError, match="either slots or block_table"):
            capture.finished("r")
        with pytest.raises(ValueError, match="needs block_size and seq_len"):
            capture.finished("r", block_table=[1])
    with pytest.raises(RuntimeError, match="the capture is closed"):
        capture.begin_step()


# ------------------------------------------------------------------------------------------------------- lifecycle


def test_slots_from_a_block_table() -> None:
    assert list(slots_from_block_table([3, 0, 7], 4, 10)) == [12, 13, 14, 15, 0, 1, 2, 3, 28, 29]
    assert list(slots_from_block_table(np.array([5, 2]), 16, 16)) == list(range(80, 96))
    assert list(slots_from_block_table([5], 16, 0)) == []
    with pytest.raises(ValueError, match="block_table has 2 blocks of 4 \\(8 positions\\), seq_len 9 needs 3"):
        slots_from_block_table([1, 2], 4, 9)
    with pytest.raises(ValueError, match="block_size must be positive"):
        slots_from_block_table([1], 0, 1)
    with pytest.raises(ValueError, match="block_table\\[0\\] is -1"):
        slots_from_block_table([-1], 4, 1)
    with pytest.raises(ValueError, match="outside int32"):
        slots_from_block_table([2**30], 16, 1)


def test_lifecycle_messages_arrive_in_engine_order(start, socket_path: str) -> None:
    sidecar = start()
    with connect(socket_path) as capture:
        capture.admitted("req-1")
        capture.capture(*random_step(np.random.default_rng(), 3))
        capture.finished("req-1", slots=np.array([4, 5, 6]))
        capture.finished("req-2", block_table=[2, 9], block_size=4, seq_len=6)
        capture.aborted("req-3")
        capture.slots_moved([1, 2], [30, 31])
        capture.round_cleared(5)
        big = list(range(200_000))  # 800 kB: more than the socket buffer holds at once
        capture.finished("req-4", big)
        summary = capture.close()
    assert summary.requests_finished == 3
    assert sidecar.lifecycle() == [
        protocol.Admitted("req-1"),
        protocol.Finished("req-1", (4, 5, 6)),
        protocol.Finished("req-2", (8, 9, 10, 11, 36, 37)),
        protocol.Aborted("req-3"),
        protocol.SlotsMoved((1, 2), (30, 31)),
        protocol.RoundCleared(5),
        protocol.Finished("req-4", tuple(big)),
        protocol.Goodbye(),
    ]
    kinds = [type(m).__name__ for m in sidecar.messages]
    assert kinds.index("Step") < kinds.index("Finished"), "the step before the finish arrives before it"


def test_close_with_an_exception_in_flight_keeps_that_exception(start, socket_path: str) -> None:
    start(die_at_step=0)
    with pytest.raises(KeyError):
        with connect(socket_path, buffers=1) as capture:
            capture.capture(*random_step(np.random.default_rng(), 1))
            raise KeyError("the engine's own error")
    assert capture.closed


def test_a_cuda_device_without_pytorch_says_so(socket_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="device='cuda:0' needs PyTorch, which cannot be imported here"):
        connect(socket_path, device="cuda:0")
