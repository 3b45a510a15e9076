"""CPU smoke tests of the reference engine, its forwards, the oracle verification and the benchmark's CPU path.

Run: python3 -m pytest examples/python -q
Skipped (with the reason shown by -rs) where torch or transformers cannot be imported, as in CI.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

try:
    import numpy as np
    import torch
    import transformers  # noqa: F401
    from transformers import Qwen3MoeConfig  # noqa: F401
except ImportError as e:  # CI has no torch
    pytest.skip(f"reference engine tests need torch + transformers (5.x, Qwen3-MoE): {e}", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import r3_bridge_bench  # noqa: E402
import r3_reference_engine as engine_mod  # noqa: E402
from capture_oracle import OracleCapture, OracleCaptureError  # noqa: E402
from paged_forward import FORWARDS, build_step_batch  # noqa: E402
from paged_kv import BlockAllocator, OutOfBlocks, PagedKVPool, slot_of, slots_of  # noqa: E402
from qwen3_moe_model import TINY, build_model  # noqa: E402
from routing_hooks import RouterHooks  # noqa: E402
from static_decode import StaticDecoder  # noqa: E402

SMOKE = ["--device", "cpu", "--tiny", "--requests", "8", "--prompt-max", "70", "--output-max", "20",
         "--max-running", "4", "--step-tokens", "48", "--chunk", "24", "--preempt-at", "6", "--abort-at", "3"]


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(TINY, "cpu", torch.float32, 0, log=lambda *_: None)


# ---------------------------------------------------------------------------------------------- paged KV


def test_allocator_lifo_reuse_and_slot_mapping():
    a = BlockAllocator(4, 16)
    t1, t2 = [], []
    a.ensure("r1", t1, 20)  # 2 blocks
    assert t1 == [0, 1]
    assert slot_of(t1, 17) == 1 * 16 + 1
    assert slots_of(t1, 14, 18) == [14, 15, 16, 17]
    a.free("r1", t1)
    a.ensure("r2", t2, 1)
    assert t2 == [0], "a freed block is the next one handed out (LIFO)"
    with pytest.raises(OutOfBlocks):
        a.ensure("r2", t2, 16 * 5)
    assert t2 == [0] and a.free_blocks == 3, "a refused ensure allocates nothing"


# ---------------------------------------------------------------------------------------------- forwards


@pytest.mark.parametrize("forward", sorted(FORWARDS))
def test_paged_forward_equals_plain_hf_forward(tiny_model, forward):
    """Chunked prefill over scattered paged slots, with padding tokens inside the order, gives the logits and the
    router ids of one plain HF forward of the whole sequence."""
    m, cfg = tiny_model, tiny_model.config
    ids = torch.randint(0, cfg.vocab_size, (1, 40), generator=torch.Generator().manual_seed(1))
    hooks = RouterHooks(m)
    try:
        hooks.start_record()
        with torch.no_grad():
            ref = m(ids).logits[0]
        ref_routing = hooks.take_record()
        alloc = BlockAllocator(8)
        pool = PagedKVPool(cfg.num_hidden_layers, alloc.num_slots, cfg.num_key_value_heads, cfg.head_dim,
                           torch.float32, "cpu")
        other = []
        alloc.ensure("other", other, 20)  # so the request's blocks are not 0, 1, 2
        bt, logits, routing = [], [], []
        for start, n in [(0, 13), (13, 20), (33, 7)]:
            alloc.ensure("r", bt, start + n)
            sl = slots_of(bt, start, start + n)
            toks = [(int(ids[0, start + i]), start + i, sl[i], 0) for i in range(n)]
            toks.insert(3, (0, 0, -1, -1))
            toks.append((0, 0, -1, -1))
            keys = [(s, p, 0) for p, s in enumerate(slots_of(bt, 0, start + n))]
            batch = build_step_batch(pool, toks, keys, "cpu")
            hooks.start_record()
            with torch.no_grad():
                hid = FORWARDS[forward](m, batch)
            rec = hooks.take_record()
            real = [i for i, t in enumerate(toks) if t[3] >= 0]
            logits.append(m.lm_head(hid[real]))
            routing.append(rec[real])
        assert torch.allclose(torch.cat(logits), ref, atol=1e-4), (torch.cat(logits) - ref).abs().max()
        assert torch.equal(torch.cat(routing), ref_routing)
    finally:
        hooks.remove()


def test_static_decoder_equals_plain_hf_forward(tiny_model):
    m = tiny_model
    B, L = 3, 12
    ids = torch.randint(0, m.config.vocab_size, (B, L), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = m(ids).logits
    dec = StaticDecoder(m, 4, 32, "cpu")  # random K/V beyond each position: must be masked out
    outs = []
    with torch.no_grad():
        for p in range(L):
            dec.ids[:B] = ids[:, p]
            dec.pos[:B] = p
            outs.append(dec.forward(B, return_logits=True))
    assert torch.allclose(torch.stack(outs, 1), ref, atol=1e-4)


def test_hook_writes_capture_buffer(tiny_model):
    hooks = RouterHooks(tiny_model)
    try:
        buf = torch.full((16, hooks.layers, hooks.top_k), -1, dtype=torch.int32)
        hooks.target = buf
        hooks.start_record()
        with torch.no_grad():
            tiny_model(torch.arange(10)[None])
        rec = hooks.take_record()
        assert torch.equal(buf[:10].long(), rec)
        assert (buf[10:] == -1).all()
    finally:
        hooks.remove()


# ---------------------------------------------------------------------------------------------- engine + verify


def _run_engine(tmp_path, extra=()):
    rc = engine_mod.main(SMOKE + ["--verify", "--work-dir", str(tmp_path)] + list(extra))
    return rc, json.loads((tmp_path / "summary.json").read_text())


def test_engine_oracle_verify_ok(tmp_path):
    rc, s = _run_engine(tmp_path)
    assert rc == 0, s.get("verify")
    assert s["verify"]["ok"]
    assert len(s["aborted"]) == 1
    assert len(s["preempted"]) == 1 and "slots_after" in s["preempted"][0], "the preempted request re-ran and finished"
    assert len(s["finished"]) == 7
    assert s["capture_summary"]["requests_finished"] == 7


def test_engine_pool_pressure_preemption_verify_ok(tmp_path):
    rc, s = _run_engine(tmp_path, ["--num-blocks", "12", "--preempt-at", "-1", "--abort-at", "-1"])
    assert rc == 0, s.get("verify")
    assert any(p["why"] == "pool exhausted" for p in s["preempted"])


def test_engine_manual_forward_block_table_finish(tmp_path):
    rc, s = _run_engine(tmp_path, ["--forward", "manual", "--finish-form", "block_table", "--pad-to", "1"])
    assert rc == 0, s.get("verify")


class _DropsAStep(OracleCapture):
    """A capture that loses the rows of step 5 (as a drop under backpressure would)."""

    def end_step(self, num_tokens, slot_mapping=None):
        if self._next_step == 5:
            self._open_buffer = None
            self._next_step += 1
            return 5
        return super().end_step(num_tokens, slot_mapping=slot_mapping)


class _StoresAborted(OracleCapture):
    """A capture that stores a record for an aborted request."""

    def aborted(self, request_id):
        self.stored[request_id] = self.store[:3].copy()
        super().aborted(request_id)


class _IgnoresSlotMappingOrder(OracleCapture):
    """A capture that reverses the token order of a step's slots (rows land on the wrong slots)."""

    def end_step(self, num_tokens, slot_mapping=None):
        if self._next_step == 4:
            slot_mapping = slot_mapping.flip(0)
        return super().end_step(num_tokens, slot_mapping=slot_mapping)


