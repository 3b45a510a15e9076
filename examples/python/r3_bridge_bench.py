#!/usr/bin/env python3
"""GPU benchmark of routing-capture methods on a real MoE model (issue #10, item 7).

One run, the modes interleaved step by step (the order rotates every round) so that drift hits every mode alike:
  a  no capture
  b  synchronous capture: ``routing.cpu()`` after the forward, then a scatter into a slot-indexed host buffer
  c  the peers' async method in PyTorch (FastDeploy PR #7674 style): D2D copy into a device staging buffer, a
     ``non_blocking`` copy into a pinned host ring on the current stream, an event; the CPU scatter into the
     slot-indexed host buffer happens at the next capture step, after the event (overlapped with that step's forward)
  d  this project's sidecar through ``r3.engine.RoutingCapture`` (``begin_step`` / hooks write the shared IPC buffer /
     ``end_step``); ``--mode-d oracle`` swaps in the pure-PyTorch stand-in (smoke runs only, it is synchronous)
  e  the same sidecar API with ``transport="pinned"``: one device buffer in the engine, an async D2H on the engine's
     stream into the host sidecar's shared memory (``r3 sidecar --backend host``: no GPU work in the sidecar); CUDA only
  f  mode d with the sidecar's pack kernel (``--pack device``)
  g  mode e with an ``r3.tap.RouterTap``: the router hooks only keep each layer's ids, one stack after the forward
     writes them all into the buffer (instead of one copy per layer in the hooks, as every other mode does)
  h  mode c with the same RouterTap: what the tap alone is worth to the peers' method
Sizes: decode batches (default 1, 32, 128, 256 sequences) and one prefill chunk (default 8192 tokens).

Decode runs in CUDA graphs (static KV cache, ``static_decode.py``), one graph per batch size and capture target: the
router hooks' copy into the capture buffer is inside the graph (mode b/c: the device routing buffer; mode d: each
IPC buffer of the handshake ring), the STEP message / event record / D2H are outside. The prefill chunk runs eagerly
(GPU-bound: about 330 ms on an H100). ``--no-graph`` runs decode eagerly too (and the CPU smoke always does).

Reported per mode and size: step time median / p99 (ms), ratio of medians vs (a), the median of the per-round
ratios vs (a), the engine thread's time inside the capture call (wall and ``thread_time``), and the memory each mode
holds (host: pinned + pageable buffers; for (d) the engine's side only: the sidecar's ring is in its own process, its
RSS is reported separately). Output: ``<out>/bench.md`` and ``<out>/bench.json``.

CPU smoke:  python r3_bridge_bench.py --device cpu --tiny --sizes 1,4 --prefill-tokens 64 --steps 5 --out /tmp/b
GPU (H100): python3 examples/python/r3_bridge_bench.py --device cuda --out bench-out \
              --sidecar-cmd 'bundle/jre/bin/java $(cat bundle/jvm.flags) -cp bundle/r3-bundle.jar \
              dev.routingreplay.examples.R3Command sidecar'
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

_T_START = time.perf_counter()
_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE.parents[1] / "python"))  # the repo's python/ (r3.engine)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from capture_oracle import OracleCapture  # noqa: E402
from qwen3_moe_model import add_model_args, build_model, resolve_dtype, shape_from_args  # noqa: E402
from r3.tap import RouterTap  # noqa: E402
from routing_hooks import RouterHooks  # noqa: E402
from static_decode import StaticDecoder  # noqa: E402

MODES = ("a", "b", "c", "d", "e", "f", "g", "h")
MODE_NAMES = {"a": "no capture", "b": "sync .cpu()", "c": "async D2D+pinned D2H (FastDeploy-style)",
              "d": "r3 sidecar (RoutingCapture)", "e": "r3 sidecar, pinned transport",
              "f": "r3 sidecar, pack kernel (--pack device)", "g": "r3 sidecar, pinned transport + RouterTap",
              "h": "c + RouterTap"}
SIDECAR_MODES = ("d", "e", "f", "g")
PINNED_MODES = ("e", "g")  # transport="pinned", r3 sidecar --backend host
TAP_MODES = ("g", "h")     # the hooks record into a RouterTap, one write after the forward


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T_START:7.1f} s] {msg}", flush=True)


@dataclass
class Samples:
    step_s: list = field(default_factory=list)
    cap_wall_s: list = field(default_factory=list)
    cap_cpu_s: list = field(default_factory=list)
    begin_wall_s: list = field(default_factory=list)  # d, e: begin_step alone (before the launch)
    sync_wait_s: list = field(default_factory=list)   # the final sync: GPU work left once the CPU's step was done


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = args.device
        self.cuda = self.device.startswith("cuda")
        shape = shape_from_args(args)
        self.model = build_model(shape, self.device, resolve_dtype(args.dtype, self.device), args.seed,
                                 args.experts_impl, log=log)
        self.hooks = RouterHooks(self.model)
        L, K = self.hooks.layers, self.hooks.top_k
        self.tap = RouterTap(L, K)  # modes g, h
        self.sizes = [int(s) for s in args.sizes.split(",") if s]
        self.max_batch = max(self.sizes) if self.sizes else 1
        self.prefill = args.prefill_tokens
        self.max_tokens = max(self.max_batch, self.prefill)
        self.num_slots = max(self.max_batch * args.context, self.prefill)
        self.modes = [m for m in args.modes.split(",") if m]
        dev = self.device
        idt = torch.int32
        # (b, c) the engine's device routing buffer the hooks write; a scratch one for warmups
        self.routing_dev = torch.zeros(self.max_tokens, L, K, dtype=idt, device=dev)
        self.scratch = torch.zeros(self.max_tokens, L, K, dtype=idt, device=dev)
        # (c) device staging, pinned host ring of 2, events
        self.staging = torch.zeros(self.max_tokens, L, K, dtype=idt, device=dev)
        self.pinned = [torch.zeros(self.max_tokens, L, K, dtype=idt, pin_memory=self.cuda) for _ in range(2)]
        self.pinned_np = [p.numpy() for p in self.pinned]
        self.events = [torch.cuda.Event() if self.cuda else None for _ in range(2)]
        self.c_count = 0
        self.c_pending = None
        # (b), (c) slot-indexed host stores (pages touched: they are really held)
        self.store_b = np.full((self.num_slots, L, K), -1, dtype=np.int32) if "b" in self.modes else None
        self.store_c = (np.full((self.num_slots, L, K), -1, dtype=np.int32)
                        if "c" in self.modes or "h" in self.modes else None)
        # engine-side host inputs
        self.ids_pin = torch.zeros(self.max_tokens, dtype=torch.long, pin_memory=self.cuda)
        self.pos_pin = torch.zeros(self.max_tokens, dtype=torch.long, pin_memory=self.cuda)
        self.slots_pin = torch.zeros(self.max_tokens, dtype=torch.long, pin_memory=self.cuda)
        self.tok_pin = torch.zeros(self.max_tokens, dtype=torch.long, pin_memory=self.cuda)
        self.captures: dict = {}  # mode d / e -> RoutingCapture (or the oracle stand-in for d)
        self.sidecars: dict = {}  # mode d / e -> SidecarProcess
        self.d_views: dict[int, torch.Tensor] = {}  # every buffer begin_step hands out (d: the IPC ring, e: one)
        self.graphs = None
        self.graph_error = None
        self.notes: list[str] = []
        self.begin_wall = 0
        self.sync_wait = 0.0
        self.next_views: dict = {}  # mode d / e -> the buffer begun after the previous step's launch
        self.decoder = None

    # ------------------------------------------------------------------------------------------------ setup
    def setup_mode_d(self) -> None:
        """Starts the sidecar of mode d (IPC transport, ``--backend cuda``) and of mode e (pinned transport,
        ``--backend host``), each with its own socket and store, and learns the buffers their captures hand out."""
        a = self.args
        for only_real in ("e", "f", "g"):
            if only_real in self.modes and not (self.cuda and a.sidecar_cmd and (a.mode_d or "sidecar") == "sidecar"):
                self.modes.remove(only_real)
                self.notes.append(f"mode {only_real} skipped: it needs a CUDA device and --sidecar-cmd")
                log(self.notes[-1])
        if not any(m in self.modes for m in SIDECAR_MODES):
            return
        kind = a.mode_d or ("sidecar" if a.sidecar_cmd else "oracle" if not self.cuda else "off")
        if kind == "off" and "d" in self.modes:
            self.modes.remove("d")
            self.notes.append("mode d skipped: no --sidecar-cmd (pass one, or --mode-d oracle for a smoke run)")
            log(self.notes[-1])
        L, K, E = self.hooks.layers, self.hooks.top_k, self.hooks.num_experts
        for mode in [m for m in SIDECAR_MODES if m in self.modes]:
            if mode == "d" and kind == "oracle":
                self.captures[mode] = OracleCapture(L, K, E, self.max_tokens, self.num_slots, device=self.device,
                                                    buffers=a.buffers)
                self.notes.append("mode d = pure-PyTorch oracle stand-in (synchronous), not the sidecar")
            else:
                from r3.engine import RoutingCapture
                from sidecar_proc import SidecarProcess
                work = Path(a.work_dir or tempfile.mkdtemp(prefix="r3-bench-")) / mode
                sock = Path(tempfile.mkdtemp(prefix="r3s-")) / "r3.sock"  # short: at most 107 bytes
                backend = "cuda" if self.cuda and mode in ("d", "f") else "host"
                pack = "--pack device" if mode == "f" else "--pack host" if backend == "cuda" else ""
                sidecar = SidecarProcess(a.sidecar_cmd, sock, work / "store", backend, work / "sidecar.log", pack)
                log(f"mode {mode} sidecar: {sidecar.command_line()} (slots used: [0, {self.num_slots}))")
                sidecar.start()
                self.sidecars[mode] = sidecar
                try:
                    self.captures[mode] = RoutingCapture.connect(
                        str(sidecar.socket_path), layers=L, top_k=K, num_experts=E, max_tokens=self.max_tokens,
                        device=f"cuda:{torch.cuda.current_device()}" if self.cuda else "host", buffers=a.buffers,
                        id_dtype=torch.int32, slot_dtype=torch.int64, on_failure="raise",
                        engine_name=f"r3-bridge-bench-{mode}",
                        transport="pinned" if mode in PINNED_MODES else "ipc")
                except BaseException:
                    sidecar.stop(grace_s=5)
                    log(sidecar.log_tail())
                    raise
            # learn the buffers (the graphs bake their addresses): one all-padding step per ring buffer
            views = set()
            for _ in range(a.buffers):
                routing, slots = self.captures[mode].begin_step()
                slots[:1].fill_(-1)
                self.d_views[routing.data_ptr()] = (routing, mode in TAP_MODES)
                views.add(routing.data_ptr())
                self.captures[mode].end_step(1)
            log(f"mode {mode}: {kind if mode == 'd' else MODE_NAMES[mode]}, {len(views)} device buffer(s) of "
                f"[{self.max_tokens}, {L}, {K}] int32")
        self.mode_d_kind = kind

    def setup_decode(self) -> None:
        a = self.args
        if not self.sizes:
            return
        per_seq = 2 * self.hooks.layers * self.model.config.num_key_value_heads * self.model.config.head_dim * \
            self.model.dtype.itemsize
        if self.cuda:
            free, _ = torch.cuda.mem_get_info()
            fit = int((free - a.reserve_gib * 2**30) // (per_seq * self.max_batch))
            if fit < a.context:
                new = max(64, fit // 16 * 16)
                self.notes.append(f"context reduced from {a.context} to {new} to fit the static KV cache "
                                  f"({free / 2**30:.1f} GiB free)")
                log(self.notes[-1])
                a.context = new
                self.num_slots = max(self.num_slots, self.max_batch * a.context)
        self.decoder = StaticDecoder(self.model, self.max_batch, a.context, self.device)
        log(f"static KV cache: {self.max_batch} x {a.context} positions, {self.decoder.kv_bytes / 2**30:.2f} GiB")
        # each sequence starts at a random position in the second quarter of its context
        rng = np.random.default_rng(a.seed)
        self.start_pos = rng.integers(a.context // 4, a.context // 2, size=self.max_batch)
        self.pos_np = self.pos_pin.numpy()
        self.pos_np[:self.max_batch] = self.start_pos
        self.ids_pin.numpy()[:] = rng.integers(0, self.model.config.vocab_size, size=self.max_tokens)
        self.slot_base = np.arange(self.max_batch, dtype=np.int64) * a.context  # row b = blocks [b*ctx/16, ...)
        if self.cuda and not a.no_graph:
            self.capture_graphs()
        else:
            why = "--no-graph" if self.cuda else "CPU run"
            self.notes.append(f"decode runs eagerly ({why})")

    def capture_graphs(self) -> None:
        """CUDA only: warm up each batch size, then capture its graphs (a: no target, bc: routing_dev, d: each IPC
        buffer). On any failure decode falls back to eager and the report says so."""
        from static_decode import DecodeGraphs
        t0 = time.perf_counter()
        try:
            self.graphs = DecodeGraphs(self.decoder, self.hooks, self.scratch)
            for B in self.sizes:
                self._fill_inputs(B)
                self.graphs.warmup(B, tap=self.tap if any(m in TAP_MODES for m in self.modes) else None)
                self.graphs.capture(B, "a", None)
                if "b" in self.modes or "c" in self.modes:
                    self.graphs.capture(B, "bc", self.routing_dev)
                if "h" in self.modes:
                    self.graphs.capture(B, "h", self.routing_dev, self.tap)
                for ptr, (view, tapped) in self.d_views.items():
                    self.graphs.capture(B, ptr, view, self.tap if tapped else None)
            torch.cuda.synchronize()
            log(f"captured {len(self.graphs.graphs)} CUDA graphs in {time.perf_counter() - t0:.1f} s")
        except Exception as e:  # noqa: BLE001 - reported, and the benchmark still runs
            self.graph_error = f"{type(e).__name__}: {e}"
            self.graphs = None
            torch.cuda.synchronize()
            self.notes.append(f"CUDA graph capture FAILED, decode runs eagerly: {self.graph_error}")
            log(self.notes[-1])

    # ------------------------------------------------------------------------------------------------ steps
    def _fill_inputs(self, B: int) -> None:
        if self.cuda:
            self.decoder.ids[:B].copy_(self.ids_pin[:B], non_blocking=True)
            self.decoder.pos[:B].copy_(self.pos_pin[:B], non_blocking=True)
        else:
            self.decoder.ids[:B].copy_(self.ids_pin[:B])
            self.decoder.pos[:B].copy_(self.pos_pin[:B])

    def _decode_forward(self, B: int, key, target, tapped: bool = False):
        tap = self.tap if tapped else None
        if self.graphs is not None:
            if (B, key) not in self.graphs.graphs:  # a ring buffer first seen now: capture records, runs nothing
                self.graphs.capture(B, key, target, tap)
            return self.graphs.replay(B, key)
        self.hooks.target, self.hooks.tap = target, tap
        try:
            with torch.no_grad():
                out = self.decoder.forward(B)
            self.hooks.finish()
            return out
        except BaseException:
            self.hooks.discard()
            raise
        finally:
            self.hooks.target, self.hooks.tap = None, None

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.current_stream().synchronize()

    def _capture_b(self, n: int, slots_np: np.ndarray) -> None:
        host = self.routing_dev[:n].cpu()  # waits for the forward
        self.store_b[slots_np] = host.numpy()

    def _capture_c(self, n: int, slots_np: np.ndarray) -> None:
        i = self.c_count % 2
        self.staging[:n].copy_(self.routing_dev[:n])                       # D2D: the next forward may overwrite
        self.pinned[i][:n].copy_(self.staging[:n], non_blocking=self.cuda)  # async D2H on the current stream
        if self.cuda:
            self.events[i].record()
        self._flush_c()  # the previous capture step's rows: its event completed long ago
        self.c_pending = (i, slots_np.copy(), n)
        self.c_count += 1

    def _flush_c(self) -> None:
        if self.c_pending is None:
            return
        j, s, m = self.c_pending
        if self.cuda:
            self.events[j].synchronize()
        self.store_c[s] = self.pinned_np[j][:m]
        self.c_pending = None

    def _timed(self, fn, *a):
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        r = fn(*a)
        return r, time.perf_counter_ns() - w0, time.thread_time_ns() - c0

    def decode_step(self, mode: str, B: int):
        ctx = self.args.context
        t0 = time.perf_counter()
        self._fill_inputs(B)
        slots_np = self.slot_base[:B] + self.pos_np[:B]
        wall = cpu = 0
        if mode == "a":
            out = self._decode_forward(B, "a", None)
        elif mode in ("b", "c", "h"):
            out = self._decode_forward(B, "h" if mode == "h" else "bc", self.routing_dev, mode in TAP_MODES)
            _, wall, cpu = self._timed(self._capture_b if mode == "b" else self._capture_c, B, slots_np)
        else:
            routing, w1, c1 = self._begin_d(mode)
            out = self._decode_forward(B, routing.data_ptr(), routing, mode in TAP_MODES)
            _, w2, c2 = self._timed(self._end_d, mode, B, slots_np)
            wall, cpu = w1 + w2, c1 + c2
            self.begin_wall = w1
        self.tok_pin[:B].copy_(out, non_blocking=self.cuda)
        t_sync = time.perf_counter()
        self._sync()  # the engine's sampling sync: every mode has it
        t1 = time.perf_counter()
        step, self.sync_wait = t1 - t0, t1 - t_sync
        # engine bookkeeping, outside the timing: next inputs
        self.ids_pin[:B].copy_(self.tok_pin[:B])
        p = self.pos_np[:B] + 1
        p[p >= ctx] = self.start_pos[:B][p >= ctx]
        self.pos_np[:B] = p
        return step, wall / 1e9, cpu / 1e9

    def _begin_d(self, mode: str):
        """The routing buffer of this step: begun already by the previous step's ``_end_d`` (after its launch), so
        nothing of the capture runs before this launch; else begun now (timed)."""
        views = self.next_views.pop(mode, None)
        if views is not None:
            return views, 0, 0
        (routing, _), wall, cpu = self._timed(self.captures[mode].begin_step)
        return routing, wall, cpu

    def _end_d(self, mode: str, n: int, slots_np: np.ndarray):
        # after the forward was launched: the slot mapping goes with end_step (pinned staging inside the module), then
        # the next step's buffer is begun right away, while the GPU runs this step (docs/engine-bridge.md)
        step = self.captures[mode].end_step(n, slot_mapping=torch.from_numpy(slots_np))
        if self.args.begin_early:
            self.next_views[mode] = self.captures[mode].begin_step()[0]
        return step

    def prefill_step(self, mode: str, ids: torch.Tensor):
        P = ids.shape[1]
        slots_np = np.arange(P, dtype=np.int64)
        t0 = time.perf_counter()
        wall = cpu = 0
        if mode in SIDECAR_MODES:
            routing, wall, cpu = self._begin_d(mode)
            self.begin_wall = wall
            self.hooks.target = routing
        elif mode in ("b", "c", "h"):
            self.hooks.target = self.routing_dev
        self.hooks.tap = self.tap if mode in TAP_MODES else None
        try:
            with torch.no_grad():
                hid = self.model.model(input_ids=ids, use_cache=False).last_hidden_state
                self.hooks.finish()
                out = self.model.lm_head(hid[:, -1]).argmax(-1)
        except BaseException:
            self.hooks.discard()
            raise
        finally:
            self.hooks.target, self.hooks.tap = None, None
        if mode in ("b", "c", "h"):
            _, wall, cpu = self._timed(self._capture_b if mode == "b" else self._capture_c, P, slots_np)
        elif mode in SIDECAR_MODES:
            _, w2, c2 = self._timed(self._end_d, mode, P, slots_np)
            wall, cpu = wall + w2, cpu + c2
        self.tok_pin[:1].copy_(out, non_blocking=self.cuda)
        t_sync = time.perf_counter()
        self._sync()
        t1 = time.perf_counter()
        self.sync_wait = t1 - t_sync
        return t1 - t0, wall / 1e9, cpu / 1e9

    # ------------------------------------------------------------------------------------------------ runs
    def run_section(self, name: str, step_fn, arg, rounds: int, warmup: int, slice_s: float, block: int = 1) -> dict:
        """Rounds of every mode in rotating order; each mode runs ``block`` steps in a row and, with ``block`` > 1, the
        first of them is run but not recorded: it may carry the previous mode's leftover work (a sidecar's reads of its
        last step), while the recorded ones follow a step of their own mode, as in a real engine."""
        for w in range(warmup):
            for m in self.modes:
                step_fn(m, arg)
        samples = {m: Samples() for m in self.modes}
        paired = {m: [] for m in self.modes}
        t0 = time.perf_counter()
        done = 0
        for r in range(rounds):
            k = r % len(self.modes)
            order = self.modes[k:] + self.modes[:k]
            got = {}
            for m in order:
                kept = []
                for i in range(block):
                    self.begin_wall = 0
                    s, w, c = step_fn(m, arg)
                    if block > 1 and i == 0:
                        continue
                    kept.append(s)
                    samples[m].begin_wall_s.append(self.begin_wall / 1e9)
                    samples[m].sync_wait_s.append(self.sync_wait)
                    samples[m].step_s.append(s)
                    samples[m].cap_wall_s.append(w)
                    samples[m].cap_cpu_s.append(c)
                got[m] = float(np.median(kept))
            if "a" in got:
                for m in self.modes:
                    paired[m].append(got[m] / got["a"])
            done += 1
            if time.perf_counter() - t0 > slice_s and done >= self.args.min_rounds:
                break
        if done < rounds:
            self.notes.append(f"{name}: stopped after {done} of {rounds} rounds (time slice {slice_s:.0f} s)")
            log(self.notes[-1])
        self._flush_c()
        return self._summarise(samples, paired, done)

    def _summarise(self, samples: dict, paired: dict, rounds: int) -> dict:
        out = {}
        med_a = float(np.median(samples["a"].step_s)) if "a" in samples else None
        for m, s in samples.items():
            st = np.asarray(s.step_s)
            med = float(np.median(st))
            out[m] = {
                "steps": len(st), "median_ms": med * 1e3, "p99_ms": float(np.percentile(st, 99)) * 1e3,
                "mean_ms": float(st.mean()) * 1e3,
                "ratio_vs_a": med / med_a if med_a else None,
                "paired_ratio_median": float(np.median(paired[m])) if paired[m] else None,
                "capture_wall_us_median": float(np.median(s.cap_wall_s)) * 1e6,
                "capture_wall_us_p99": float(np.percentile(s.cap_wall_s, 99)) * 1e6,
                "capture_cpu_us_median": float(np.median(s.cap_cpu_s)) * 1e6,
                "begin_wall_us_median": float(np.median(s.begin_wall_s)) * 1e6,
                "sync_wait_us_median": float(np.median(s.sync_wait_s)) * 1e6,
            }
        return out

    def memory(self) -> dict:
        L, K = self.hooks.layers, self.hooks.top_k
        buf = self.max_tokens * L * K * 4
        mem = {"a": {"host_bytes": 0, "device_bytes": 0, "note": ""}}
        if "b" in self.modes:
            mem["b"] = {"host_bytes": self.store_b.nbytes + buf, "device_bytes": buf,
                        "note": "slot-indexed host store + a pageable [max_tokens] copy per step; device routing buffer"}
        for m in [m for m in ("c", "h") if m in self.modes]:
            mem[m] = {"host_bytes": self.store_c.nbytes + sum(p.numel() * 4 for p in self.pinned),
                      "device_bytes": 2 * buf,
                      "note": f"slot-indexed host store + pinned ring 2 x {buf / 1e6:.1f} MB; device routing + staging"}
        for m in [m for m in PINNED_MODES if m in self.modes]:
            side = self.sidecars[m].rss_bytes()
            mem[m] = {"host_bytes": self.args.buffers * (buf + self.max_tokens * 8),
                      "device_bytes": buf + self.max_tokens * 8,
                      "sidecar_rss_bytes": side,
                      "note": "engine side: one device routing + slots buffer"
                              + "; the host ring is a mapped file shared with the sidecar (pinned by cudaHostRegister, "
                                "counted here)" + (f"; the sidecar's RSS: {side / 2**20:.0f} MiB" if side else "")}
        for m in [m for m in ("d", "f") if m in self.modes]:
            dev = self.args.buffers * (buf + self.max_tokens * 8)
            side = self.sidecars[m].rss_bytes() if m in self.sidecars else None
            mem[m] = {"host_bytes": 0, "device_bytes": dev, "sidecar_rss_bytes": side,
                        "note": "engine side only: no host buffers (the IPC ring is device memory); the sidecar's "
                                "pinned ring and store live in its own process"
                                + (f" (its RSS: {side / 2**20:.0f} MiB)" if side else "")}
        return mem

    def close(self) -> dict | None:
        summary = {}
        for mode, capture in self.captures.items():
            summary[mode] = capture.close()
            stats = getattr(capture, "stats", None)
            if stats is not None:
                log(f"mode {mode} capture stats: {stats if not hasattr(stats, '__dict__') else vars(stats)}")
        for mode, sidecar in self.sidecars.items():
            rc = sidecar.stop()
            log(f"mode {mode} sidecar exited with status {rc}")
        return summary


def markdown(result: dict) -> str:
    lines = [f"# Routing capture benchmark ({result['device']})", "",
             f"Model: {result['model']}. Decode: {result['decode_path']}. Torch {result['torch']}, transformers "
             f"{result['transformers']}. Modes interleaved per round (rotating order), {result['block']} steps per mode in a row "
             f"({result['prefill_block']} at the prefill), the first of each run not recorded.", "",
             "| size | mode | steps | median ms | p99 ms | ratio vs a | paired ratio | capture call wall µs (med / p99) "
             "| of it before the launch µs | capture call CPU µs | sync wait µs | host MB | device MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for sec, res in result["sections"].items():
        for m, r in res.items():
            mem = result["memory"].get(m, {})
            ratio = f"{r['ratio_vs_a']:.4f}" if r["ratio_vs_a"] else "-"
            pr = f"{r['paired_ratio_median']:.4f}" if r["paired_ratio_median"] else "-"
            lines.append(f"| {sec} | {m} {MODE_NAMES[m]} | {r['steps']} | {r['median_ms']:.3f} | {r['p99_ms']:.3f} | "
                         f"{ratio} | {pr} | {r['capture_wall_us_median']:.0f} / {r['capture_wall_us_p99']:.0f} | "
                         f"{r['begin_wall_us_median']:.0f} | "
                         f"{r['capture_cpu_us_median']:.0f} | {r['sync_wait_us_median']:.0f} | "
                         f"{mem.get('host_bytes', 0) / 1e6:.2f} | "
                         f"{mem.get('device_bytes', 0) / 1e6:.2f} |")
    lines += ["", "Memory notes:"] + [f"- {m}: {v['note']}" for m, v in result["memory"].items() if v.get("note")]
    if result["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in result["notes"]]
    lines += ["", "ratio vs a: median step time / median of (a); paired ratio: median over rounds of a mode's median step in "
              "the round / (a)'s. Capture call: the engine thread's time in the capture code of a step (b: .cpu() "
              "+ scatter, includes waiting for the forward; c: D2D + D2H enqueue + event + previous step's scatter; "
              "d-g: begin_step + end_step with the slot mapping; g, h: the tap's write is in the graph, not here). "
              "Sync wait: the engine's final sync, i.e. the GPU work still left when the CPU's part of the step was "
              "done; capture CPU work after the launch is hidden while it is shorter than (a)'s sync wait. Mode d's own GPU work runs in the sidecar (D2H of the raw rows "
              "on its stream after the engine's event, f: pack kernel + D2H) and overlaps the engine's next step, which "
              "is of the same mode for every recorded step when the block is over 1; mode e's D2H runs on the engine's "
              "stream and its sidecar does no GPU work.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_model_args(p)
    p.add_argument("--sizes", default="1,32,128,256", help="decode batch sizes (comma list; empty: none)")
    p.add_argument("--prefill-tokens", type=int, default=8192, help="one prefill chunk of this many tokens (0: none)")
    p.add_argument("--context", type=int, default=512, help="static KV positions per decode sequence")
    p.add_argument("--steps", type=int, default=500, help="rounds per decode size (each round: one step per mode)")
    p.add_argument("--prefill-steps", type=int, default=12, help="rounds of the prefill chunk")
    p.add_argument("--block", type=int, default=8,
                   help="decode steps per mode in a row within a round; the first is not recorded (1: one step per mode, "
                        "each recorded, so a mode's leftover GPU work lands in the next mode's step)")
    p.add_argument("--prefill-block", type=int, default=3, help="as --block, for the prefill chunk")
    p.add_argument("--warmup", type=int, default=10, help="untimed rounds per decode size")
    p.add_argument("--prefill-warmup", type=int, default=2)
    p.add_argument("--min-rounds", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=420.0, help="whole run incl. build; sections stop early to fit")
    p.add_argument("--modes", default="a,b,c,d,e,f,g,h", help="comma list of " + ", ".join(MODES) + "; a is required")
    p.add_argument("--mode-d", choices=["sidecar", "oracle", "off"], default=None,
                   help="default: sidecar with --sidecar-cmd, else oracle on cpu and off on cuda")
    p.add_argument("--sidecar-cmd")
    p.add_argument("--buffers", type=int, default=4, help="RoutingCapture handshake ring depth")
    p.add_argument("--begin-early", action=argparse.BooleanOptionalAction, default=True,
                   help="d, e: begin_step for the next step right after end_step (after the launch); "
                        "--no-begin-early calls it before each launch")
    p.add_argument("--no-graph", action="store_true", help="eager decode (no CUDA graphs)")
    p.add_argument("--reserve-gib", type=float, default=6.0, help="GPU memory kept free beside the static KV cache")
    p.add_argument("--work-dir", help="sidecar socket and store (default: a temp dir)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.device == "cuda":
        args.device = f"cuda:{torch.cuda.current_device()}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    bench = Bench(args)
    if "a" not in bench.modes:
        raise SystemExit("--modes must include a (the reference)")
    unknown = [m for m in bench.modes if m not in MODES]
    if unknown:
        raise SystemExit(f"--modes: unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    sections: dict[str, dict] = {}
    try:
        bench.setup_mode_d()
        bench.setup_decode()
        n_sections = len(bench.sizes) + (1 if bench.prefill else 0)
        for i, B in enumerate(bench.sizes):
            slice_s = (args.budget_s - (time.perf_counter() - _T_START)) / (n_sections - i) * 0.9
            log(f"decode B={B}: up to {args.steps} rounds, slice {slice_s:.0f} s")
            sections[f"decode {B}"] = bench.run_section(f"decode {B}", bench.decode_step, B, args.steps, args.warmup,
                                                        slice_s, args.block)
            log(f"decode B={B}: " + ", ".join(f"{m} {r['median_ms']:.3f} ms" for m, r in sections[f'decode {B}'].items()))
        if bench.prefill:
            g = torch.Generator(device="cpu").manual_seed(args.seed)
            ids = torch.randint(0, bench.model.config.vocab_size, (1, bench.prefill), generator=g).to(bench.device)
            slice_s = (args.budget_s - (time.perf_counter() - _T_START)) * 0.9
            log(f"prefill {bench.prefill} tokens: up to {args.prefill_steps} rounds, slice {slice_s:.0f} s")
            sections[f"prefill {bench.prefill}"] = bench.run_section(f"prefill {bench.prefill}", bench.prefill_step,
                                                                     ids, args.prefill_steps, args.prefill_warmup,
                                                                     slice_s, args.prefill_block)
        memory = bench.memory()
    finally:
        try:
            summary = bench.close()
        except Exception as e:  # noqa: BLE001 - do not hide the run's own error
            summary = f"close failed: {type(e).__name__}: {e}"
            log(summary)

    import transformers
    result = {
        "device": torch.cuda.get_device_name() if bench.cuda else f"cpu ({platform.processor() or platform.machine()})",
        "model": f"Qwen3-MoE {shape_from_args(args)}",
        "decode_path": ("CUDA graphs" if bench.graphs is not None else "eager") + f", static KV {args.context} positions",
        "graph_error": bench.graph_error,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "modes": {m: MODE_NAMES[m] for m in bench.modes}, "block": args.block, "prefill_block": args.prefill_block,
        "sections": sections, "memory": memory, "notes": bench.notes,
        "capture_summary": {m: str(v) for m, v in summary.items()} if isinstance(summary, dict) else str(summary),
        "args": vars(args), "wall_s": time.perf_counter() - _T_START,
    }
    (out / "bench.json").write_text(json.dumps(result, indent=1, default=str))
    md = markdown(result)
    (out / "bench.md").write_text(md)
    print(md)
    log(f"wrote {out / 'bench.md'} and {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
