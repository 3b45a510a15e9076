#!/usr/bin/env python3
"""A reference rollout engine on a real MoE model, for the routing capture (issue #10, items 5 and 6).

Hugging Face ``Qwen3MoeForCausalLM`` (random weights, the Qwen3-30B-A3B routing shape unless reduced) driven by a
continuous-batching loop: admission of requests with prompts of varied lengths, a paged KV slot allocator (block
size 16, LIFO free list), chunked prefill under a token budget, decode steps, finish at a per-request max length,
one preempted request (blocks freed, re-admitted later and re-prefilled from scratch: its stored routing must be the
re-run's) and one aborted request (nothing stored). Router forward hooks hand each MoE layer's top-k ids to an
``r3.tap.RouterTap``, whose one write after the forward fills the capture's routing buffer (``--hooks copy``: each
hook copies its layer's ids, ``routing[:n, layer, :] = indices``); the step's slot mapping goes with ``end_step``.

Capture backends (``--capture``):
- ``oracle``: a pure-PyTorch stand-in with the sidecar's store semantics (capture_oracle.py); no JVM;
- ``sidecar``: ``r3.engine.RoutingCapture`` connected to an ``r3 sidecar`` this script starts (``--sidecar-cmd``);
- ``none``: no capture.

``--verify``: the hooks also keep a CPU copy of every layer's ids per request and position, independently of the
capture buffers; after the run the routing stored for every finished request (oracle: its store; sidecar: read back
with ``r3 export``) must equal it position by position, the aborted request must not be stored, and the preempted one
must carry its re-run's routing. Exit status 1 with a mismatch report otherwise.

CPU smoke:  python r3_reference_engine.py --device cpu --tiny --verify
GPU:        python3 examples/python/r3_reference_engine.py --device cuda --verify --capture sidecar \
              --sidecar-cmd 'bundle/jre/bin/java $(cat bundle/jvm.flags) -cp bundle/r3-bundle.jar \
              dev.routingreplay.examples.R3Command sidecar'
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE.parents[1] / "python"))  # the repo's python/ (r3.engine)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from capture_oracle import OracleCapture  # noqa: E402
from paged_forward import FORWARDS, build_step_batch  # noqa: E402
from paged_kv import BLOCK_SIZE, BlockAllocator, OutOfBlocks, PagedKVPool, slots_of  # noqa: E402
from qwen3_moe_model import add_model_args, build_model, resolve_dtype, shape_from_args  # noqa: E402
from r3.tap import RouterTap  # noqa: E402
from routing_hooks import RouterHooks  # noqa: E402


@dataclass
class Request:
    rid: str
    prompt: list[int]
    max_len: int                      # finishes when prompt + output reach this many tokens
    tokens: list[int] = field(default_factory=list)
    computed: int = 0                 # positions [0, computed) have K/V in the pool (and routing captured)
    block_table: list[int] = field(default_factory=list)
    state: str = "waiting"            # waiting, running, finished, aborted
    admitted: bool = False
    preemptions: int = 0
    not_before: int = 0               # earliest step of (re-)admission
    routing: np.ndarray | None = None     # [max_len - 1, layers, top_k] from the hooks (verify), -1 = not forwarded
    fwd_slots: np.ndarray | None = None   # slot each position had when it was forwarded
    logprobs: list[float] = field(default_factory=list)  # the engine's log-prob of each generated token (greedy)

    @property
    def seq_len(self) -> int:
        """Positions whose routing is stored: prompt + output without the final token (never forwarded)."""
        return self.max_len - 1

    @property
    def generated(self) -> int:
        return len(self.tokens) - len(self.prompt)


@dataclass
class EngineResult:
    steps: int = 0
    tokens: int = 0
    padding: int = 0
    finished: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    preempted: list[dict] = field(default_factory=list)
    expected: dict[str, np.ndarray] = field(default_factory=dict)   # verify: hooks' routing of finished requests
    finish_slots: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0


class ReferenceEngine:
    def __init__(self, model, hooks: RouterHooks, capture, args, device: str, log=print):
        self.model, self.hooks, self.capture, self.args, self.device, self.log = model, hooks, capture, args, device, log
        cfg = model.config
        self.alloc = BlockAllocator(args.num_blocks, BLOCK_SIZE)
        self.pool = PagedKVPool(cfg.num_hidden_layers, self.alloc.num_slots, cfg.num_key_value_heads, cfg.head_dim,
                                model.dtype, device)
        self.forward = FORWARDS[args.forward]
        self.rng = random.Random(args.seed + 1)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.all: list[Request] = []
        self.step_no = 0
        self.result = EngineResult()
        self._preempt_done = args.preempt_at < 0
        self._abort_done = args.abort_at < 0
        self._make_requests(cfg.vocab_size)

    # ---- workload ----
    def _make_requests(self, vocab: int) -> None:
        a, rng = self.args, random.Random(self.args.seed)
        for i in range(a.requests):
            # request 1 has the longest prompt, so at least one prefill is chunked
            plen = a.prompt_max if i == 1 else rng.randint(a.prompt_min, a.prompt_max)
            out = rng.randint(a.output_min, a.output_max)
            prompt = [rng.randrange(vocab) for _ in range(plen)]
            r = Request(f"req-{i}", prompt, plen + out, tokens=list(prompt))
            if a.verify:
                r.routing = np.full((r.seq_len, self.hooks.layers, self.hooks.top_k), -1, dtype=np.int64)
            r.fwd_slots = np.full(r.seq_len, -1, dtype=np.int64)
            self.waiting.append(r)
            self.all.append(r)

    # ---- the loop ----
    def run(self) -> EngineResult:
        t0 = time.perf_counter()
        while self.waiting or self.running:
            if self.step_no >= self.args.max_steps:
                raise RuntimeError(f"no progress after {self.step_no} steps: waiting "
                                   f"{[r.rid for r in self.waiting]}, running {[r.rid for r in self.running]}")
            self._step()
        self.result.seconds = time.perf_counter() - t0
        if not self._preempt_done:
            self.log(f"WARNING: no request was preempted (no decoding request at or after step {self.args.preempt_at})")
        if not self._abort_done:
            self.log(f"WARNING: no request was aborted (no running request at or after step {self.args.abort_at})")
        return self.result

    def _step(self) -> None:
        self._forced_events()
        self._admit()
        sched = self._schedule()
        if not sched:
            if self.running:  # everything running is stuck on blocks: free the largest
                victim = max(self.running, key=lambda r: len(r.block_table))
                self._preempt(victim, "pool exhausted")
            return
        self._run_step(sched)
        self._finish_done()

    def _forced_events(self) -> None:
        a = self.args
        if not self._abort_done and self.step_no >= a.abort_at:
            cands = [r for r in self.running if r.computed > 0 and r.preemptions == 0]
            cands.sort(key=lambda r: -r.generated)
            if cands:
                r = cands[0]
                self._abort(r)
                self._abort_done = True
        if not self._preempt_done and self.step_no >= a.preempt_at:
            cands = [r for r in self.running if r.generated >= 2]
            if cands:
                victim = max(cands, key=lambda r: len(r.block_table))
                self._preempt(victim, f"forced (--preempt-at {a.preempt_at})")
                self._preempt_done = True

    def _admit(self) -> None:
        for r in list(self.waiting):
            if len(self.running) >= self.args.max_running:
                break
            if r.not_before > self.step_no:  # a preempted request waits a few steps (others take its blocks)
                continue
            first = min(len(r.tokens) - r.computed, self.args.chunk)
            if self.alloc.blocks_needed(r.block_table, r.computed + first) > self.alloc.free_blocks:
                break
            self.waiting.remove(r)
            r.state = "running"
            self.running.append(r)
            if not r.admitted:
                r.admitted = True
                if self.capture is not None:
                    self.capture.admitted(r.rid)
            elif r.preemptions:
                self.log(f"step {self.step_no}: re-admitted {r.rid} (preempted {r.preemptions}x): re-prefill of "
                         f"{len(r.tokens)} tokens from scratch")

    def _schedule(self) -> list[tuple[Request, int, int]]:
        budget, sched = self.args.step_tokens, []
        for r in list(self.running):
            if r.state != "running":
                continue
            n = min(len(r.tokens) - r.computed, self.args.chunk, budget)
            if n <= 0:
                continue
            try:
                self.alloc.ensure(r.rid, r.block_table, r.computed + n)
            except OutOfBlocks:
                scheduled = {id(s[0]) for s in sched}
                victims = [v for v in self.running if v is not r and id(v) not in scheduled]
                if not victims:
                    continue
                self._preempt(victims[-1], "pool exhausted")
                try:
                    self.alloc.ensure(r.rid, r.block_table, r.computed + n)
                except OutOfBlocks:
                    continue
            sched.append((r, r.computed, n))
            budget -= n
        return sched

    def _run_step(self, sched: list[tuple[Request, int, int]]) -> None:
        owners = {id(r): i for i, (r, _, _) in enumerate(sched)}
        tokens: list[tuple[int, int, int, int]] = []
        keys: list[tuple[int, int, int]] = []
        for r, start, n in sched:
            o = owners[id(r)]
            slots = slots_of(r.block_table, 0, start + n)
            for p in range(start, start + n):
                tokens.append((r.tokens[p], p, slots[p], o))
            keys.extend((slots[p], p, o) for p in range(start + n))
        real = len(tokens)
        for info in self.result.preempted:  # how much of a preempted request's old KV other requests overwrite
            if "slots_after" not in info:
                old = info["blocks_before_set"]
                info["old_slots_rewritten_by_others"] += sum(
                    1 for t in tokens if t[2] // BLOCK_SIZE in old and sched[t[3]][0].rid != info["rid"])
        pad_to = max(1, self.args.pad_to)
        padded = -(-real // pad_to) * pad_to
        for _ in range(padded - real):  # padding tokens (slot -1) at random places in the flattened order
            tokens.insert(self.rng.randrange(len(tokens) + 1), (0, 0, -1, -1))
        T = len(tokens)
        batch = build_step_batch(self.pool, tokens, keys, self.device)

        if self.capture is not None:
            routing, _ = self.capture.begin_step()
            # the host backend (a sidecar without a GPU) hands out numpy views of the shared file
            self.hooks.target = torch.from_numpy(routing) if isinstance(routing, np.ndarray) else routing
        if self.args.verify:
            self.hooks.start_record()
        with torch.no_grad():
            hidden = self.forward(self.model, batch)
            self.hooks.finish()  # --hooks tap: every layer's ids into the buffer at once
            # sample (greedy) where a request's chunk reached its last known token
            last_idx, last_req = [], []
            for i, (tid, p, s, o) in enumerate(tokens):
                if o >= 0:
                    r = sched[o][0]
                    if p == len(r.tokens) - 1:
                        last_idx.append(i)
                        last_req.append(r)
            new_tokens, new_logprobs = [], []
            if last_idx:
                logits = self.model.lm_head(hidden[torch.tensor(last_idx, device=hidden.device)])
                best = logits.float().log_softmax(-1).max(-1)
                new_tokens, new_logprobs = best.indices.tolist(), best.values.tolist()
        rec = self.hooks.take_record().numpy() if self.args.verify else None
        self.hooks.target = None
        if self.capture is not None:
            # the slots go with end_step, after the forward was launched: off the path before the launch
            self.capture.end_step(T, slot_mapping=torch.tensor([t[2] for t in tokens], dtype=torch.int64))

        for i, (tid, p, s, o) in enumerate(tokens):
            if o < 0:
                continue
            r = sched[o][0]
            r.fwd_slots[p] = s
            if rec is not None:
                r.routing[p] = rec[i]
        for r, start, n in sched:
            r.computed = start + n
        for r, t, lp in zip(last_req, new_tokens, new_logprobs):
            r.tokens.append(int(t))
            r.logprobs.append(float(lp))
        self.result.steps += 1
        self.result.tokens += T
        self.result.padding += T - real
        self.step_no += 1

    def _finish_done(self) -> None:
        for r in list(self.running):
            if len(r.tokens) < r.max_len:
                continue
            assert r.computed == r.seq_len, (r.rid, r.computed, r.seq_len)
            slots = slots_of(r.block_table, 0, r.seq_len)
            if not np.array_equal(np.asarray(slots), r.fwd_slots):
                bad = int(np.nonzero(np.asarray(slots) != r.fwd_slots)[0][0])
                raise AssertionError(f"engine bug: {r.rid} position {bad} was forwarded at slot {r.fwd_slots[bad]} but "
                                     f"its finish-time block table maps it to {slots[bad]}")
            if self.capture is not None:
                form = self.args.finish_form
                if form == "mixed":
                    form = "slots" if int(r.rid.split("-")[1]) % 2 == 0 else "block_table"
                if form == "slots":
                    self.capture.finished(r.rid, slots=slots)
                else:
                    self.capture.finished(r.rid, block_table=list(r.block_table), block_size=BLOCK_SIZE,
                                          seq_len=r.seq_len)
            # the finish goes out before the blocks are freed: later steps reusing these slots come after it
            self.alloc.free(r.rid, r.block_table)
            self.running.remove(r)
            r.state = "finished"
            self.result.finished.append(r.rid)
            self.result.finish_slots[r.rid] = slots
            for pinfo in self.result.preempted:
                if pinfo["rid"] == r.rid:
                    pinfo["slots_after"] = slots
            if self.args.verify:
                if (r.routing < 0).any():
                    pos = int(np.nonzero((r.routing < 0).any(axis=(1, 2)))[0][0])
                    raise AssertionError(f"engine bug: {r.rid} finished but position {pos} was never forwarded")
                self.result.expected[r.rid] = r.routing.copy()

    def _preempt(self, r: Request, why: str) -> None:
        info = {"rid": r.rid, "step": self.step_no, "why": why, "computed": r.computed, "generated": r.generated,
                "blocks_before": list(r.block_table), "blocks_before_set": set(r.block_table),
                "old_slots_rewritten_by_others": 0,
                "slots_before": slots_of(r.block_table, 0, r.computed)}
        self.log(f"step {self.step_no}: preempted {r.rid} ({why}): {r.computed} positions forwarded, {r.generated} "
                 f"tokens generated, blocks {r.block_table} freed")
        self.alloc.free(r.rid, r.block_table)
        self.running.remove(r)
        r.computed = 0
        r.state = "waiting"
        r.preemptions += 1
        if r.routing is not None:
            r.routing.fill(-1)  # its stored routing must be the re-run's
        r.fwd_slots.fill(-1)
        r.not_before = self.step_no + self.args.readmit_after
        self.waiting.append(r)  # at the back, and later: others take its blocks first (LIFO free list)
        self.result.preempted.append(info)

    def _abort(self, r: Request) -> None:
        self.log(f"step {self.step_no}: aborted {r.rid} ({r.computed} positions forwarded, blocks {r.block_table})")
        if self.capture is not None:
            self.capture.aborted(r.rid)
        self.alloc.free(r.rid, r.block_table)
        self.running.remove(r)
        r.state = "aborted"
        self.result.aborted.append(r.rid)


# ---------------------------------------------------------------------------------------------------------------
# verification


def compare_routing(expected: dict[str, np.ndarray], stored: dict[str, np.ndarray], aborted: list[str],
                    max_detail: int = 5) -> list[str]:
    """Problems found, each one line naming the request, position, layer and values; empty when all match."""
    problems: list[str] = []
    for rid in sorted(expected):
        if rid not in stored:
            problems.append(f"{rid}: finished (seq_len {len(expected[rid])}) but nothing stored")
    for rid in sorted(stored):
        if rid not in expected:
            what = "was aborted" if rid in aborted else "never finished in this run"
            problems.append(f"{rid}: stored ({list(stored[rid].shape)}) but it {what}")
    for rid in sorted(set(expected) & set(stored)):
        e, g_raw = expected[rid], stored[rid]
        if g_raw.shape != e.shape:
            problems.append(f"{rid}: stored shape {list(g_raw.shape)} {g_raw.dtype}, expected {list(e.shape)} "
                            "[seq_len, layers, top_k]")
            continue
        g = g_raw.astype(np.int64)
        bad_rows = np.nonzero((e != g).any(axis=(1, 2)))[0]
        if len(bad_rows) == 0:
            continue
        problems.append(f"{rid}: {len(bad_rows)} of {len(e)} positions differ (first {bad_rows[:10].tolist()})")
        for pos in bad_rows[:max_detail]:
            layers = np.nonzero((e[pos] != g[pos]).any(axis=1))[0]
            l0 = int(layers[0])
            note = " (missing row: not recorded)" if (g[pos] == -1).all() else ""
            problems.append(f"  {rid} pos {pos}: {len(layers)} layers differ, first layer {l0}: expected "
                            f"{e[pos, l0].tolist()}, stored {g[pos, l0].tolist()}{note}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# CLI


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_model_args(p)
    g = p.add_argument_group("workload")
    g.add_argument("--requests", type=int, default=12)
    g.add_argument("--prompt-min", type=int, default=4)
    g.add_argument("--prompt-max", type=int, default=160, help="request 1 always gets this long a prompt (chunked)")
    g.add_argument("--output-min", type=int, default=8)
    g.add_argument("--output-max", type=int, default=40)
    g.add_argument("--max-running", type=int, default=6)
    g.add_argument("--step-tokens", type=int, default=128, help="token budget of a step (before padding)")
    g.add_argument("--chunk", type=int, default=64, help="prefill chunk")
    g.add_argument("--num-blocks", type=int, default=128, help="KV blocks of 16 slots")
    g.add_argument("--pad-to", type=int, default=8, help="pad each step to a multiple (padding: slot -1)")
    g.add_argument("--preempt-at", type=int, default=10, help="preempt a decoding request at this step (-1: never)")
    g.add_argument("--abort-at", type=int, default=6, help="abort a running request at this step (-1: never)")
    g.add_argument("--readmit-after", type=int, default=4, help="steps a preempted request waits before re-admission")
    g.add_argument("--max-steps", type=int, default=100000)
    g.add_argument("--forward", choices=sorted(FORWARDS), default="hf",
                   help="hf: model.model() with a paged cache; manual: the same over the submodules")
    c = p.add_argument_group("capture")
    c.add_argument("--capture", choices=["oracle", "sidecar", "none"], default="oracle")
    c.add_argument("--verify", action="store_true", help="compare the stored routing with the hooks' own copy")
    c.add_argument("--buffers", type=int, default=2, help="engine buffers in the handshake ring")
    c.add_argument("--transport", choices=["ipc", "pinned"], default="ipc",
                   help="--capture sidecar on CUDA: ipc (r3 sidecar --backend cuda reads the engine's device buffers) "
                        "or pinned (the engine copies each step into an r3 sidecar --backend host's shared memory)")
    c.add_argument("--hooks", choices=["tap", "copy"], default="tap",
                   help="tap: the router hooks keep each layer's ids and one r3.tap.RouterTap write after the forward "
                        "fills the buffer; copy: each hook copies its layer's ids into the buffer (vLLM's way)")
    c.add_argument("--finish-form", choices=["slots", "block_table", "mixed"], default="mixed",
                   help="how FINISHED names the slots (mixed: even request ids slots=, odd ones block_table=)")
    c.add_argument("--sidecar-cmd", help="command line of 'r3 sidecar' (see sidecar_proc.py)")
    c.add_argument("--export-cmd", help="command line of 'r3 export' (default: --sidecar-cmd with 'export')")
    c.add_argument("--work-dir", help="socket, store, export and summary.json go here (default: a new temp dir)")
    return p


def make_capture(args, hooks: RouterHooks, num_slots: int, work: Path, log):
    """The capture object and, for the sidecar, its process."""
    max_tokens = -(-args.step_tokens // max(1, args.pad_to)) * max(1, args.pad_to)
    if args.capture == "none":
        return None, None
    if args.capture == "oracle":
        return OracleCapture(hooks.layers, hooks.top_k, hooks.num_experts, max_tokens, num_slots,
                             device=args.device, buffers=args.buffers), None
    if not args.sidecar_cmd:
        raise SystemExit("--capture sidecar needs --sidecar-cmd")
    from r3.engine import RoutingCapture  # the repo's python/ module (branch pyengine)
    from sidecar_proc import SidecarProcess
    cuda = args.device.startswith("cuda")
    if (work / "store").exists() and any((work / "store").iterdir()):
        raise SystemExit(f"{work / 'store'} holds a store from an earlier run: choose a new --work-dir")
    sock = Path(tempfile.mkdtemp(prefix="r3s-")) / "r3.sock"  # short: a socket path has at most 107 bytes
    backend = "cuda" if cuda and args.transport == "ipc" else "host"  # pinned: the sidecar needs no GPU
    side = SidecarProcess(args.sidecar_cmd, sock, work / "store", backend, work / "sidecar.log")
    log(f"sidecar: {side.command_line()} (slots used: [0, {num_slots}))")
    side.start()
    try:
        cap = RoutingCapture.connect(str(side.socket_path), layers=hooks.layers, top_k=hooks.top_k,
                                     num_experts=hooks.num_experts, max_tokens=max_tokens,
                                     device=f"cuda:{torch.cuda.current_device()}" if cuda else "host",
                                     buffers=args.buffers, id_dtype=torch.int32, slot_dtype=torch.int64,
                                     on_failure="raise", engine_name="r3-reference-engine",
                                     transport=args.transport if cuda else "ipc")
    except BaseException:
        side.stop(grace_s=5)
        log(side.log_tail())
        raise
    return cap, side


def main(argv=None) -> int:
    args = build_arg_parser().parse_args(argv)
    log = print
    device = args.device
    if device == "cuda":
        device = args.device = f"cuda:{torch.cuda.current_device()}"
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="r3-refengine-"))
    work.mkdir(parents=True, exist_ok=True)
    shape = shape_from_args(args)
    model = build_model(shape, device, resolve_dtype(args.dtype, device), args.seed, args.experts_impl, log=log)
    hooks = RouterHooks(model)
    if args.hooks == "tap":
        hooks.tap = RouterTap(hooks.layers, hooks.top_k)
    num_slots = args.num_blocks * BLOCK_SIZE
    capture, side = make_capture(args, hooks, num_slots, work, log)
    engine = ReferenceEngine(model, hooks, capture, args, device, log)
    summary = None
    try:
        result = engine.run()
        if capture is not None:
            summary = capture.close()
    except BaseException:
        if side is not None:
            side.stop(grace_s=5)
            log(side.log_tail())
        raise
    log(f"run: {result.steps} steps, {result.tokens} tokens ({result.padding} padding), {len(result.finished)} "
        f"finished, aborted {result.aborted}, preempted {[p['rid'] for p in result.preempted]}, "
        f"{result.seconds:.1f} s; capture summary {summary}")
    status = 0
    report: dict = {"steps": result.steps, "tokens": result.tokens, "finished": result.finished,
                    "aborted": result.aborted, "capture": args.capture,
                    "preempted": [{k: v for k, v in p.items() if k != "blocks_before_set"} for p in result.preempted],
                    "capture_summary": summary if isinstance(summary, dict) else str(summary)}
    if side is not None:
        rc = side.stop()
        log(f"sidecar exited with status {rc}")
        report["sidecar_exit"] = rc
    if args.verify and capture is not None:
        if args.capture == "oracle":
            stored = capture.stored
        else:
            from sidecar_proc import default_export_cmd, export_store
            stored = export_store(args.export_cmd or default_export_cmd(args.sidecar_cmd), work / "store",
                                  work / "export")
        problems = compare_routing(result.expected, stored, result.aborted)
        for p in result.preempted:
            if "slots_after" in p:
                moved = len(set(p["slots_before"]) - set(p["slots_after"]))
                log(f"preempted {p['rid']}: {len(p['slots_before'])} positions forwarded before (blocks "
                    f"{p['blocks_before']}); other requests then wrote {p['old_slots_rewritten_by_others']} tokens into "
                    f"those blocks; the re-run used other slots for {moved} of those positions")
                if not moved and not p["old_slots_rewritten_by_others"]:
                    log(f"WARNING: {p['rid']} was re-run on exactly its old, untouched slots: a stale row would go "
                        "unnoticed")
        if problems:
            status = 1
            log(f"VERIFY FAILED ({args.capture}): {len(problems)} problems")
            for line in problems:
                log("  " + line)
        else:
            rows = sum(len(e) for e in result.expected.values())
            log(f"VERIFY OK ({args.capture}): {len(result.expected)} finished requests, {rows} positions x "
                f"{hooks.layers} layers x top {hooks.top_k} equal to the hooks' routing; preempted "
                f"{[p['rid'] for p in result.preempted]} carry the re-run's routing; aborted {result.aborted} "
                "not stored")
        report["verify"] = {"ok": not problems, "problems": problems}
    (work / "summary.json").write_text(json.dumps(report, indent=1, default=str))
    log(f"summary: {work / 'summary.json'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