@pytest.mark.parametrize("faulty,expect", [(_DropsAStep, "positions differ"), (_StoresAborted, "aborted"),
                                           (_IgnoresSlotMappingOrder, "positions differ")])
def test_verify_reports_a_faulty_capture(tmp_path, monkeypatch, capsys, faulty, expect):
    monkeypatch.setattr(engine_mod, "OracleCapture", faulty)
    rc, s = _run_engine(tmp_path)
    assert rc == 1
    assert not s["verify"]["ok"]
    assert any(expect in p for p in s["verify"]["problems"]), s["verify"]["problems"]
    assert "VERIFY FAILED" in capsys.readouterr().out


def test_compare_routing_names_request_position_layer():
    e = {"r1": np.zeros((4, 2, 2), dtype=np.int64), "r2": np.ones((2, 2, 2), dtype=np.int64)}
    g1 = np.zeros((4, 2, 2), dtype=np.uint8)
    g1[2, 1] = 255
    stored = {"r1": g1, "r3": np.zeros((1, 2, 2), dtype=np.uint8)}
    problems = engine_mod.compare_routing(e, stored, aborted=["r3"])
    text = "\n".join(problems)
    assert "r2: finished (seq_len 2) but nothing stored" in text
    assert "r3: stored ([1, 2, 2]) but it was aborted" in text
    assert "r1: 1 of 4 positions differ (first [2])" in text
    assert "r1 pos 2: 1 layers differ, first layer 1: expected [0, 0], stored [255, 255]" in text
    assert engine_mod.compare_routing({"r1": e["r1"]}, {"r1": np.zeros((4, 2, 2), np.uint8)}, []) == []


