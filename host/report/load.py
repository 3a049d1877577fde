"""Reading result files for the report, through the project's one schema (:mod:`device.schema`,
which also reads version-1 files, such as the committed ones and older Pis').

Every file goes through :func:`load`: device results (``device run`` / ``device bench``),
benchmark suite summaries and the advanced techniques' results.  A file that cannot be read
at all is one problem line.  A device result with a malformed field is still reported: the
field is shown as missing, with one problem line naming it (the schema alone would reject the
whole file).  What comes out is plain data: :class:`DeviceResult`, or the suite's / the
technique's dict.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from device import schema
from device.errors import UsageError
from device.stats import hist_bin_ms

TECHNIQUE_KINDS = schema.TechniqueResult.NAMES


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
    accuracy: dict | None = None       # device run --labels: the scorer's document

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


def _salvage(d: dict, name: str, problems: list[str]) -> tuple[dict, set[str]]:
    """``d`` with each malformed part a device result can do without replaced by a neutral
    value, one problem line each, so the schema can read the rest; and the names of the
    replaced top-level fields (shown as missing, not as the neutral value)."""
    d, bad = dict(d), set()
    for key in ("machine", "model", "memory"):
        if key in d and not isinstance(d[key], dict):
            problems.append(f"{name}: {key} is not an object ({repr(d[key])[:40]}); shown as missing")
            d[key] = {}
    if isinstance(d.get("stages"), dict):
        stages = {}
        for stage, st in d["stages"].items():
            try:
                schema.check_stat(stage, st)
                stages[stage] = st
            except schema.SchemaError as exc:
                problems.append(f"{name}: {exc}; shown as missing")
                stages[stage] = {"count": 0}
        d["stages"] = stages
    status = d.get("status")
    if d.get("kind") == "run" and not (isinstance(status, str) and (status in schema.STATUSES or (
            d.get("schema_version") == 1 and status.startswith("stopped by ")))):
        problems.append(f"{name}: status {repr(status)[:40]} is not one of {', '.join(schema.STATUSES)}; "
                        "shown as ?")
        d["status"], bad = "error", bad | {"status"}
    return d, bad


def _view(doc, name: str, problems: list[str], bad: set[str]) -> DeviceResult:
    """The fields of a run / bench document the report shows, each checked."""
    f = _Fields(name, problems)
    model = doc.model if isinstance(doc.model, dict) else {}
    xnn = model.get("xnnpack")
    run = isinstance(doc, schema.RunResult)
    d = doc.to_json()
    peak = f.number(d.get("memory") or {}, "peak_rss_kb", "memory.peak_rss_kb")
    return DeviceResult(
        name=name, kind=doc.kind, status="?" if "status" in bad else doc.status if run else "ok",
        error=doc.error if run else None, machine=doc.machine,
        model={"arch": f.text(model, "arch", "model.arch"), "sha256": f.text(model, "sha256", "model.sha256"),
               "threads": f.number(model, "threads", "model.threads", integer=True),
               "xnnpack": xnn if isinstance(xnn, bool) else None,
               "dtype": f.text(f.dict(model, "input", "model.input"), "dtype", "model.input.dtype"),
               "runtime": " ".join(v for v in (f.text(model, "runtime", "model.runtime"),
                                                f.text(model, "runtime_version", "model.runtime_version")) if v) or None},
        stages={str(k): _stage(f, str(k), v) for k, v in doc.stages.items()},
        budget_ms=f.number(d, "budget_ms", "budget_ms") if run else None,
        within_budget=f.number(d, "within_budget", "within_budget") if run else None,
        frames=doc.frames if run else f.number(d, "runs", "runs", integer=True) or 0,
        fps=f.number(d, "fps", "fps") if run else None,
        peak_rss_mb=None if peak is None else peak / 1024,
        accuracy=_accuracy(doc.accuracy) if run else None)


def _accuracy(acc) -> dict | None:
    """A run's ``accuracy`` when it has the shape the report draws (a square confusion over
    its classes), else None: a damaged section costs the table, not the report."""
    if not isinstance(acc, dict) or not isinstance(acc.get("frames"), int) or not acc["frames"]:
        return None
    classes, m = acc.get("classes"), acc.get("confusion")
    if not (isinstance(classes, list) and isinstance(m, list) and len(m) == len(classes)
            and all(isinstance(row, list) and len(row) == len(classes)
                    and all(isinstance(v, int) and v >= 0 for v in row) for row in m)):
        return None
    return acc


def _from_json(raw):
    """The schema's reading of ``raw``; any failure, even one the schema did not foresee for
    a malformed file, is one UsageError line here."""
    try:
        return schema.from_json(raw)
    except UsageError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UsageError(f"malformed result ({type(exc).__name__}: {exc})") from None


def load_one(path, problems: list[str]) -> Doc:
    """One file; UsageError (one line) when nothing in it can be reported."""
    path = Path(path)
    raw = _read(path)
    device_kind = isinstance(raw, dict) and raw.get("kind") in ("run", "bench")
    if device_kind and not isinstance(raw.get("stages"), dict):
        raise UsageError(f"{path.name}: result has no stages (the timings); re-run the job that wrote it")
    found: list[str] = []
    bad: set[str] = set()
    try:
        doc = _from_json(raw)
    except UsageError as exc:
        if not device_kind:
            raise UsageError(f"{path.name}: {exc}") from None
        fixed, bad = _salvage(raw, path.name, found)
        try:
            doc = _from_json(fixed)
        except UsageError:
            raise UsageError(f"{path.name}: {exc}") from None
    if doc.kind in ("run", "bench"):
        data = _view(doc, path.name, found, bad)
        problems += found
        return Doc(path, doc.kind, data)
    if doc.kind == "suite":
        return Doc(path, "suite", doc.to_json())
    if doc.kind == "technique":
        return Doc(path, doc.technique, {**doc.figures, "kind": doc.technique, "machine": doc.machine})
    raise UsageError(f"{path.name}: a {doc.kind} summary; host report renders device run / bench results, "
                     "suite summaries and technique results")


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
