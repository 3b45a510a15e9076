"""The routing contract (docs/contract.md) through ``r3.engine`` and a live ``r3 sidecar --backend host``, read back
through a live ``r3 serve`` with ``r3.trainer``: issue 21's misuse cases, each its own test, and a property test that
drives random interleavings of admit, step, finish, abort, move and round clear with misuse injected at random
against an oracle written from the contract.

Skipped, saying why, without this build's r3 class path (as test_sidecar_integration.py). Every child has a deadline.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import r3_build
from r3.engine import RoutingCapture
from r3.protocol import RequestError
from r3.trainer import ReplayClient, RequestInfo
from test_sidecar_integration import Sidecar, r3, run_sidecar  # noqa: F401
from test_trainer_client import CLASSPATH, Server

__all__ = ["r3"]
pytestmark = pytest.mark.timeout(300)

LAYERS, TOP_K, EXPERTS, MAX_TOKENS, SLOTS = 3, 2, 16, 16, 96


@pytest.fixture
def sidecar(r3: list[str], short_dir: str, tmp_path: Path) -> Iterator[Sidecar]:  # noqa: F811
    """``r3 sidecar --backend host --once --slots 96``, so slots out of range are easy to name."""
    if not CLASSPATH:
        pytest.skip(f"{r3_build.NO_CLASSPATH}: r3 serve cannot start")
    yield from run_sidecar(r3, short_dir, tmp_path, "--slots", str(SLOTS))


def connect(s: Sidecar) -> RoutingCapture:
    return RoutingCapture.connect(s.socket, layers=LAYERS, top_k=TOP_K, num_experts=EXPERTS, max_tokens=MAX_TOKENS,
                                  device="host", buffers=3, ack_timeout_s=30.0, connect_timeout_s=90.0,
                                  engine_name="pytest-contract")


def rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """``[n, LAYERS, TOP_K]`` int32 with distinct experts in each layer, as a real gate's."""
    return np.argsort(rng.random((n, LAYERS, EXPERTS)), axis=-1)[..., :TOP_K].astype(np.int32)


def served(store: Path) -> tuple[list[RequestInfo], dict[int, tuple[np.ndarray, dict[str, int]]]]:
    """The listing and every record (by ordinal) as int64 with its missing-row reasons, from a live ``r3 serve``."""
    server = Server(store)
    try:
        client = ReplayClient(server.url)
        listing = client.list_requests()
        records = {info.ordinal: client.fetch(info, dtype="int64", return_reasons=True) for info in listing}
        by_id = {info.request_id: client.fetch(info.request_id, dtype="int64") for info in listing}
        return listing, {**records, **{f"id:{k}": (v, {}) for k, v in by_id.items()}}  # type: ignore[dict-item]
    finally:
        server.stop()


def finish_session(capture: RoutingCapture, sidecar: Sidecar) -> None:
    farewell = capture.close()
    assert farewell is not None, sidecar.log_tail()
    assert sidecar.wait() == 0, sidecar.log_tail()


def test_a_request_finished_twice_in_a_round_is_stored_again_and_supersedes_the_first(sidecar: Sidecar) -> None:
    """Case 1: a retry that reuses the id is a second record; by id, the newer; the listing marks the older."""
    rng = np.random.default_rng(1)
    capture = connect(sidecar)
    first, second = rows(rng, 5), rows(rng, 6)
    capture.admitted("retry")
    capture.capture(first, np.arange(5))
    capture.finished("retry", slots=list(range(5)))
    capture.admitted("retry")
    capture.capture(second, np.arange(10, 16))
    capture.finished("retry", slots=list(range(10, 16)))
    finish_session(capture, sidecar)
    listing, got = served(sidecar.store)
    assert [(i.request_id, i.seq_len) for i in listing] == [("retry", 5), ("retry", 6)]
    assert listing[0].superseded_by == listing[1].ordinal and listing[1].superseded_by is None
    np.testing.assert_array_equal(got[listing[0].ordinal][0], first)
    np.testing.assert_array_equal(got["id:retry"][0], second)
    assert "finished again in round 0" in sidecar.log_tail()


