#!/usr/bin/env python3
"""The whole R3 loop on one machine (issue #11, item 4): rollout -> sidecar store -> HTTP -> training forward.

Three processes in turn, so that each holds the model alone on the GPU:

1. ``--role rollout``: the reference engine (``r3_reference_engine.py``: continuous batching, paged KV slots,
   chunked prefill, bf16) rolls out ``--requests`` requests with ``r3.engine.RoutingCapture`` into ``r3 sidecar``
   (started here, ``--sidecar-cmd``); it writes ``rollout.json``: each finished request's tokens, prompt length and the
   engine's log-prob of every generated token (greedy). The store holds the routing.
2. ``r3 serve --store DIR`` on a free loopback port (``--serve-cmd``, default: the sidecar command with ``serve``).
3. ``--role trainer``: a separate process rebuilds the same weights from the seed, fetches every request's routing over
   HTTP with ``r3.trainer.ReplayClient`` (int64, checksum checked), and runs the training forward teacher-forced on
   prompt + response, as training differs from inference in practice: the requests in another order and composition
   (``--train-batch`` per forward, right padding, a plain Hugging Face forward with an attention mask instead of the
   paged one), every router in fp32, and once more after one optimizer step (AdamW on the routers and attention, a
   policy-gradient-style loss on the response tokens). Each of the two states runs without and with
   ``r3.replay.replay_routing``.

Reported per condition: the fraction of (token, layer) top-k sets the forward used that differ from the rollout's, the
fraction of tokens with at least one differing layer (over every position with stored routing: prompt and response,
not the final token), and the mean |log-prob(train) - log-prob(rollout)| over the response tokens. With replay the
routing difference must be exactly 0 (exit status 1 otherwise). ``--out DIR`` gets ``loop.json`` and ``loop.md``.

CPU smoke:  python r3_train_loop.py --device cpu --tiny --requests 6 --sidecar-cmd "<r3 sidecar command>" --out DIR
GPU:        python3 examples/python/r3_train_loop.py --device cuda --moe-intermediate 384 --out DIR \\
              --sidecar-cmd 'bundle/jre/bin/java $(cat bundle/jvm.flags) -cp bundle/r3-bundle.jar \\
              dev.routingreplay.examples.R3Command sidecar'
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE.parents[1] / "python"))  # the repo's python/ (r3.engine, r3.trainer, r3.replay)

import torch  # noqa: E402

from qwen3_moe_model import add_model_args, build_model, describe_reduction, resolve_dtype, shape_from_args  # noqa: E402

R3_PAPER = "the R3 paper reports about 10% of router decisions and 94% of tokens differing without replay"


def log(msg: str) -> None:
    print(f"[r3 loop {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------------------- rollout


def rollout(args: argparse.Namespace) -> int:
    """Role rollout: the reference engine with the sidecar capture; writes rollout.json into --work-dir."""
    import r3_reference_engine as ref

    work = Path(args.work_dir)
    eng_args = ref.build_arg_parser().parse_args([])
    for k, v in vars(args).items():  # model args, workload, device, seed
        if hasattr(eng_args, k) and v is not None:
            setattr(eng_args, k, v)
    eng_args.capture, eng_args.verify, eng_args.work_dir = "sidecar", False, str(work)
    eng_args.preempt_at, eng_args.abort_at = 6, 4  # one preempted and one aborted request, as in a real rollout
    device = eng_args.device
    if device == "cuda":
        device = eng_args.device = f"cuda:{torch.cuda.current_device()}"
    model = build_model(shape_from_args(eng_args), device, resolve_dtype(eng_args.dtype, device), eng_args.seed,
                        eng_args.experts_impl, log=log)
    hooks = ref.RouterHooks(model)
    capture, side = ref.make_capture(eng_args, hooks, eng_args.num_blocks * ref.BLOCK_SIZE, work, log)
    engine = ref.ReferenceEngine(model, hooks, capture, eng_args, device, log)
    try:
        result = engine.run()
        summary = capture.close()
    finally:
        rc = side.stop()
    if rc != 0:
        raise SystemExit(f"the sidecar exited with status {rc}: {side.log_tail()}")
    finished = [r for r in engine.all if r.state == "finished"]
    log(f"rollout: {result.steps} steps, {result.tokens} tokens, {len(finished)} finished, aborted {result.aborted}, "
        f"preempted {[p['rid'] for p in result.preempted]}, {result.seconds:.1f} s; sidecar {summary}")
    doc = {"store": str(work / "store"), "model": describe_reduction(shape_from_args(eng_args)),
           "requests": [{"id": r.rid, "tokens": r.tokens, "prompt_len": len(r.prompt), "logprobs": r.logprobs}
                        for r in finished]}
    (work / "rollout.json").write_text(json.dumps(doc))
    return 0


# ---------------------------------------------------------------------------------------------------------- trainer


class UsedRouting:
    """Forward hooks that record the expert ids each router hands to its experts (after any replay hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        from r3.replay import moe_routers
        self.routers = [m for _, m in moe_routers(model)]
        self.ids: list[torch.Tensor | None] = [None] * len(self.routers)
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.routers)]

    def _hook(self, i: int):
        def hook(module, args, output):
            self.ids[i] = output[2].detach()
        return hook

    def stacked(self) -> torch.Tensor:
        return torch.stack([t.to(self.ids[0].device) for t in self.ids], dim=1)  # type: ignore[union-attr]


