"""Result files: the one versioned schema that ``device run`` / ``device bench`` write and that
host reports read.  Constant-memory latency statistics (a log-spaced histogram), so a run of
millions of frames does not grow the process.

Format history (``SCHEMA_VERSION``):
  1 - first version: kind ("run" | "bench"), machine, model, stages{name: stats}, memory,
      budget_ms, within_budget, frames, fps, status.  Stats: count, min, mean, std, p50, p90,
      p99, max (milliseconds) and the histogram (bin edges implicit: ``HIST_*``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from device.errors import UsageError
from device.fsio import atomic_write_json

SCHEMA_VERSION = 1
KINDS = ("run", "bench")
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


@dataclass
class Result:
    """One result file.  ``validate`` checks what reports rely on."""
    kind: str
    machine: dict
    model: dict
    stages: dict
    memory: dict
    budget_ms: float | None = None
    within_budget: float | None = None
    frames: int = 0
    fps: float | None = None
    extra: dict = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    def validate(self) -> "Result":
        if self.schema_version != SCHEMA_VERSION:
            raise UsageError(f"result schema_version {self.schema_version} is not supported "
                             f"(this version reads {SCHEMA_VERSION}); re-run the benchmark")
        if self.kind not in KINDS:
            raise UsageError(f"result kind {self.kind!r} is not one of {KINDS}")
        for name, st in self.stages.items():
            if not isinstance(st, dict) or "count" not in st:
                raise UsageError(f"result stage {name!r} has no statistics")
        return self

    def to_json(self) -> dict:
        d = {"schema_version": self.schema_version, "kind": self.kind, "created": self.created,
             "status": self.status, "error": self.error, "machine": self.machine,
             "model": self.model, "budget_ms": self.budget_ms,
             "within_budget": self.within_budget, "frames": self.frames, "fps": self.fps,
             "stages": self.stages, "memory": self.memory}
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Result":
        if not isinstance(d, dict) or "schema_version" not in d:
            raise UsageError("not an mnist-edge result file (no schema_version)")
        known = {"schema_version", "kind", "created", "status", "error", "machine", "model",
                 "budget_ms", "within_budget", "frames", "fps", "stages", "memory"}
        try:
            r = cls(kind=d["kind"], machine=d["machine"], model=d["model"], stages=d["stages"],
                    memory=d["memory"], budget_ms=d.get("budget_ms"),
                    within_budget=d.get("within_budget"), frames=d.get("frames", 0),
                    fps=d.get("fps"), status=d.get("status", "ok"), error=d.get("error"),
                    created=d.get("created", ""), schema_version=d["schema_version"],
                    extra={k: v for k, v in d.items() if k not in known})
        except KeyError as exc:
            raise UsageError(f"result file lacks field {exc}; re-run the benchmark") from None
        return r.validate()

    def write(self, path) -> None:
        atomic_write_json(path, self.to_json())


def load_result(path) -> Result:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read result {path}: {exc}") from None
    try:
        return Result.from_json(d)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
