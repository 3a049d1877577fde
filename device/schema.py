"""The one schema of every result file the project writes, and the only place that builds,
reads and validates them (pyperf's ``_bench.py`` is the model).

A document is a flat JSON object: the header (``schema_version``, ``kind``, ``created``,
``machine``, ``tool``) and the typed section of its kind, whose fields are declared here, one
dataclass per kind.  Writers build the dataclass and call :meth:`Document.write`; readers call
:func:`load` and get the dataclass back, validated; reports and comparisons are computed from
those, never from live objects.  Model manifests (``model.json``) keep their own format
(:mod:`device.manifest`): they describe a model, not a measurement.

Format history (``SCHEMA_VERSION``):
  1 - (2026-11) run / bench results: stages{name: stats}, memory, budget_ms, within_budget,
      frames, fps, status; kind-specific fields merged into the top level undeclared; suite,
      technique and benchmark summaries each built their own header; two timestamp formats.
  2 - one header for every kind (``created`` always ``YYYY-MM-DDTHH:MM:SSZ``, ``tool``);
      every field declared per kind.  run: ``status`` is one of STATUSES with ``stop_reason``;
      counters in ``counts``; ``timing`` splits ``model_load_ms`` (all of ``Model()``: read,
      verify, runtime import, build) from
      ``interpreter_init_ms`` (build only) in run and bench alike (v1's ``init_ms`` meant the
      first in bench and the second in run); the model records ``verified`` ("manifest" or
      "unverified").  Benchmark summaries are kind ``benchmark`` with a ``name``.
  2 (same version, new kinds) - ``fleet_rollout`` and ``fleet_outcome``: a fleet rollout
      (fleet/deploy.yml, fleet/rollback.yml) and each host's outcome in it, written by
      ``device/release.py record`` beside the host's results in ``reports/fleet/HOST/``.
  Version 1 files are read by :func:`upgrade`, so older results (a Pi's, committed ones)
  still render.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

from device.errors import UsageError
from device.fsio import atomic_write_json

SCHEMA_VERSION = 2
HEADER = ("schema_version", "kind", "created", "machine", "tool")
STATUSES = ("ok", "stopped", "no_frames", "source_error", "error", "running")
RUN_STAGES = ("capture", "preprocess", "inference", "postprocess", "total")
STAT_KEYS = ("count", "min", "mean", "std", "p50", "p90", "p99", "max", "histogram")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tool_info() -> dict:
    from device import __version__

    return {"name": "mnist-edge", "version": __version__}


class SchemaError(UsageError):
    """A result file that is not what its header says."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise SchemaError(what)


def check_stat(name: str, st) -> None:
    """A stage's statistics: ``{"count": 0}`` or every key, numbers in order."""
    _need(isinstance(st, dict) and isinstance(st.get("count"), int) and st["count"] >= 0,
          f"stage {name!r} has no statistics")
    if st["count"] == 0:
        return
    missing = [k for k in STAT_KEYS if k not in st]
    _need(not missing, f"stage {name!r} lacks {', '.join(missing)}")
    nums = [st[k] for k in ("min", "p50", "p90", "p99", "max")]
    _need(all(isinstance(v, (int, float)) and math.isfinite(v) for v in nums),
          f"stage {name!r} has non-numeric percentiles")
    h = st["histogram"]
    _need(isinstance(h, dict) and isinstance(h.get("bins"), list) and isinstance(h.get("counts"), list)
          and len(h["bins"]) == len(h["counts"]), f"stage {name!r} has a malformed histogram")


