"""CPU smoke test of the whole R3 loop (r3_train_loop.py) with the real ``r3 sidecar`` and ``r3 serve`` of this build.

Skipped (with the reason shown by -rs) without torch + transformers or without the r3 class path (python/tests/r3_build.py:
``examples/target/classpath.txt``, which Maven writes at ``package``).
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

try:
    import torch  # noqa: F401
    from transformers import Qwen3MoeConfig  # noqa: F401
except ImportError as e:  # CI has no torch
    pytest.skip(f"the R3 loop needs torch + transformers (5.x, Qwen3-MoE): {e}", allow_module_level=True)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

sys.path.insert(0, str(REPO / "python" / "tests"))

import r3_build  # noqa: E402
import r3_train_loop  # noqa: E402


def _r3_command() -> str:
    if r3_build.classpath() is None:
        pytest.skip(r3_build.NO_CLASSPATH)
    return shlex.join(r3_build.command("sidecar"))


@pytest.mark.timeout(300)
def test_the_loop_replays_exactly_what_the_rollout_stored(tmp_path: Path) -> None:
    rc = r3_train_loop.main(["--device", "cpu", "--tiny", "--dtype", "bfloat16", "--requests", "6", "--prompt-max", "40",
                             "--output-max", "20", "--num-blocks", "128", "--lr", "1e-3", "--sidecar-cmd",
                             _r3_command(), "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    res = json.loads((tmp_path / "out" / "loop.json").read_text())
    assert rc == 0, res
    rollout = json.loads((tmp_path / "work" / "rollout.json").read_text())
    assert len(rollout["requests"]) == 5, "6 requests, one aborted"
    conditions = {(c["state"], c["replay"]): c for c in res["conditions"]}
    assert set(conditions) == {("before the step", False), ("before the step", True), ("after one step", False),
                               ("after one step", True)}
    rows = sum(len(r["tokens"]) - 1 for r in rollout["requests"])
    for c in conditions.values():
        assert c["rows"] == rows * 4 and c["tokens"] == rows  # tiny: 4 MoE layers; every stored position compared
        assert c["response_tokens"] == sum(len(r["logprobs"]) for r in rollout["requests"])
        assert 0 <= c["layer_fraction"] <= c["token_fraction"] <= 1
    assert conditions[("before the step", True)]["layer_fraction"] == 0.0
    assert conditions[("after one step", True)]["layer_fraction"] == 0.0
    # the step moved the routers: without replay the training forward routes differently, which replay undoes
    assert conditions[("after one step", False)]["layer_fraction"] > 0.0
    assert (tmp_path / "out" / "loop.md").read_text().startswith("# R3 loop")
