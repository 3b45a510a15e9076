"""CPU smoke test of the whole R3 loop (r3_train_loop.py) with the real ``r3 sidecar`` and ``r3 serve`` of this build.

Skipped (with the reason shown by -rs) without torch + transformers or without the r3 class path (``mvn verify`` sets
``R3_SIDECAR_CLASSPATH``; by hand, ``examples/target/classpath.txt`` of an earlier build is used).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
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

import r3_train_loop  # noqa: E402


def _r3_command() -> str:
    cp = os.environ.get("R3_SIDECAR_CLASSPATH")
    if not cp:
        listed, classes = REPO / "examples/target/classpath.txt", REPO / "examples/target/classes"
        if not (listed.is_file() and classes.is_dir()):
            pytest.skip("R3_SIDECAR_CLASSPATH is not set (mvn verify sets it) and examples/target/classpath.txt is absent")
        cp = f"{classes}{os.pathsep}{listed.read_text().strip()}"
    java = shutil.which("java") or os.path.join(os.environ.get("JAVA_HOME", ""), "bin", "java")
    flags = os.environ.get("R3_JVM_FLAGS", "--add-exports=java.base/sun.nio.ch=ALL-UNNAMED "
                           "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED "
                           "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED "
                           "-Dchronicle.analytics.disable=true -Dchronicle.announcer.disable=true")
    return f"{shlex.quote(java)} {flags} -Xmx512m -cp {shlex.quote(cp)} dev.routingreplay.examples.R3Command sidecar"


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
