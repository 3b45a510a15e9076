#!/usr/bin/env python3
"""Where a RoutingCapture step's engine-thread time goes: runs r3_bridge_bench.py with the capture's internal steps
wrapped in timers, then prints the median per mode and part (µs per call). Experiment only; the wrapping adds a few
µs per part. Same arguments as the bench."""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "python"))

import numpy as np  # noqa: E402

import r3_bridge_bench  # noqa: E402
from r3 import engine  # noqa: E402

TIMES: dict = defaultdict(list)


def timed(owner, name: str) -> None:
    original = getattr(owner, name)

    def wrapper(self, *a, **k):
        t0 = time.perf_counter_ns()
        try:
            return original(self, *a, **k)
        finally:
            TIMES[(type(self).__name__, name)].append(time.perf_counter_ns() - t0)
    setattr(owner, name, wrapper)


for cls, names in ((engine.RoutingCapture, ("end_step", "begin_step", "_end", "_drain", "_flush", "_send")),
                   (engine._PinnedHostBuffers, ("copy_slots", "finish_views", "record_ready", "copied", "views",
                                               "stream_key")),
                   (engine._CudaBuffers, ("copy_slots", "record_ready", "views", "wait_consumed", "stream_key"))):
    for n in names:
        timed(cls, n)

if __name__ == "__main__":
    rc = r3_bridge_bench.main(sys.argv[1:])
    print("| part | calls | median µs | p90 µs |\n|---|---|---|---|")
    for (cls, name), v in sorted(TIMES.items()):
        a = np.asarray(v) / 1e3
        print(f"| {cls}.{name} | {len(a)} | {np.median(a):.1f} | {np.percentile(a, 90):.1f} |")
    sys.exit(rc)