@dataclass(kw_only=True)
class Document:
    """The header every file carries; subclasses declare their kind's fields."""
    KIND: ClassVar[str] = ""
    machine: dict = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    tool: dict = field(default_factory=tool_info)
    schema_version: int = SCHEMA_VERSION

    @property
    def kind(self) -> str:
        return self.KIND

    def validate(self) -> "Document":
        _need(self.schema_version == SCHEMA_VERSION, f"schema_version {self.schema_version} is not "
              f"{SCHEMA_VERSION}")
        _need(isinstance(self.machine, dict), "machine is not an object")
        return self

    def to_json(self) -> dict:
        d = {"schema_version": self.schema_version, "kind": self.KIND, "created": self.created,
             "machine": self.machine, "tool": self.tool}
        for f in dataclasses.fields(self):
            if f.name not in d:
                d[f.name] = getattr(self, f.name)
        return d

    def write(self, path) -> None:
        atomic_write_json(path, self.validate().to_json())

    @classmethod
    def from_json(cls, d: dict) -> "Document":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in d if k not in names and k != "kind")
        _need(not unknown, f"{cls.KIND} result has unknown field(s) {', '.join(unknown)} "
              "(written by another version?)")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in d]
        _need(not missing, f"{cls.KIND} result lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k != "kind"}).validate()


# -- device run / device bench -----------------------------------------------------------------
@dataclass(kw_only=True)
class RunResult(Document):
    """``device run``: one camera or replay session."""
    KIND: ClassVar[str] = "run"
    model: dict                      # Model.describe()
    source: dict                     # Source.describe()
    status: str                      # one of STATUSES
    stop_reason: str | None = None   # "end of source", "frame limit", "duration", "SIGINT", ...
    error: str | None = None
    read: str = "digit"              # "digit" (one per frame) or "number" (every digit in view)
    frames: int = 0
    duration_s: float = 0.0
    fps: float | None = None
    budget_ms: float = 5.0
    within_budget: float | None = None
    stages: dict = field(default_factory=dict)       # RUN_STAGES -> Stat.to_dict()
    memory: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)       # no_digit, unreadable, dropped, digits
    predictions: list = field(default_factory=lambda: [0] * 10)   # frames (digits) per class
    timing: dict = field(default_factory=dict)       # model_load_ms, interpreter_init_ms
    accuracy: dict | None = None     # with --labels: frames scored, correct, confusion ...
    outputs: dict = field(default_factory=dict)      # side files: {"frames_out": {"path", "error"}}
    total_definition: str = "preprocess + inference + postprocess, from frame available"

    def validate(self):
        super().validate()
        _need(self.status in STATUSES, f"run status {self.status!r} is not one of {', '.join(STATUSES)}")
        _need(isinstance(self.frames, int) and self.frames >= 0, "run frames is not a count")
        _need(isinstance(self.stages, dict), "run stages is not an object")
        for name, st in self.stages.items():
            check_stat(name, st)
        _need(isinstance(self.model, dict) and isinstance(self.source, dict), "run model/source missing")
        _need(isinstance(self.budget_ms, (int, float)) and math.isfinite(self.budget_ms) and self.budget_ms > 0,
              "run budget_ms is not a positive number")
        _need(self.status != "ok" or self.frames > 0, "a run with no frames cannot be status ok")
        return self

    @property
    def p99_total(self) -> float | None:
        st = self.stages.get("total", {})
        return st.get("p99") if st.get("count") else None


@dataclass(kw_only=True)
class BenchResult(Document):
    """``device bench``: the interpreter alone, like LiteRT's benchmark_model."""
    KIND: ClassVar[str] = "bench"
    model: dict
    runs: int
    warmup_runs: int
    stages: dict                     # {"inference": Stat.to_dict()}
    memory: dict
    timing: dict                     # model_load_ms, interpreter_init_ms, first_inference_ms

    def validate(self):
        super().validate()
        _need("inference" in self.stages, "bench result has no inference stage")
        for name, st in self.stages.items():
            check_stat(name, st)
        return self


# -- host and benchmark summaries ----------------------------------------------------------------
@dataclass(kw_only=True)
class SuiteResult(Document):
    """``python -m benchmarks.suite``: every model variant x threads x XNNPACK."""
    KIND: ClassVar[str] = "suite"
    quick: bool
    variants: dict                   # name -> {arch, conversion, bytes, mnist_accuracy, bench, clip, ...}
    reference: str
    shipped_variant: str
    repeats: int
    runs_per_bench: int
    shipped_sha256: str | None = None
    edge_int8_reproduces_shipped: bool | None = None
    threads: list = field(default_factory=list)
    clip: dict = field(default_factory=dict)
    files_dir: str | None = None
    wall_seconds: float | None = None

    VARIANT_KEYS: ClassVar[tuple] = ("bytes", "mnist_accuracy", "bench")

    def validate(self):
        super().validate()
        _need(isinstance(self.variants, dict) and self.variants, "suite file has no variants")
        for name, v in self.variants.items():
            missing = [k for k in self.VARIANT_KEYS if k not in (v or {})]
            _need(not missing, f"suite variant {name!r} lacks {', '.join(missing)}")
        return self


