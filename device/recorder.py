"""What a run remembers: per-stage statistics, counters, the per-frame side file, the live line,
the memory marks, and the result document built from them.

The recorder never stops a run: a side output that fails (``--frames-out`` on a full disk) is
reported once, recorded in the result (``outputs``), and the run and its main results file go
on.  With ``checkpoint_s`` the result is also written periodically (a long-running service),
atomically, with status ``running`` until the end.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from device.schema import RUN_STAGES, RunResult
from device.stats import Stat
from device.step import FrameRecord
from device.system import machine_info, memory_kb

WARMUP_FRAMES = 50   # RSS growth is measured from here, after allocators and caches settle


@dataclass(frozen=True)
class RecordOptions:
    budget_ms: float = 5.0
    output: str | None = None        # the results file (None: none)
    frames_out: str | None = None    # JSON lines, one object per frame
    print_every_s: float = 0.5       # the live line: at most this often ...
    print_every_n: int = 100         # ... and at least every N frames
    quiet: bool = False
    checkpoint_s: float | None = None  # write the results file this often while running
    read: str = "digit"


class Recorder:
    def __init__(self, opts: RecordOptions, model_info: dict, timing: dict, out=None, err=None,
                 scorer=None):
        self.opts, self.model_info, self.timing = opts, model_info, timing
        self.out, self.err = out or sys.stdout, err or sys.stderr   # per instance: stdout may be redirected
        self.scorer = scorer             # a device.scoring.Scorer with --labels
        self.stats = {name: Stat() for name in RUN_STAGES}
        self.counts = {"no_digit": 0, "digits": 0}
        self.predictions = np.zeros(10, dtype=np.int64)
        self.frames = 0
        self.mem_init = memory_kb()
        self.mem_warm: dict | None = None
        self.outputs: dict = {}
        self._side = None
        self._last_print_ns = 0
        self._last_print_n = 0
        self._t_start = time.perf_counter_ns()
        self._last_checkpoint = self._t_start
        self.source = None  # set by the loop: its describe() and counters go into the result

    # -- side file ---------------------------------------------------------------------------
    def open(self) -> "Recorder":
        if self.opts.frames_out:
            self.outputs["frames_out"] = {"path": self.opts.frames_out, "error": None}
            try:
                self._side = open(self.opts.frames_out, "w")
            except OSError as exc:
                self._side_failed(exc)
        return self

    def _side_failed(self, exc: OSError) -> None:
        self.outputs["frames_out"]["error"] = f"{exc.strerror or exc} after {self.frames} frames"
        print(f"device: warning: --frames-out {self.opts.frames_out}: {exc.strerror or exc}; "
              "per-frame lines stopped there, the run and its results file go on", file=self.err)
        try:
            if self._side is not None:
                self._side.close()
        except OSError:
            pass
        self._side = None

    def close(self) -> None:
        if self._side is not None:
            try:
                self._side.close()
            except OSError as exc:
                self._side_failed(exc)
            self._side = None

    # -- per frame ---------------------------------------------------------------------------
    def add(self, rec: FrameRecord) -> None:
        s = self.stats
        s["capture"].add(rec.capture_ns)
        s["preprocess"].add(rec.preprocess_ns)
        if rec.inference_ns is not None:
            s["inference"].add(rec.inference_ns)
        s["postprocess"].add(rec.postprocess_ns)
        s["total"].add(rec.total_ns)
        if rec.digits:
            self.counts["digits"] += len(rec.digits)
            for d in rec.digits:
                self.predictions[d.prediction] += 1
        else:
            self.counts["no_digit"] += 1
        self.frames += 1
        scored = self.scorer.add(rec) if self.scorer is not None else None
        if self._side is not None:
            try:
                self._side.write(json.dumps(rec.to_json() | (scored or {})) + "\n")
            except OSError as exc:
                self._side_failed(exc)
        if self.frames == WARMUP_FRAMES:
            self.mem_warm = memory_kb()
        now = time.perf_counter_ns()
        if not self.opts.quiet and (now - self._last_print_ns >= self.opts.print_every_s * 1e9
                                    or self.frames - self._last_print_n >= self.opts.print_every_n):
            self._last_print_ns, self._last_print_n = now, self.frames
            print(live_line(rec), file=self.out, flush=True)
        if self.opts.checkpoint_s and self.opts.output and now - self._last_checkpoint >= self.opts.checkpoint_s * 1e9:
            self._last_checkpoint = now
            self.result("running").write(self.opts.output)

    # -- the document ------------------------------------------------------------------------
    def result(self, status: str, stop_reason: str | None = None, error: str | None = None) -> RunResult:
        elapsed = (time.perf_counter_ns() - self._t_start) / 1e9
        mem_end = memory_kb()
        base = self.mem_warm or self.mem_init
        total = self.stats["total"]
        src = self.source
        counts = {**self.counts, **(src.counters() if src is not None else {})}
        return RunResult(
            machine=machine_info(), model=self.model_info,
            source=src.describe() if src is not None else {}, status=status, stop_reason=stop_reason,
            error=error, read=self.opts.read, frames=self.frames, duration_s=round(elapsed, 3),
            fps=self.frames / elapsed if elapsed > 0 and self.frames else None,
            budget_ms=self.opts.budget_ms,
            within_budget=total.fraction_within(self.opts.budget_ms * 1e6) if total.count else None,
            stages={name: st.to_dict() for name, st in self.stats.items()},
            memory={"rss_after_init_kb": self.mem_init["rss_kb"],
                    "rss_after_warmup_kb": (self.mem_warm or {}).get("rss_kb"),
                    "rss_end_kb": mem_end["rss_kb"], "peak_rss_kb": mem_end["peak_rss_kb"],
                    "rss_growth_kb": (mem_end["rss_kb"] - base["rss_kb"])
                    if mem_end["rss_kb"] and base["rss_kb"] else None},
            counts=counts, predictions=self.predictions.tolist(), timing=self.timing,
            accuracy=self.scorer.to_json() if self.scorer is not None else None, outputs=self.outputs)


def live_line(rec: FrameRecord) -> str:
    if rec.digits and len(rec.digits) == 1 and rec.digits[0].line == 0:
        what = f"digit {rec.prediction}  {rec.confidence:6.1%}"
    elif rec.digits:
        what = f"read {rec.text!r}  " + " ".join(
            f"{d.prediction}:{d.confidence:.0%}@{','.join(str(int(v)) for v in d.box)}" for d in rec.digits)
    else:
        what = "no digit     "
    return f"frame {rec.index:>7}  {what}  total {rec.total_ns / 1e6:6.3f} ms"


def summary_lines(r: RunResult) -> list[str]:
    """The end-of-run summary a person reads on the terminal."""
    m = r.model
    lines = [f"model {m.get('path')} ({m.get('arch') or '?'}, sha256 {str(m.get('sha256'))[:12]}, "
             f"{m.get('verified')}), {m.get('runtime')} {m.get('runtime_version')}, "
             f"{m.get('threads')} thread(s)",
             f"{r.frames} frames in {r.duration_s:.1f} s ({r.fps or 0:.1f} fps); status: {r.status}"
             + (f" ({r.stop_reason})" if r.stop_reason else "") + (f" ({r.error})" if r.error else "")]
    lines.append(f"{'stage':<12}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}  ms")
    for name in RUN_STAGES:
        s = r.stages.get(name, {})
        if s.get("count"):
            lines.append(f"{name:<12}{s['p50']:>9.3f}{s['p90']:>9.3f}{s['p99']:>9.3f}{s['max']:>9.3f}")
    if r.within_budget is not None:
        p99 = r.stages["total"]["p99"]
        verdict = "within" if p99 <= r.budget_ms else "OVER"
        lines.append(f"budget {r.budget_ms:g} ms: {r.within_budget:.1%} of frames within; "
                     f"p99 {p99:.3f} ms is {verdict} budget (capture wait not included)")
    mem = r.memory
    if mem.get("peak_rss_kb"):
        since = ("after warm-up" if mem.get("rss_after_warmup_kb") is not None
                 else f"since start (fewer than the {WARMUP_FRAMES} warm-up frames: includes start-up)")
        lines.append(f"memory: peak RSS {mem['peak_rss_kb'] / 1024:.1f} MB, growth {since} "
                     f"{(mem['rss_growth_kb'] or 0) / 1024:+.2f} MB")
    c = r.counts
    lines.append(f"no digit: {c.get('no_digit', 0)}, unreadable frames: {c.get('unreadable', 0)}, "
                 f"skipped files: {c.get('skipped', 0)}, dropped frames: {c.get('dropped', 0)}")
    if r.accuracy:
        from device.scoring import accuracy_lines

        lines += accuracy_lines(r.accuracy)
    for name, o in r.outputs.items():
        if o.get("error"):
            lines.append(f"{name}: {o['path']} incomplete ({o['error']})")
    return lines
