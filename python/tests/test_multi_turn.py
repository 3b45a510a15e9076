"""Multi-turn (issue #11, item 5) through the real sidecar and the real server: a request continued in a second turn.

Turn 2 is a new request whose prompt is turn 1's tokens plus new ones, as SGLang and vLLM continue a conversation: it
reuses turn 1's KV blocks (a prefix cache), so the first positions are not forwarded again and their routing is the
rows turn 1 wrote into those slots. The store gathers turn 2's record from the slots at its FINISHED; a trainer that
has turn 1 fetches only the new rows with ``start`` = turn 1's length, and turn 1's rows followed by them must equal
turn 2's whole record and what the engine wrote, position by position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from r3.trainer import ReplayClient
from test_sidecar_integration import LAYERS, TOP_K, FakeEngine, Sidecar, connect, r3, sidecar  # noqa: F401
from test_trainer_client import Server, live

__all__ = ["r3", "sidecar"]  # the fixtures, imported so pytest finds them here
pytestmark = pytest.mark.timeout(240)


class PrefixCachingEngine(FakeEngine):
    """The fake engine with a prefix cache: a finished request's blocks can be handed to its continuation."""

    def finish_keeping_blocks(self, rid: str) -> None:
        """FINISHED for ``rid``, its blocks kept for the next turn (not freed)."""
        n = self.forwarded[rid]
        slots = [self.slot(rid, p) for p in range(n)]
        self.expected[rid] = np.stack([self.rows[s] for s in slots])
        self.capture.finished(rid, slots=slots)

    def continue_as(self, rid: str, new_rid: str, declare_cached: bool = True) -> None:
        """ADMITTED for ``new_rid``, owning ``rid``'s blocks and the positions already forwarded in them, which it
        declares as its prefix-cache hit (``cached_tokens``), as vLLM and SGLang report it."""
        self.tables[new_rid] = self.tables.pop(rid)
        self.forwarded[new_rid] = self.forwarded.pop(rid)
        self.capture.admitted(new_rid, cached_tokens=self.forwarded[new_rid] if declare_cached else 0)


@live
def test_the_new_turn_fetched_with_start_completes_the_first(sidecar: Sidecar, tmp_path: Path) -> None:
    engine = PrefixCachingEngine(connect(sidecar), np.random.default_rng(20261128))
    with engine.capture:
        engine.admit("chat-1")
        engine.admit("other")
        engine.step({"chat-1": 13, "other": 7})  # prefills
        for _ in range(6):  # turn 1 decodes; another request shares the steps
            engine.step({"chat-1": 1, "other": 1}, padding=1, hooks=True)
        engine.finish_keeping_blocks("chat-1")
        s1 = engine.forwarded["chat-1"]
        engine.continue_as("chat-1", "chat-1/turn-2")
        engine.step({"chat-1/turn-2": 9, "other": 1})  # turn 2's prefill: only the new tokens are forwarded
        for _ in range(5):
            engine.step({"chat-1/turn-2": 1, "other": 1}, hooks=True)
        engine.finish("other", by_block_table=True)  # frees its blocks: later steps reuse them
        engine.admit("late")
        engine.step({"late": 8, "chat-1/turn-2": 1})
        engine.finish("chat-1/turn-2", by_block_table=True)
        engine.finish("late", by_block_table=False)
    assert sidecar.wait() == 0, sidecar.log_tail()

    server = Server(sidecar.store)
    try:
        client = ReplayClient(server.url)
        turn1 = client.fetch("chat-1", dtype="int64")
        whole = client.fetch("chat-1/turn-2", dtype="int64")
        new = client.fetch("chat-1/turn-2", start=s1, dtype="int64")
        native_new = client.fetch("chat-1/turn-2", start=s1)
    finally:
        server.stop()
    s2 = engine.forwarded.get("chat-1/turn-2", len(engine.expected["chat-1/turn-2"]))
    assert turn1.shape == (s1, LAYERS, TOP_K)
    assert whole.shape == (s2, LAYERS, TOP_K) and s2 == s1 + 9 + 5 + 1
    assert new.shape == (s2 - s1, LAYERS, TOP_K)
    np.testing.assert_array_equal(np.concatenate([turn1, new]), whole)
    np.testing.assert_array_equal(whole, engine.expected["chat-1/turn-2"].astype(np.int64))
    np.testing.assert_array_equal(turn1, engine.expected["chat-1"].astype(np.int64))
    np.testing.assert_array_equal(native_new.astype(np.int64), new)