@dataclass(kw_only=True)
class TechniqueResult(Document):
    """``host distill`` / ``prune-channels`` / ``export-onnx`` / ``finetune``: one measured
    technique.  The section is the technique's own figures; ``technique`` says which."""
    KIND: ClassVar[str] = "technique"
    technique: str                   # distill | prune_channels | export_onnx | finetune
    figures: dict
    wall_seconds: float | None = None

    NAMES: ClassVar[tuple] = ("distill", "prune_channels", "export_onnx", "finetune")

    def validate(self):
        super().validate()
        _need(self.technique in self.NAMES, f"unknown technique {self.technique!r}")
        _need(isinstance(self.figures, dict), "technique figures is not an object")
        return self


@dataclass(kw_only=True)
class BenchmarkResult(Document):
    """A benchmark script's summary (``benchmarks/*.py``): what it measured against which
    targets; ``details`` holds the per-benchmark breakdown."""
    KIND: ClassVar[str] = "benchmark"
    name: str
    quick: bool = False
    targets: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def validate(self):
        super().validate()
        _need(isinstance(self.name, str) and self.name, "benchmark result has no name")
        return self


# -- a fleet of Pis (fleet/*.yml) ----------------------------------------------------------------
FLEET_ACTIONS = ("deploy", "rollback")


@dataclass(kw_only=True)
class FleetRollout(Document):
    """One run of fleet/deploy.yml or rollback.yml: which hosts it aimed at, the canary batch,
    the release it shipped.  A host it names without an outcome of this rollout was not
    reached (the rollout stopped first, or the host was unreachable)."""
    KIND: ClassVar[str] = "fleet_rollout"
    rollout: str                     # id, also in each host's outcome
    action: str                      # FLEET_ACTIONS
    hosts: list
    canary: list = field(default_factory=list)
    batches: list = field(default_factory=list)      # serial batches after the canary
    release: str | None = None
    content: str | None = None
    model_sha256: str | None = None

    def validate(self):
        super().validate()
        _need(isinstance(self.rollout, str) and self.rollout, "fleet rollout has no id")
        _need(self.action in FLEET_ACTIONS, f"fleet action {self.action!r} is not one of {FLEET_ACTIONS}")
        _need(isinstance(self.hosts, list) and all(isinstance(h, str) for h in self.hosts + list(self.canary)),
              "fleet hosts / canary are not lists of names")
        return self


@dataclass(kw_only=True)
class FleetOutcome(Document):
    """What a rollout did to one host (``machine``: the target's architecture, OS and Python as
    it answered).  ``gate``: p50_ms, p99_ms, frames, within_budget, golden {status, identical,
    images}; ``results``: the bench / run result files beside this record."""
    KIND: ClassVar[str] = "fleet_outcome"
    host: str
    rollout: str
    action: str
    outcome: str                     # OUTCOMES
    detail: str = ""
    board: str | None = None
    release: str | None = None       # the release this rollout shipped
    current: str | None = None       # `current` on the host afterwards
    previous: str | None = None      # and before
    failed_step: str | None = None
    runtime: str | None = None
    budget_ms: float | None = None
    gate: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)

    OUTCOMES: ClassVar[tuple] = ("switched", "kept", "rolled back", "failed")

    def validate(self):
        super().validate()
        _need(isinstance(self.host, str) and self.host, "fleet outcome has no host")
        _need(self.outcome in self.OUTCOMES, f"fleet outcome {self.outcome!r} is not one of {self.OUTCOMES}")
        _need(self.action in FLEET_ACTIONS, f"fleet action {self.action!r} is not one of {FLEET_ACTIONS}")
        _need(isinstance(self.gate, dict) and isinstance(self.results, dict), "fleet gate / results not objects")
        return self