def test_rows_a_request_never_wrote_are_missing_never_another_requests(sidecar: Sidecar) -> None:
    """Case 2: a request with no step in its lifetime, finished on slots an earlier request wrote."""
    rng = np.random.default_rng(2)
    capture = connect(sidecar)
    capture.admitted("earlier")
    capture.capture(rows(rng, 4), np.arange(4))
    capture.finished("earlier", slots=[0, 1, 2, 3])
    capture.admitted("never-stepped")
    capture.finished("never-stepped", slots=[0, 1, 2, 3, 50])
    capture.admitted("turn-2", cached_tokens=4)  # the same slots, declared as a prefix-cache hit: they are its rows
    capture.capture(rows(rng, 1), np.array([4]))
    capture.finished("turn-2", slots=[0, 1, 2, 3, 4])
    finish_session(capture, sidecar)
    listing, got = served(sidecar.store)
    by_name = {i.request_id: i for i in listing}
    assert by_name["never-stepped"].missing_reasons == {"before-admission": 4, "never-written": 1}
    np.testing.assert_array_equal(got[by_name["never-stepped"].ordinal][0], -1)
    assert by_name["turn-2"].missing_rows == 0
    np.testing.assert_array_equal(got[by_name["turn-2"].ordinal][0][:4], got[by_name["earlier"].ordinal][0])


def test_a_row_naming_one_expert_twice_is_a_missing_row(sidecar: Sidecar) -> None:
    """Case 3: store and replay agree: a duplicate expert is never served as routing."""
    ids = rows(np.random.default_rng(3), 3)
    ids[1, 0, 1] = ids[1, 0, 0]
    capture = connect(sidecar)
    capture.admitted("dup")
    capture.capture(ids, np.arange(3))
    capture.finished("dup", slots=[0, 1, 2])
    finish_session(capture, sidecar)
    listing, got = served(sidecar.store)
    routing, reasons = got[listing[0].ordinal]
    assert reasons == {"duplicate-expert": 1}
    np.testing.assert_array_equal(routing[1], -1)
    np.testing.assert_array_equal(routing[[0, 2]], ids[[0, 2]])


def test_slots_out_of_range_fail_their_rows_not_the_session(sidecar: Sidecar) -> None:
    """Case 5: a slot past --slots in a step drops that token's row and is told; in a finish it is a bad-slot row."""
    rng = np.random.default_rng(5)
    errors: list[RequestError] = []
    capture = connect(sidecar)
    capture.admitted("a")
    capture.capture(rows(rng, 3), np.array([0, 100, 2]))
    capture.admitted("b")
    good = rows(rng, 2)
    capture.capture(good, np.array([10, 11]))
    capture.finished("b", slots=[10, 11, SLOTS + 5])
    errors += capture.request_errors()
    capture.aborted("a")  # what the step fault asks: a's token 1 went nowhere
    finish_session(capture, sidecar)
    errors += capture.request_errors()
    assert [(e.code, e.request_id) for e in errors] == [(2, "")], errors
    assert "1 slot mapping entry out of range (token 1 = 100)" in errors[0].message
    listing, got = served(sidecar.store)
    assert [i.request_id for i in listing] == ["b"]
    routing, reasons = got[listing[0].ordinal]
    assert reasons == {"bad-slot": 1}
    np.testing.assert_array_equal(routing[:2], good)


def test_a_finish_or_abort_of_an_unknown_id_is_that_requests_error(sidecar: Sidecar) -> None:
    """Case 6: the session goes on; the engine polls the error, its step loop never raises."""
    rng = np.random.default_rng(6)
    seen: list[RequestError] = []
    capture = RoutingCapture.connect(sidecar.socket, layers=LAYERS, top_k=TOP_K, num_experts=EXPERTS, max_tokens=MAX_TOKENS,
                                     device="host", buffers=3, connect_timeout_s=90.0, on_request_error=seen.append)
    capture.finished("ghost-f", slots=[0])
    capture.aborted("ghost-a")
    capture.admitted("real")
    ids = rows(rng, 2)
    capture.capture(ids, np.array([0, 1]))
    capture.finished("real", slots=[0, 1])
    finish_session(capture, sidecar)
    assert [(e.code, e.request_id) for e in seen] == [(1, "ghost-f"), (1, "ghost-a")]
    assert "'ghost-f' finished but not live" in seen[0].message
    assert capture.stats.request_errors == 2
    listing, got = served(sidecar.store)
    assert [i.request_id for i in listing] == ["real"]
    np.testing.assert_array_equal(got[listing[0].ordinal][0], ids)


