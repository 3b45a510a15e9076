#!/usr/bin/env python3
"""GPU time of the capture's own kernels inside a CUDA graph, without the model around them: 48 router-shaped layers
(a [tokens, hidden] x [hidden, experts] matmul and a top-8, the next layer's input depending on the last), captured
as one graph per variant, replayed in interleaved blocks and timed with CUDA events:

  none      the routers alone
  copy      + one ``routing[:n, layer].copy_(ids)`` per layer in its hook (int64 ids into an int32 buffer)
  tap       + ``r3.tap.RouterTap``: the hooks keep references, one stack into the int64 scratch and one cast copy
  tap64     + the tap into an int64 buffer: one stack kernel

Prints the median replay time per variant and size, and each variant minus ``none`` (µs). CUDA only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from r3.tap import RouterTap  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="1,32,256,8192")
    p.add_argument("--layers", type=int, default=48)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--experts", type=int, default=128)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--block", type=int, default=5)
    a = p.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    L, K = a.layers, a.top_k
    gates = [torch.randn(a.hidden, a.experts, device=dev, dtype=torch.bfloat16) for _ in range(L)]
    mix = torch.randn(a.experts, a.hidden, device=dev, dtype=torch.bfloat16) * 0.01
    print(f"# capture kernels in a graph ({torch.cuda.get_device_name()}), {L} layers, top {K}, "
          f"{a.rounds} rounds of {a.block} replays per variant\n")
    print("| tokens | variant | median µs | minus none µs |\n|---|---|---|---|")
    for n in [int(s) for s in a.sizes.split(",")]:
        x = torch.randn(n, a.hidden, device=dev, dtype=torch.bfloat16)
        r32 = torch.zeros(n, L, K, dtype=torch.int32, device=dev)
        r64 = torch.zeros(n, L, K, dtype=torch.int64, device=dev)
        tap = RouterTap(L, K)

        def forward(variant: str) -> None:
            h = x
            for layer in range(L):
                logits = h @ gates[layer]
                ids = torch.topk(logits.float().softmax(-1), K, dim=-1).indices
                if variant == "copy":
                    r32[:n, layer].copy_(ids)
                elif variant.startswith("tap"):
                    tap.record(layer, ids)
                h = h + logits @ mix
            if variant == "tap":
                tap.write(r32)
            elif variant == "tap64":
                tap.write(r64)

        graphs = {}
        pool = torch.cuda.graph_pool_handle()
        for v in ("none", "copy", "tap", "tap64"):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    forward(v)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                forward(v)
            graphs[v] = g
        torch.cuda.synchronize()
        # the tap variants must hold the same ids as the copies
        graphs["copy"].replay()
        graphs["tap"].replay()
        graphs["tap64"].replay()
        torch.cuda.synchronize()
        copy_ref = r32.clone()
        graphs["tap"].replay()
        torch.cuda.synchronize()
        assert torch.equal(r32, copy_ref) and torch.equal(r64.to(torch.int32), copy_ref), "tap != copy"
        times = {v: [] for v in graphs}
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
        order = list(graphs)
        for r in range(a.rounds):
            k = r % len(order)
            for v in order[k:] + order[:k]:
                for i in range(a.block):
                    ev[0].record()
                    graphs[v].replay()
                    ev[1].record()
                    ev[1].synchronize()
                    if i:
                        times[v].append(ev[0].elapsed_time(ev[1]) * 1e3)
        base = float(np.median(times["none"]))
        for v, t in times.items():
            m = float(np.median(t))
            print(f"| {n} | {v} | {m:.1f} | {m - base:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
