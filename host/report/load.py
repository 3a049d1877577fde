"""Reading result files for the report: the one place that knows their formats.

Every file goes through :func:`load`: device results (``device run`` / ``device bench``),
benchmark suite summaries (``kind: "suite"``) and the advanced techniques' results.  A file
that cannot be read at all is one problem line; a device result with a malformed field is
still reported, with that value shown as missing and one problem line naming the field.  What
comes out is plain data (:class:`DeviceResult`, or the checked dict of a suite / technique).

This module is the single switch point for the project's result schema: it reads the device
results through :mod:`device.results` (schema_version 1) today.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from device.errors import UsageError
from device.results import KINDS, SCHEMA_VERSION, hist_bin_ms

TECHNIQUE_KINDS = ("distill", "prune_channels", "export_onnx")


@dataclass
class Stage:
    """One stage's statistics in milliseconds; ``hist``: (low edge, high edge, count) bins."""
    count: int = 0
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    hist: list[tuple[float, float, int]] = field(default_factory=list)


@dataclass
class DeviceResult:
    name: str
    kind: str                          # "run" | "bench"
    status: str
    error: str | None
    machine: dict
    model: dict                        # arch, sha256, threads, xnnpack, dtype (None when unknown)
    stages: dict[str, Stage]
    budget_ms: float | None
    within_budget: float | None
    frames: int
    fps: float | None
    peak_rss_mb: float | None

    @property
    def headline(self) -> str:
        """The stage a row and a latency plot show: the per-frame total for a run."""
        return "total" if "total" in self.stages else "inference"


@dataclass
class Doc:
    """One loaded file: ``kind`` is "run", "bench", "suite" or a technique kind; ``data`` a
    :class:`DeviceResult` for device results, the checked dict otherwise."""
    path: Path
    kind: str
    data: object

    @property
    def name(self) -> str:
        return self.path.name


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such result file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read result {path}: {exc}") from None


class _Fields:
    """Typed reads from a dict; a value of the wrong type becomes None and one problem line."""

    def __init__(self, name: str, problems: list[str]):
        self.name, self.problems = name, problems

    def bad(self, where: str, value, want: str) -> None:
        shown = repr(value)
        self.problems.append(f"{self.name}: {where} is not {want} ({shown[:40]}); shown as missing")

    def dict(self, d: dict, key: str, where: str) -> dict:
        v = d.get(key)
        if v is None:
            return {}
        if not isinstance(v, dict):
            self.bad(where, v, "an object")
            return {}
        return v

    def number(self, d: dict, key: str, where: str, integer: bool = False):
        v = d.get(key)
        if v is None:
            return None
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or not math.isfinite(v) or v < 0:
            self.bad(where, v, "a whole number >= 0" if integer else "a finite number >= 0")
            return None
        return v

    def text(self, d: dict, key: str, where: str) -> str | None:
        v = d.get(key)
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float, bool)):
            return str(v)
        self.bad(where, v, "text")
        return None


def _stage(f: _Fields, name: str, st) -> Stage:
    where = f"stages.{name}"
    if not isinstance(st, dict):
        f.bad(where, st, "an object")
        return Stage()
    count = f.number(st, "count", f"{where}.count", integer=True) or 0
    out = Stage(count=count)
    if not count:
        return out
    for q in ("p50", "p90", "p99", "max"):
        setattr(out, q, f.number(st, q, f"{where}.{q}"))
    hist = st.get("histogram")
    try:
        bins, counts = hist["bins"], hist["counts"]
        if len(bins) != len(counts) or not all(isinstance(v, int) and v >= 0 for v in [*bins, *counts]):
            raise ValueError
        out.hist = [(hist_bin_ms(b), hist_bin_ms(b + 1), c) for b, c in zip(bins, counts)]
    except (KeyError, TypeError, ValueError):
        f.bad(f"{where}.histogram", hist, "bins and counts")
    return out


def device_result(name: str, d: dict, problems: list[str]) -> DeviceResult:
    """A device result file's content, every field the report reads checked."""
    if d.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(f"{name}: result schema_version {d.get('schema_version')!r} is not supported "
                         f"(this version reads {SCHEMA_VERSION}); re-run the benchmark")
    if d.get("kind") not in KINDS:
        raise UsageError(f"{name}: result kind {d.get('kind')!r} is not one of {', '.join(KINDS)}")
    f = _Fields(name, problems)
    model = f.dict(d, "model", "model")
    xnn = model.get("xnnpack")
    stages = d.get("stages")
    if not isinstance(stages, dict):
        raise UsageError(f"{name}: result has no stages (the timings); re-run the job that wrote it")
    peak = f.number(f.dict(d, "memory", "memory"), "peak_rss_kb", "memory.peak_rss_kb")
    return DeviceResult(
        name=name, kind=d["kind"], status=f.text(d, "status", "status") or "?",
        error=f.text(d, "error", "error"), machine=f.dict(d, "machine", "machine"),
        model={"arch": f.text(model, "arch", "model.arch"), "sha256": f.text(model, "sha256", "model.sha256"),
               "threads": f.number(model, "threads", "model.threads", integer=True),
               "xnnpack": xnn if isinstance(xnn, bool) else None,
               "dtype": f.text(f.dict(model, "input", "model.input"), "dtype", "model.input.dtype")},
        stages={str(k): _stage(f, str(k), v) for k, v in stages.items()},
        budget_ms=f.number(d, "budget_ms", "budget_ms"),
        within_budget=f.number(d, "within_budget", "within_budget"),
        frames=f.number(d, "frames", "frames", integer=True) or 0, fps=f.number(d, "fps", "fps"),
        peak_rss_mb=None if peak is None else peak / 1024)


def check_suite(d: dict, name: str) -> dict:
    if d.get("schema_version") != 1:
        raise UsageError(f"{name}: suite schema_version {d.get('schema_version')} is not supported "
                         "(this version reads 1); re-run python -m benchmarks.suite")
    if not isinstance(d.get("variants"), dict) or not d["variants"]:
        raise UsageError(f"{name}: suite file has no variants; re-run python -m benchmarks.suite")
    if not isinstance(d.get("machine"), dict):
        d = {**d, "machine": {}}
    return d


def load_one(path, problems: list[str]) -> Doc:
    """One file; UsageError when nothing in it can be reported."""
    path = Path(path)
    d = _read(path)
    if not isinstance(d, dict) or "schema_version" not in d:
        raise UsageError(f"{path.name}: not an mnist-edge result file (no schema_version)")
    kind = d.get("kind")
    if kind == "suite":
        return Doc(path, kind, check_suite(d, path.name))
    if kind in TECHNIQUE_KINDS:
        return Doc(path, kind, d)
    return Doc(path, kind, device_result(path.name, d, problems))


def load(paths) -> tuple[list[Doc], list[str]]:
    """The files that could be read, and one line for each problem met (a file skipped, or a
    field shown as missing)."""
    docs, problems = [], []
    for p in paths:
        try:
            docs.append(load_one(p, problems))
        except UsageError as exc:
            problems.append(f"{exc}; skipped")
    return docs, problems