KINDS: dict[str, type[Document]] = {c.KIND: c for c in (RunResult, BenchResult, SuiteResult,
                                                         TechniqueResult, BenchmarkResult,
                                                         FleetRollout, FleetOutcome)}


# -- reading ---------------------------------------------------------------------------------
def upgrade(d: dict) -> dict:
    """A version-1 document as version 2 (the fields it had, moved where v2 declares them)."""
    d = dict(d)
    kind = d.get("kind")
    d["schema_version"] = SCHEMA_VERSION
    created = str(d.get("created") or "")
    if "+00:00" in created:
        d["created"] = created.replace("+00:00", "Z")
    d.setdefault("tool", {"name": "mnist-edge", "version": "0.1.0 (schema 1)"})
    d.setdefault("machine", {})
    if kind == "run":
        status = d["status"] = str(d.get("status") or "ok")
        if status.startswith("stopped by "):
            d["status"], d["stop_reason"] = "stopped", status[len("stopped by "):]
        if d.get("frames", 0) == 0 and d["status"] == "ok":
            d["status"] = "no_frames"
        d["counts"] = {k: d.pop(k, 0) for k in ("no_digit", "unreadable", "dropped")}
        d["predictions"] = d.pop("prediction_counts", [0] * 10)
        d["timing"] = {"interpreter_init_ms": d.pop("init_ms", None)}
        d.setdefault("source", {})
        d.setdefault("duration_s", 0.0)
        d["model"] = {**d.get("model", {}), "verified": "manifest (schema 1: not recorded)"}
        if d.get("budget_ms") is None:
            d["budget_ms"] = 5.0
    elif kind == "bench":
        d["timing"] = {"model_load_ms": d.pop("init_ms", None),
                       "first_inference_ms": d.pop("first_inference_ms", None)}
        d.setdefault("warmup_runs", 0)
        d.setdefault("runs", d.get("frames", 0))
        for k in ("frames", "fps", "budget_ms", "within_budget", "status", "error"):
            d.pop(k, None)
    elif kind in TechniqueResult.NAMES:
        header = {k: d.pop(k) for k in HEADER if k in d}
        wall = d.pop("wall_seconds", None)
        d = {**header, "kind": "technique", "technique": kind, "figures": d, "wall_seconds": wall}
    elif kind not in KINDS:
        header = {k: d.pop(k) for k in HEADER if k in d}
        quick = bool(d.pop("quick", False))
        targets = d.pop("targets", {}) if isinstance(d.get("targets"), dict) else {}
        d = {**header, "kind": "benchmark", "name": str(kind), "quick": quick, "targets": targets,
             "details": d}
    return d


def from_json(d, expect: tuple[str, ...] | None = None) -> Document:
    """Build and validate the document ``d`` (any version this code reads).

    Raises SchemaError (a UsageError: one line) naming what is wrong."""
    _need(isinstance(d, dict) and "schema_version" in d, "not an mnist-edge result file (no schema_version)")
    version = d["schema_version"]
    if version == 1:
        d = upgrade(d)
    elif version != SCHEMA_VERSION:
        raise SchemaError(f"schema_version {version!r} is not supported (this version reads 1 and "
                          f"{SCHEMA_VERSION}); update mnist-edge or re-run the measurement")
    cls = KINDS.get(d.get("kind"))
    _need(cls is not None, f"unknown result kind {d.get('kind')!r}")
    if expect:
        _need(cls.KIND in expect, f"a {cls.KIND} result where {' or '.join(expect)} was expected")
    try:
        return cls.from_json(d)
    except TypeError as exc:  # a field of the wrong shape for the dataclass
        raise SchemaError(f"malformed {cls.KIND} result ({exc})") from None


def load(path, expect: tuple[str, ...] | None = None) -> Document:
    """Read a result file; UsageError with one line (the path and the problem) if it cannot be."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read result {path}: {exc}") from None
    try:
        return from_json(d, expect)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