def test_the_trainer_docs_first_example_returns_a_row_for_every_forwarded_token(sidecar: Sidecar) -> None:
    """Case 15: docs/trainer.md's first fetch, run as written, against a request of 3 prompt + 2 generated tokens: 4 rows
    (the final generated token was never forwarded), each the engine's; the docs' old ``drop_last=True`` gave 3."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "trainer.md").read_text()
    block = re.search(r"```python\n(.*?)```", docs, re.S)
    assert block, "docs/trainer.md starts with a python example"
    line = next(x for x in block.group(1).splitlines() if "client.fetch(" in x)
    call = line.split("=", 1)[1].split("#")[0].strip()
    request_id = re.search(r'fetch\("([^"]+)"', call).group(1)
    rng = np.random.default_rng(15)
    prompt, first_generated = rows(rng, 3), rows(rng, 1)
    capture = connect(sidecar)
    capture.admitted(request_id)
    capture.capture(prompt, np.array([0, 1, 2]))  # prefill: samples generated token 1
    capture.capture(first_generated, np.array([3]))  # decode: token 1 in, samples token 2, the final one
    capture.finished(request_id, slots=[0, 1, 2, 3])
    finish_session(capture, sidecar)
    server = Server(sidecar.store)
    try:
        routing = eval(call, {"client": ReplayClient(server.url)})  # noqa: S307 - the docs' own line
    finally:
        server.stop()
    np.testing.assert_array_equal(routing, np.concatenate([prompt, first_generated]).astype(np.int64))


# ---------------------------------------------------------------------------------------------------- property test

@dataclass
class Req:
    rid: str
    admitted_at: int
    cached: int
    slots: list[int] = field(default_factory=list)
    truth: list = field(default_factory=list)
    faulted: bool = False


@dataclass
class Expected:
    rows: list
    reasons: list
    clean: bool


class Scenario:
    """The engine and the contract's oracle (a port of ContractPropertyTest's): per slot the step and round that last
    wrote it, its state and row, whether a finish took it since; per request its admission and cached prefix."""

    def __init__(self, seed: int, capture: RoutingCapture) -> None:
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.capture = capture
        self.stamp = [0] * SLOTS
        self.round_of = [0] * SLOTS
        self.state: list = [None] * SLOTS
        self.row: list = [None] * SLOTS
        self.gathered = [0] * SLOTS
        self.live: dict[str, Req] = {}
        self.free = list(range(SLOTS))
        self.donors: list[tuple[list[int], list]] = []
        self.finished_this_round: list[str] = []
        self.expected: dict[str, list[Expected]] = {}
        self.ghosts: list[str] = []
        self.lost_rows = 0
        self.steps = 0
        self.round = 0
        self.next_id = 0
        self.injected: dict[str, int] = {}

    def inject(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def verdict(self, r: Req, p: int, slot: int) -> str | None:
        if slot < 0 or slot >= SLOTS:
            return "bad-slot"
        if self.stamp[slot] == 0:
            return "never-written"
        if self.round_of[slot] != self.round:
            return "stale-round"
        if p >= r.cached and self.stamp[slot] <= r.admitted_at:
            return "before-admission"
        if p >= r.cached and self.gathered[slot] >= self.stamp[slot]:
            return "reused-slot"
        return self.state[slot]

    def play(self, events: int) -> None:
        for _ in range(events):
            dice = self.rng.randrange(100)
            if dice < 15:
                self.admit()
            elif dice < 62:
                self.step()
            elif dice < 82:
                self.finish()
            elif dice < 87:
                self.abort()
            elif dice < 93:
                self.move()
            elif dice < 97:
                self.unknown()
            else:
                self.clear()

    def admit(self) -> None:
        if len(self.live) >= 8:
            return
        if self.finished_this_round and self.rng.randrange(8) == 0:
            rid = self.finished_this_round.pop(self.rng.randrange(len(self.finished_this_round)))
            self.inject("reused-id")
        else:
            rid = f"r{self.next_id}"
            self.next_id += 1
        cached_slots, cached_rows = [], []
        if self.donors and self.rng.randrange(3) == 0:
            slots, truth = self.donors[self.rng.randrange(len(self.donors))]
            c = 1 + self.rng.randrange(len(slots))
            cached_slots, cached_rows = slots[:c], truth[:c]
        r = Req(rid, self.steps, len(cached_slots), list(cached_slots), list(cached_rows))
        self.live[rid] = r
        self.capture.admitted(rid, cached_tokens=r.cached)

    def step(self) -> None:
        order = list(self.live.values())
        self.rng.shuffle(order)
        stamp = self.steps + 1
        mapping, sent, lost = [], [], []
        for r in order[:3]:
            for _ in range(1 + self.rng.randrange(4)):
                if len(mapping) >= MAX_TOKENS - 2 or not self.free:
                    break
                slot = self.free.pop(0)
                row = rows(self.np, 1)[0]
                r.slots.append(slot)
                r.truth.append(row)
                out = row.copy()
                fault = self.rng.randrange(40)
                word = slot
                if fault == 0:
                    out[self.rng.randrange(LAYERS), self.rng.randrange(TOP_K)] = EXPERTS + self.rng.randrange(3)
                    self.inject("invalid-id")
                    self.write(slot, stamp, "invalid-id", None)
                    r.faulted = True
                elif fault == 1:
                    layer = self.rng.randrange(LAYERS)
                    out[layer, 1] = out[layer, 0]
                    self.inject("duplicate-expert")
                    self.write(slot, stamp, "duplicate-expert", None)
                    r.faulted = True
                elif fault == 2:
                    word = SLOTS + self.rng.randrange(1000)
                    self.inject("bad-slot-in-step")
                    r.faulted = True
                    lost.append(r)
                else:
                    self.write(slot, stamp, None, row)
                mapping.append(word)
                sent.append(out)
        if self.rng.randrange(3) == 0 and len(mapping) < MAX_TOKENS:
            at = self.rng.randrange(len(mapping) + 1)
            mapping.insert(at, -1)
            sent.insert(at, np.full((LAYERS, TOP_K), 1000 + at, np.int32))
        self.steps = stamp
        ids = np.stack(sent).astype(np.int32) if sent else np.zeros((0, LAYERS, TOP_K), np.int32)
        self.capture.capture(ids, np.array(mapping, dtype=np.int64))
        for r in lost:  # the documented answer to a step fault: abort the request whose row went nowhere
            if self.live.pop(r.rid, None) is not None:
                self.lost_rows += 1
                self.capture.aborted(r.rid)
                self.release(r, donate=False)

    def write(self, slot: int, stamp: int, state: str | None, row) -> None:
        self.stamp[slot], self.round_of[slot], self.state[slot], self.row[slot] = stamp, self.round, state, row
        self.gathered[slot] = 0

    def finish(self) -> None:
        if not self.live:
            return
        r = self.live.pop(self.rng.choice(list(self.live)))
        slots, truth = list(r.slots), list(r.truth)
        fault = self.rng.randrange(10)
        if fault == 0 and slots:
            for _ in range(1 + self.rng.randrange(3)):
                s = self.rng.randrange(SLOTS)
                if self.verdict(r, len(slots), s) is None:
                    continue  # written after the admission by a request still live: the contract cannot see it
                slots.append(s)
                truth.append(None)
                r.faulted = True
                self.inject("unwritten-rows")
        elif fault == 1 and slots:
            slots[self.rng.randrange(len(slots))] = SLOTS + self.rng.randrange(50)
            r.faulted = True
            self.inject("bad-slot-in-finish")
        reasons = [self.verdict(r, p, s) for p, s in enumerate(slots)]
        want = []
        for p, why in enumerate(reasons):
            if why is None:
                assert truth[p] is not None and np.array_equal(self.row[slots[p]], truth[p]), f"oracle bug: {r.rid} {p}"
                want.append(truth[p])
            else:
                want.append(None)
        assert r.faulted or all(w is None for w in reasons), f"oracle bug: clean {r.rid} has missing rows"
        for p in range(r.cached, len(slots)):
            if reasons[p] is None:
                self.gathered[slots[p]] = self.steps
        self.expected.setdefault(r.rid, []).append(Expected(want, reasons, not r.faulted))
        self.finished_this_round.append(r.rid)
        self.capture.finished(r.rid, slots=slots)
        self.release(r, donate=True)

    def release(self, r: Req, donate: bool) -> None:
        reserved = {s for d in self.donors for s in d[0]} | set(self.free)
        own = [(s, t) for s, t in zip(r.slots[r.cached:], r.truth[r.cached:]) if 0 <= s < SLOTS and s not in reserved]
        own = list(dict(own).items())
        if donate and not r.faulted and r.cached == 0 and own and len(self.donors) < 4 and self.rng.randrange(2):
            self.donors.append(([s for s, _ in own], [t for _, t in own]))
        else:
            self.free += [s for s, _ in own]

    def abort(self) -> None:
        if self.live:
            r = self.live.pop(self.rng.choice(list(self.live)))
            self.capture.aborted(r.rid)
            self.release(r, donate=False)

    def move(self) -> None:
        movable = [r for r in self.live.values() if len(r.slots) > r.cached]
        if not movable:
            return
        r = self.rng.choice(movable)
        src = [s for s in dict.fromkeys(r.slots[r.cached:]) if 0 <= s < SLOTS][: len(self.free)]
        if not src:
            return
        dst = [self.free.pop(0) for _ in src]
        if self.rng.randrange(8) == 0:
            dst[0] = SLOTS + self.rng.randrange(20)
            r.faulted = True
            self.inject("bad-slot-in-move")
        before = [(self.stamp[s], self.round_of[s], self.state[s], self.row[s], self.gathered[s]) for s in src]
        for s, d, (st, ro, sa, rw, ga) in zip(src, dst, before):
            if d < SLOTS:
                self.stamp[d], self.round_of[d], self.state[d], self.row[d], self.gathered[d] = st, ro, sa, rw, ga
            r.slots[r.slots.index(s)] = d
            self.free.append(s)
        self.capture.slots_moved(src, dst)

    def unknown(self) -> None:
        rid = (self.rng.choice(self.finished_this_round) if self.finished_this_round and self.rng.randrange(2)
               else f"ghost-{self.rng.randrange(1000)}")
        if rid in self.live:
            return
        self.inject("unknown-id")
        self.ghosts.append(rid)
        if self.rng.randrange(2):
            self.capture.finished(rid, slots=[self.rng.randrange(SLOTS)])
        else:
            self.capture.aborted(rid)

    def clear(self) -> None:
        self.round += 1
        self.live.clear()
        self.donors.clear()
        self.finished_this_round.clear()
        self.free = list(range(SLOTS))
        self.capture.round_cleared(self.round)


def test_no_fetched_row_ever_differs_from_the_engine_and_every_injected_fault_is_reported(sidecar: Sidecar) -> None:
    capture = connect(sidecar)
    scenario = Scenario(20261206, capture)
    scenario.play(2500)
    finish_session(capture, sidecar)
    errors = capture.request_errors()
    assert [e.request_id for e in errors if e.code == 1] == scenario.ghosts, "every unknown finish or abort is its request's error"
    step_faults = [e for e in errors if e.code == 2]
    assert len(step_faults) >= scenario.injected.get("bad-slot-in-step", 0) > 0

    listing, got = served(sidecar.store)
    assert not any(i.damaged or i.lost for i in listing)
    records: dict[str, list[RequestInfo]] = {}
    for info in listing:
        records.setdefault(info.request_id, []).append(info)
    wrong = mismatched = data_rows = missing_rows = clean = 0
    for rid, expected in scenario.expected.items():
        assert len(records[rid]) == len(expected), rid
        for info, want in zip(records[rid], expected):
            routing, reasons = got[info.ordinal]
            assert routing.shape[0] == len(want.rows), rid
            counts: dict[str, int] = {}
            for p, (row, why) in enumerate(zip(want.rows, want.reasons)):
                missing = bool((routing[p] == -1).all())
                if why is None:
                    data_rows += 1
                    if missing or not np.array_equal(routing[p], row):
                        wrong += 1
                else:
                    missing_rows += 1
                    counts[why] = counts.get(why, 0) + 1
                    mismatched += not missing
            mismatched += counts != reasons
            clean += want.clean
    summary = (f"{len(listing)} records ({clean} without a fault), injected {scenario.injected}, {data_rows} data rows, "
               f"{missing_rows} missing rows, {len(errors)} request errors, wrong rows {wrong}, mismatches {mismatched}")
    print("contract property through the sidecar:", summary)
    assert wrong == 0 and mismatched == 0, summary
    assert all(scenario.injected.get(k, 0) > 0 for k in ("invalid-id", "duplicate-expert", "bad-slot-in-step", "bad-slot-in-finish",
                                                        "unwritten-rows", "unknown-id", "reused-id")), summary
    assert clean > 100, summary
