"""Constant-memory latency statistics: exact count/min/max/mean/std and percentiles from a
log-spaced histogram, so a run of millions of frames does not grow the process.  The dict a
:class:`Stat` turns into is part of the result schema (:mod:`device.schema`)."""

from __future__ import annotations

import math

import numpy as np

# Histogram: bin i holds values in [LO * R**i, LO * R**(i+1)) nanoseconds; 1 us .. ~100 s at
# 1 % resolution, so percentiles are within 1 % of the exact value.
HIST_LO_NS = 1_000
HIST_RATIO = 1.01
_LOG_RATIO = math.log(HIST_RATIO)
HIST_BINS = int(math.log(1e8) / _LOG_RATIO) + 2
PERCENTILES = (50, 90, 99)


def _bin(ns: float) -> int:
    return 0 if ns < HIST_LO_NS else min(int(math.log(ns / HIST_LO_NS) / _LOG_RATIO) + 1, HIST_BINS - 1)


class Stat:
    """Streaming statistics of durations in nanoseconds: exact count/min/max/mean/std,
    percentiles from the histogram (clamped to the exact min/max)."""

    __slots__ = ("count", "total", "sq", "lo", "hi", "hist")

    def __init__(self):
        self.count = 0
        self.total = 0.0
        self.sq = 0.0
        self.lo = math.inf
        self.hi = 0
        self.hist = np.zeros(HIST_BINS, dtype=np.int64)

    def add(self, ns: int) -> None:
        self.count += 1
        self.total += ns
        self.sq += float(ns) * ns
        if ns < self.lo:
            self.lo = ns
        if ns > self.hi:
            self.hi = ns
        self.hist[_bin(ns)] += 1

    def percentile(self, p: float) -> float:
        """The p-th percentile in ns (the geometric middle of its bin)."""
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(p / 100 * self.count))
        i = int(np.searchsorted(np.cumsum(self.hist), rank))
        if i == 0:
            v = HIST_LO_NS / 2
        else:
            v = HIST_LO_NS * HIST_RATIO ** (i - 0.5)
        return float(min(max(v, self.lo), self.hi))

    def fraction_within(self, limit_ns: float) -> float:
        """Share of samples <= limit (bin-accurate; exact at the extremes)."""
        if not self.count:
            return math.nan
        if limit_ns >= self.hi:
            return 1.0
        if limit_ns < self.lo:
            return 0.0
        return float(self.hist[:_bin(limit_ns)].sum() / self.count)

    def to_dict(self) -> dict:
        if not self.count:
            return {"count": 0}
        mean = self.total / self.count
        var = max(0.0, self.sq / self.count - mean * mean)
        nz = np.nonzero(self.hist)[0]
        d = {"count": self.count, "min": self.lo / 1e6, "mean": mean / 1e6,
             "std": math.sqrt(var) / 1e6}
        for p in PERCENTILES:
            d[f"p{p}"] = self.percentile(p) / 1e6
        d["max"] = self.hi / 1e6
        d["histogram"] = {"bins": nz.tolist(), "counts": self.hist[nz].tolist()}
        return d


def hist_bin_ms(i: int) -> float:
    """The lower edge of histogram bin i, in milliseconds (for plotting)."""
    return 0.0 if i == 0 else HIST_LO_NS * HIST_RATIO ** (i - 1) / 1e6
