"""``device run``: capture -> preprocess -> infer -> postprocess -> record, per frame.

The interpreter is built once, before the first frame.  Every stage is timed with
``perf_counter_ns``; ``total`` is the frame's processing time from the moment it is available
(preprocess + inference + postprocess), the figure the per-frame budget applies to; the capture
wait is recorded beside it.  SIGINT / SIGTERM / the end of the source stop the loop cleanly and
the results file is written complete; a camera that stops delivering is recorded as an error.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from device.errors import SourceError
from device.preprocess import DEFAULT as DEFAULT_PRE, PreprocessOptions, prepare
from device.results import Result, Stat
from device.runtime import Model
from device.system import machine_info, memory_kb

STAGES = ("capture", "preprocess", "inference", "postprocess", "total")
WARMUP_FRAMES = 50   # RSS growth is measured from here, after allocators and caches settle


@dataclass
class RunOptions:
    frames: int | None = None        # stop after N frames
    duration: float | None = None    # stop after S seconds
    budget_ms: float = 5.0
    output: str | None = "results.json"
    frames_out: str | None = None    # JSON lines, one object per frame
    print_every_s: float = 0.5       # rate limit of the live prediction line
    quiet: bool = False
    preprocess: PreprocessOptions = field(default_factory=lambda: DEFAULT_PRE)


class _Stopper:
    """Turns SIGINT/SIGTERM into a flag the loop checks between frames."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def postprocess(scores: np.ndarray) -> tuple[int, float]:
    """(predicted digit, its probability)."""
    k = int(np.argmax(scores))
    return k, float(scores[k])