def routers_in_fp32(model: torch.nn.Module) -> None:
    """Every router computes in fp32 (as trainers often keep it): weights cast, inputs cast on the way in."""
    from r3.replay import moe_routers
    for _, router in moe_routers(model):
        router.float()
        router.register_forward_pre_hook(lambda m, a: (a[0].float(),) + tuple(a[1:]))


def trainer(args: argparse.Namespace) -> int:
    """Role trainer: fetch over HTTP, teacher-forced forwards without and with replay, one optimizer step, again."""
    from r3.replay import batch_routing, compare_routing, replay_routing
    from r3.trainer import ReplayClient

    device = args.device if args.device != "cuda" else f"cuda:{torch.cuda.current_device()}"
    doc = json.loads(Path(args.rollout).read_text())
    requests = doc["requests"]
    client = ReplayClient(args.url)
    routing = {}
    t0 = time.perf_counter()
    for r in requests:
        routing[r["id"]] = torch.from_numpy(client.fetch(r["id"], dtype="int64"))
        want = len(r["tokens"]) - 1
        if routing[r["id"]].shape[0] != want:
            raise SystemExit(f"{r['id']}: the server holds {routing[r['id']].shape[0]} rows, the rollout forwarded "
                             f"{want} positions")
    fetched = sum(v.numel() for v in routing.values())
    log(f"trainer: fetched {len(routing)} requests ({fetched} ids) over HTTP in {time.perf_counter() - t0:.2f} s")

    shape = shape_from_args(args)
    model = build_model(shape, device, resolve_dtype(args.dtype, device), args.seed, args.experts_impl, log=log)
    routers_in_fp32(model)
    used = UsedRouting(model)
    order = list(requests)
    random.Random(args.seed + 99).shuffle(order)  # another composition than the engine's continuous batches
    batches = [order[i:i + args.train_batch] for i in range(0, len(order), args.train_batch)]

    def batch_tensors(batch):
        width = max(len(r["tokens"]) for r in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):  # right padding
            ids[i, :len(r["tokens"])] = torch.tensor(r["tokens"])
            mask[i, :len(r["tokens"])] = 1
        return ids.to(device), mask.to(device)

    def response_logprobs(logits, ids, batch):
        """Per request, the log-probs of its generated tokens, teacher-forced (position p from logits at p-1)."""
        lp = logits.float().log_softmax(-1)
        out = []
        for i, r in enumerate(batch):
            p0, n = r["prompt_len"], len(r["tokens"])
            out.append(lp[i, p0 - 1:n - 1].gather(-1, ids[i, p0:n, None]).squeeze(-1))
        return out

    def evaluate(replay: bool, grad: bool = False):
        """One pass over the batches; returns the routing mismatch and the log-prob difference (and the loss)."""
        live, rollout_rows, diffs, loss = [], [], [], None
        for batch in batches:
            ids, mask = batch_tensors(batch)
            rows = batch_routing([routing[r["id"]] for r in batch], mask)
            with torch.set_grad_enabled(grad):
                if replay:
                    with replay_routing(model, rows):
                        logits = model(input_ids=ids, attention_mask=mask).logits
                else:
                    logits = model(input_ids=ids, attention_mask=mask).logits
                lps = response_logprobs(logits, ids, batch)
                if grad:  # a policy-gradient-style surrogate: raise the log-prob of every sampled response token
                    term = -torch.cat(lps).mean() / len(batches)
                    term.backward()
                    loss = (loss or 0.0) + float(term.detach())
            live.append(used.stacked().cpu())
            rollout_rows.append(rows.cpu())
            for lp, r in zip(lps, batch):
                diffs.append((lp.detach().cpu() - torch.tensor(r["logprobs"])).abs())
        m = compare_routing(torch.cat(live), torch.cat(rollout_rows))
        d = torch.cat(diffs)
        return {"layer_fraction": m.layer_fraction, "token_fraction": m.token_fraction, "rows": m.rows,
                "tokens": m.tokens, "logprob_abs_diff_mean": float(d.mean()), "logprob_abs_diff_max": float(d.max()),
                "response_tokens": int(d.numel())}, loss

    results = {}
    for replay in (False, True):
        results[("before the step", replay)], _ = evaluate(replay)
        log(f"before the step, replay={replay}: {results[('before the step', replay)]}")
    # one optimizer step: routers and attention learn, experts stay (memory), replay on as R3 trains
    trainable = [p for n, p in model.named_parameters() if ".gate." in n or ".self_attn." in n]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=args.lr)
    _, loss = evaluate(True, grad=True)
    opt.step()
    opt.zero_grad(set_to_none=True)
    log(f"optimizer step: AdamW lr {args.lr} on {sum(p.numel() for p in trainable)} router and attention parameters, "
        f"loss {loss:.4f}")
    for replay in (False, True):
        results[("after one step", replay)], _ = evaluate(replay)
        log(f"after one step, replay={replay}: {results[('after one step', replay)]}")
    out = {"conditions": [{"state": s, "replay": rp, **v} for (s, rp), v in results.items()],
           "requests": len(requests), "train_batch": args.train_batch, "lr": args.lr, "loss": loss,
           "model": describe_reduction(shape), "router": "fp32", "device": torch.cuda.get_device_name()
           if device.startswith("cuda") else "cpu", "torch": torch.__version__}
    Path(args.result).write_text(json.dumps(out, indent=1))
    bad = [c for c in out["conditions"] if c["replay"] and c["layer_fraction"] != 0.0]
    return 1 if bad else 0


