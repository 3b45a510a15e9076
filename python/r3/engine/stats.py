"""The counters of a :class:`~r3.engine.RoutingCapture`: :class:`CaptureStats`, :class:`Timing`, and the constant-memory
histogram behind them."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CaptureStats", "Timing"]


@dataclass(frozen=True)
class Timing:
    """A metered duration: how many samples, their total, and the median and 99th percentile (seconds; about 6% wide)."""

    count: int
    total: float
    p50: float
    p99: float


@dataclass(frozen=True)
class CaptureStats:
    """Counters of one :class:`RoutingCapture`.

    ``steps``: steps ended (:meth:`~RoutingCapture.end_step` or :meth:`~RoutingCapture.capture`), sent or not.
    ``dropped_steps``: of those, the ones never sent because the capture had detached (policy ``drop``).
    ``waits``: steps whose :meth:`~RoutingCapture.begin_step` had to block for a ``CONSUMED``.
    ``wait_seconds``: the time blocked waiting for ``CONSUMED``, one sample per step (0 when the buffer was free).
    ``call_seconds``: Python time inside ``capture``/``begin_step``/``end_step``, not counting that wait.
    ``last_consumed``: the last step id the sidecar acknowledged. ``detached``: the sidecar was lost (policy ``drop``).
    ``request_errors``: REQUEST_ERRORs received (one request's fault each; see :meth:`~RoutingCapture.request_errors`).
    """

    steps: int
    dropped_steps: int
    waits: int
    wait_seconds: Timing
    call_seconds: Timing
    last_consumed: int | None
    detached: bool
    request_errors: int = 0


class _Histogram:
    """Fixed log-scale histogram of durations: exact zeros, then 20 buckets a decade from 100 ns to 1000 s.

    Constant memory whatever the number of samples; quantiles are the geometric middle of their bucket (within about
    6%), clamped to the smallest and largest sample seen.
    """

    _PER_DECADE = 20
    _LOW_EXP = -7
    _BUCKETS = 10 * _PER_DECADE

    __slots__ = ("count", "total", "zeros", "below", "above", "buckets", "low", "high")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.zeros = 0
        self.below = 0
        self.above = 0
        self.buckets = [0] * self._BUCKETS
        self.low = math.inf
        self.high = 0.0

    def record(self, seconds: float) -> None:
        self.count += 1
        if seconds <= 0.0:
            self.zeros += 1
            return
        self.total += seconds
        self.low = min(self.low, seconds)
        self.high = max(self.high, seconds)
        i = int((math.log10(seconds) - self._LOW_EXP) * self._PER_DECADE)
        if i < 0:
            self.below += 1
        elif i >= self._BUCKETS:
            self.above += 1
        else:
            self.buckets[i] += 1

    def quantile(self, q: float) -> float:
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = self.zeros
        if rank <= seen:
            return 0.0
        seen += self.below
        if rank <= seen:
            return self.low
        for i, n in enumerate(self.buckets):
            seen += n
            if rank <= seen:
                mid: float = 10.0 ** ((i + 0.5) / self._PER_DECADE + self._LOW_EXP)
                return min(max(mid, self.low), self.high)
        return self.high

    def timing(self) -> Timing:
        return Timing(self.count, self.total, self.quantile(0.5), self.quantile(0.99))