def run_loop(model: Model, source, opts: RunOptions, out=sys.stdout) -> Result:
    """Run until the source ends, a limit is reached or a signal arrives; returns the Result
    (also written to ``opts.output``).  Never raises for a source failure: it is recorded."""
    stats = {name: Stat() for name in STAGES}
    counts = np.zeros(10, dtype=np.int64)
    no_digit = 0
    mem_init = memory_kb()
    mem_warm = None
    status, error, pending = "ok", None, None
    dropped = 0
    prev_capture = None
    # A live camera delivers at a steady period; a gap of k periods between two frames we got
    # means k - 1 frames were dropped while we were busy.
    period_ns = 1e9 / source.fps if getattr(source, "live", False) and getattr(source, "fps", None) else None
    frames_file = open(opts.frames_out, "w") if opts.frames_out else None
    last_print = 0.0
    n = 0
    t_start = time.perf_counter_ns()
    deadline = t_start + int(opts.duration * 1e9) if opts.duration else None
    try:
        with _Stopper() as stopper, source:
            for frame in source.frames():
                t0 = frame.t_capture_ns
                if period_ns and prev_capture is not None:
                    dropped += max(0, round((t0 - prev_capture) / period_ns) - 1)
                prev_capture = t0
                prep = prepare(frame.image, opts.preprocess)
                t1 = time.perf_counter_ns()
                if prep.image is not None:
                    scores = model.predict(prep.image)
                    t2 = time.perf_counter_ns()
                    digit, conf = postprocess(scores)
                    counts[digit] += 1
                else:
                    t2 = t1
                    digit, conf = None, 0.0
                    no_digit += 1
                t3 = time.perf_counter_ns()
                for name, ns in (("capture", frame.wait_ns), ("preprocess", t1 - t0),
                                 ("postprocess", t3 - t2), ("total", t3 - t0)):
                    stats[name].add(ns)
                if prep.image is not None:
                    stats["inference"].add(t2 - t1)
                if frames_file is not None:
                    frames_file.write(json.dumps({
                        "frame": frame.index, "prediction": digit, "confidence": round(conf, 4),
                        "region": prep.region, "name": frame.name or None,
                        "capture_ms": frame.wait_ns / 1e6, "preprocess_ms": (t1 - t0) / 1e6,
                        "inference_ms": (t2 - t1) / 1e6 if prep.image is not None else None,
                        "postprocess_ms": (t3 - t2) / 1e6, "total_ms": (t3 - t0) / 1e6}) + "\n")
                n += 1
                if n == WARMUP_FRAMES:
                    mem_warm = memory_kb()
                if not opts.quiet and (t3 - last_print) / 1e9 >= opts.print_every_s:
                    last_print = t3
                    what = f"digit {digit}  {conf:6.1%}" if digit is not None else "no digit     "
                    print(f"frame {frame.index:>7}  {what}  total {(t3 - t0) / 1e6:6.3f} ms", file=out,
                          flush=True)
                if stopper.signal:
                    status = f"stopped by {stopper.signal}"
                    break
                if (opts.frames and n >= opts.frames) or (deadline and t3 >= deadline):
                    break
    except SourceError as exc:
        status, error = "source_error", str(exc)
    except BaseException as exc:
        # A bug or an unexpected error: still write what was measured, then let it surface.
        status, error, pending = "error", f"{type(exc).__name__}: {exc}", exc
    finally:
        if frames_file is not None:
            frames_file.close()
    elapsed = (time.perf_counter_ns() - t_start) / 1e9
    mem_end = memory_kb()
    base = mem_warm or mem_init
    total = stats["total"]
    result = Result(
        kind="run", machine=machine_info(), model=model.describe(),
        stages={name: s.to_dict() for name, s in stats.items()},
        memory={"rss_after_init_kb": mem_init["rss_kb"],
                "rss_after_warmup_kb": (mem_warm or {}).get("rss_kb"),
                "rss_end_kb": mem_end["rss_kb"], "peak_rss_kb": mem_end["peak_rss_kb"],
                "rss_growth_kb": (mem_end["rss_kb"] - base["rss_kb"]) if mem_end["rss_kb"] else None},
        budget_ms=opts.budget_ms,
        within_budget=total.fraction_within(opts.budget_ms * 1e6) if total.count else None,
        frames=n, fps=n / elapsed if elapsed > 0 else None, status=status, error=error,
        extra={"source": source.describe(), "duration_s": round(elapsed, 3),
               "no_digit": no_digit, "unreadable": getattr(source, "unreadable", 0),
               "dropped": dropped, "prediction_counts": counts.tolist(),
               "init_ms": model.init_ms,
               "total_definition": "preprocess + inference + postprocess, from frame available"})
    if opts.output:
        result.write(opts.output)
    if pending is not None:
        raise pending
    return result


def summary_lines(r: Result) -> list[str]:
    """The end-of-run summary a person reads on the terminal."""
    lines = [f"{r.frames} frames in {r.extra.get('duration_s', 0):.1f} s"
             f" ({r.fps or 0:.1f} fps); status: {r.status}"
             + (f" ({r.error})" if r.error else "")]
    lines.append(f"{'stage':<12}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}  ms")
    for name in STAGES:
        s = r.stages.get(name, {})
        if s.get("count"):
            lines.append(f"{name:<12}{s['p50']:>9.3f}{s['p90']:>9.3f}{s['p99']:>9.3f}{s['max']:>9.3f}")
    if r.within_budget is not None:
        p99 = r.stages["total"]["p99"]
        verdict = "within" if p99 <= r.budget_ms else "OVER"
        lines.append(f"budget {r.budget_ms} ms: {r.within_budget:.1%} of frames within; "
                     f"p99 {p99:.3f} ms is {verdict} budget")
    m = r.memory
    if m.get("peak_rss_kb"):
        lines.append(f"memory: peak RSS {m['peak_rss_kb'] / 1024:.1f} MB, growth after warm-up "
                     f"{(m['rss_growth_kb'] or 0) / 1024:+.2f} MB")
    lines.append(f"no digit: {r.extra.get('no_digit', 0)}, unreadable frames: "
                 f"{r.extra.get('unreadable', 0)}, dropped frames: {r.extra.get('dropped', 0)}")
    return lines