# ---------------------------------------------------------------------------------------------------------- driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def markdown(res: dict) -> str:
    lines = [f"# R3 loop ({res['device']})", "", f"Model: {res['model']}, router in {res['router']} in training. "
             f"{res['requests']} requests, training batches of {res['train_batch']} (right padding), AdamW lr "
             f"{res['lr']}.", "",
             "| state | replay | (token, layer) top-k sets differing | tokens with a differing layer | "
             "mean abs log-prob diff (response) | rows compared |", "|---|---|---|---|---|---|"]
    for c in res["conditions"]:
        lines.append(f"| {c['state']} | {'yes' if c['replay'] else 'no'} | {c['layer_fraction']:.4%} | "
                     f"{c['token_fraction']:.2%} | {c['logprob_abs_diff_mean']:.4f} | {c['rows']} |")
    lines += ["", f"For comparison, {R3_PAPER}.", ""]
    return "\n".join(lines)


def drive(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="r3-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    passthrough, skip = [], False
    for a in args.argv:  # everything but --out and --work-dir, which the roles get explicitly
        if skip:
            skip = False
        elif a in ("--out", "--work-dir"):
            skip = True
        elif not a.startswith(("--out=", "--work-dir=")):
            passthrough.append(a)
    t0 = time.perf_counter()
    log(f"rollout -> {work}")
    subprocess.run([*me, "--role", "rollout", "--work-dir", str(work), "--out", str(out), *passthrough], check=True)
    port = free_port()
    serve = args.serve_cmd or args.sidecar_cmd.replace(" sidecar", " serve", 1)
    line = f"exec {serve} --store {shlex.quote(str(work / 'store'))} --port {port}"
    log(f"serve: {line}")
    with open(work / "serve.log", "wb") as serve_log:
        server = subprocess.Popen(["bash", "-c", line], stdout=serve_log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"r3 serve did not come up: {(work / 'serve.log').read_text()[-2000:]}")
                time.sleep(0.2)
        result = work / "loop.json"
        rc = subprocess.run([*me, "--role", "trainer", "--url", url, "--rollout", str(work / "rollout.json"),
                             "--result", str(result), "--out", str(out), *passthrough]).returncode
    finally:
        server.terminate()
        server.wait(30)
    res = json.loads(result.read_text())
    res["wall_s"] = time.perf_counter() - t0
    res["rollout"] = json.loads((work / "rollout.json").read_text())["model"]
    (out / "loop.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (out / "loop.md").write_text(md)
    print(md)
    if rc != 0:
        log("FAILED: with replay the routing the training forward used differs from the rollout's")
    return rc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_model_args(p)
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--prompt-min", type=int, default=16)
    p.add_argument("--prompt-max", type=int, default=192)
    p.add_argument("--output-min", type=int, default=16)
    p.add_argument("--output-max", type=int, default=96)
    p.add_argument("--num-blocks", type=int, default=512, help="KV blocks of 16 slots in the engine")
    p.add_argument("--train-batch", type=int, default=4, help="requests per training forward")
    p.add_argument("--lr", type=float, default=1e-6, help="AdamW learning rate of the one optimizer step")
    p.add_argument("--sidecar-cmd", required=True, help="command line of 'r3 sidecar' (see sidecar_proc.py)")
    p.add_argument("--serve-cmd", help="command line of 'r3 serve' (default: --sidecar-cmd with 'serve')")
    p.add_argument("--work-dir", help="store, logs and rollout.json (default: a new temp dir)")
    p.add_argument("--out", required=True, help="loop.json and loop.md go here")
    p.add_argument("--role", choices=["drive", "rollout", "trainer"], default="drive", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--rollout", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.role == "rollout":
        return rollout(args)
    if args.role == "trainer":
        return trainer(args)
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