def test_oracle_rejects_bad_input():
    cap = OracleCapture(layers=2, top_k=2, num_experts=8, max_tokens=4, num_slots=32)
    routing, slots = cap.begin_step()
    routing[:2] = 3
    slots[:2] = torch.tensor([5, 40])
    with pytest.raises(OracleCaptureError, match=r"slot_mapping\[1\] = 40 out of range"):
        cap.end_step(2)
    routing, slots = cap.begin_step()
    routing[:1, 0] = 3  # layer 1 left unwritten (-1)
    slots[:1] = 0
    with pytest.raises(OracleCaptureError, match=r"routing\[0, 1, 0\] = -1"):
        cap.end_step(1)
    with pytest.raises(OracleCaptureError, match="unknown request id"):
        cap.finished("nope", slots=[0])


# ---------------------------------------------------------------------------------------------- benchmark (CPU path)


def test_bench_cpu_smoke(tmp_path):
    rc = r3_bridge_bench.main(["--device", "cpu", "--tiny", "--sizes", "1,4", "--prefill-tokens", "48",
                               "--context", "64", "--steps", "3", "--prefill-steps", "2", "--warmup", "1",
                               "--prefill-warmup", "1", "--min-rounds", "1", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert set(res["sections"]) == {"decode 1", "decode 4", "prefill 48"}
    for name, sec in res["sections"].items():
        assert set(sec) == {"a", "b", "c", "d", "h"}  # e, f, g need a GPU
        assert sec["a"]["ratio_vs_a"] == 1.0
        # blocks of 8 decode steps (3 at the prefill) per mode, the first of each not recorded
        kept = 2 if name.startswith("prefill") else 7
        assert all(r["steps"] > 0 and r["steps"] % kept == 0 for r in sec.values()), (name, sec)
    assert (tmp_path / "bench.md").read_text().startswith("# Routing capture benchmark")


# ---------------------------------------------------------------------------------------------- sidecar plumbing
# The real sidecar and r3.engine are not needed here: a fake sidecar process (binds the socket, serves one
# connection, exits), a fake RoutingCapture (connects to it, keeps the oracle's semantics and writes the finished
# requests as an export would: uint8 .npy + manifest.tsv) and a fake export command (copies them) check the process
# handling, the export parsing and the verification against an exported store.

FAKE_SIDECAR = r'''
import argparse, os, socket
p = argparse.ArgumentParser()
p.add_argument("--socket"); p.add_argument("--store"); p.add_argument("--backend"); p.add_argument("--once", action="store_true")
a = p.parse_args()
os.makedirs(a.store, exist_ok=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(a.socket); s.listen(1)
c, _ = s.accept()
while c.recv(4096):
    pass
print("fake sidecar: engine disconnected, backend", a.backend)
'''


def _fake_engine_module(store_dir: Path):
    import socket
    import types

    class RoutingCapture(OracleCapture):
        @classmethod
        def connect(cls, path, layers, top_k, num_experts, max_tokens, device="host", buffers=2, id_dtype=torch.int32,
                    slot_dtype=torch.int64, on_failure="raise", engine_name="", **kw):
            assert device == "host"
            cap = cls(layers, top_k, num_experts, max_tokens, 1 << 16, device="cpu", buffers=buffers,
                      id_dtype=id_dtype, slot_dtype=slot_dtype)
            cap.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            cap.sock.connect(path)
            return cap

        def close(self):
            lines = ["file\trequest_id\tround\tseq_len\tlayers\ttop_k\tdtype\tindex"]
            for i, (rid, rows) in enumerate(self.stored.items()):
                np.save(store_dir / f"r{i}.npy", rows.astype(np.uint8))
                lines.append(f"r{i}.npy\t{rid}\t0\t{len(rows)}\t{self.layers}\t{self.top_k}\tuint8\t{i:x}")
            (store_dir / "manifest.tsv").write_text("\n".join(lines) + "\n")
            self.sock.close()
            return super().close()

    mod = types.ModuleType("r3.engine")
    mod.RoutingCapture = RoutingCapture
    pkg = types.ModuleType("r3")
    pkg.engine = mod
    return pkg, mod


def _fake_sidecar(tmp_path, monkeypatch, store_dir):
    script = tmp_path / "fake_sidecar.py"
    script.write_text(FAKE_SIDECAR)
    pkg, mod = _fake_engine_module(store_dir)
    monkeypatch.setitem(sys.modules, "r3", pkg)
    monkeypatch.setitem(sys.modules, "r3.engine", mod)
    return f"{sys.executable} {script}"


def test_engine_sidecar_path_with_fakes(tmp_path, monkeypatch):
    work = tmp_path / "work"
    side_cmd = _fake_sidecar(tmp_path, monkeypatch, work / "store")
    # called as: <cmd> --store S --out O
    export_cmd = "sh -c 'mkdir -p \"$4\" && cp \"$2\"/* \"$4\"/' x"
    rc = engine_mod.main(SMOKE + ["--verify", "--work-dir", str(work), "--capture", "sidecar", "--sidecar-cmd",
                                  side_cmd, "--export-cmd", export_cmd])
    s = json.loads((work / "summary.json").read_text())
    assert rc == 0, s
    assert s["sidecar_exit"] == 0
    assert "backend host" in (work / "sidecar.log").read_text()


def test_bench_sidecar_path_with_fakes(tmp_path, monkeypatch):
    side_cmd = _fake_sidecar(tmp_path, monkeypatch, tmp_path / "work" / "store")
    rc = r3_bridge_bench.main(["--device", "cpu", "--tiny", "--sizes", "2", "--prefill-tokens", "0", "--context", "32",
                               "--steps", "2", "--warmup", "1", "--min-rounds", "1", "--sidecar-cmd", side_cmd,
                               "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    assert rc == 0
    res = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(res["sections"]["decode 2"]) == {"a", "b", "c", "d", "h"}
    assert "sidecar" in res["memory"]["d"]["note"]


def test_default_export_cmd():
    from sidecar_proc import default_export_cmd
    cmd = "bundle/jre/bin/java $(cat bundle/jvm.flags) -cp bundle/r3-bundle.jar dev.routingreplay.examples.R3Command sidecar"
    assert default_export_cmd(cmd).endswith("R3Command export")
    assert default_export_cmd(cmd + " --slots 4096").endswith("R3Command export")


def test_static_decode_step_has_no_data_dependent_ops():
    """The graph-capture proxy that runs on a CPU: the decode step (hook copy included) runs under FakeTensorMode,
    which refuses any op whose output depends on tensor values (nonzero, .item(), .tolist(): the host syncs that
    break a CUDA graph capture). transformers' grouped_mm experts need bf16 here; the eager experts loop is refused."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    for impl, ok in [("grouped_mm", True), ("eager", False)]:
        m = build_model(TINY, "cpu", torch.bfloat16, 0, impl, log=lambda *_: None)
        hooks = RouterHooks(m)
        dec = StaticDecoder(m, 4, 32, "cpu")
        with torch.no_grad():
            dec.forward(4)  # real run first (the hooks' one-time output check)
        hooks.target = torch.zeros(8, hooks.layers, hooks.top_k, dtype=torch.int32)
        try:
            with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True):
                dec.forward(4)
            refused = None
        except Exception as e:  # noqa: BLE001
            refused = e
        assert (refused is None) == ok, f"{impl}: {refused}"
