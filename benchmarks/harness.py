"""What the benchmark scripts share: where things are, how the two command lines are run (each
call its own process, so a device figure never includes the host's TensorFlow), reading and
writing result files (through :mod:`device.schema`), and the two accuracy measurements on real
inputs: the camera-like replay clip and the phone photos of handwritten digits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from device import schema
from device.system import machine_info, machine_slug

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "digit-photos"
RESULTS = ROOT / "benchmarks" / "results"


def cli(prog: str, *args, capture: bool = False) -> subprocess.CompletedProcess:
    """``python -m {prog}.cli ARGS`` from the project root; raises CalledProcessError on failure
    (a benchmark stops at the first broken step rather than record half a result)."""
    return subprocess.run([sys.executable, "-m", f"{prog}.cli", *map(str, args)], cwd=ROOT, check=True,
                          capture_output=capture, text=True)


def host(*args, capture: bool = False) -> subprocess.CompletedProcess:
    return cli("host", *args, capture=capture)


def device(*args, capture: bool = False) -> subprocess.CompletedProcess:
    return cli("device", *args, capture=capture)


def results_dir(results, machine: dict | None = None, sub: str = "") -> Path:
    """``results/<machine>/<sub>``, created: where a benchmark's files for this machine go."""
    out = Path(results) / machine_slug(machine or machine_info()) / sub
    out.mkdir(parents=True, exist_ok=True)
    return out


def read_result(path) -> dict:
    """A `device run` / `device bench` result as the current schema's dict (older files upgraded)."""
    return schema.load(path, expect=("run", "bench")).to_json()


def write_summary(path, name: str, *, quick: bool = False, targets: dict | None = None,
                  measured: dict | None = None, details: dict | None = None, machine: dict | None = None) -> None:
    """A benchmark script's summary: what it measured against which targets, and the breakdown."""
    schema.BenchmarkResult(machine=machine or machine_info(), name=name, quick=quick, targets=targets or {},
                           measured=measured or {}, details=details or {}).write(path)


# -- the replay clip ---------------------------------------------------------------------------
def mnist_clip(path: Path, n_digits: int, hold: int = 3) -> Path:
    """A camera-like 640x480 clip of MNIST *test* digits (seed 0), made once and reused."""
    from device.synth import make_clip
    from host.data import load_mnist

    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        d = load_mnist()
        make_clip(d.x_test, d.y_test, path, n_digits=n_digits, hold=hold, seed=0)
    return path


def replay(clip: Path, output, frames_out: Path, *flags, model=None) -> tuple[dict | None, list[dict]]:
    """`device run` over ``clip`` (one thread, quiet) writing ``output`` ('' = no results file)
    and the per-frame lines: (the result, the per-frame records)."""
    device("run", "--source", clip, "--threads", 1, "--quiet", "--output", output, "--frames-out", frames_out,
           *flags, *(["--model", model] if model else []), capture=True)
    rows = [json.loads(line) for line in Path(frames_out).read_text().splitlines()]
    return (read_result(output) if output else None), rows


def clip_accuracy(rows: list[dict], clip: Path) -> dict:
    """Per-frame accuracy against the clip's labels, and how often a blank sheet (no label)
    was reported as "no digit"."""
    from device.synth import load_labels

    labels = load_labels(clip)
    digits = [r["prediction"] == lab for r, lab in zip(rows, labels) if lab is not None]
    blanks = [r["prediction"] is None for r, lab in zip(rows, labels) if lab is None]
    return {"frames": len(labels), "digit_frames": len(digits), "blank_frames": len(blanks),
            "accuracy_per_frame": float(np.mean(digits)) if digits else None,
            "blank_as_no_digit": float(np.mean(blanks)) if blanks else None}


# -- the photo dev set -------------------------------------------------------------------------
def _json_lines(text: str):
    for line in text.splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue


def photos_accuracy(model=None) -> dict | None:
    """`device classify --json` on the real photos: the summary (accuracy, correct, labelled)
    plus the misread files; None when the photos are not on this machine."""
    if not (PHOTOS / "labels.csv").is_file():
        return None
    r = device("classify", PHOTOS, "--labels", PHOTOS / "labels.csv", "--json",
               *(["--model", model] if model else []), capture=True)
    records = [d for d in _json_lines(r.stdout) if isinstance(d, dict)]
    # The summary is the one object without a file, wherever the CLI prints it (stdout or
    # stderr) and whatever warning follows it.
    summaries = [d for d in records + list(_json_lines(r.stderr))
                 if isinstance(d, dict) and "accuracy" in d and "file" not in d]
    if not summaries:
        raise RuntimeError(f"device classify printed no summary: {r.stderr.strip()[-300:]}")
    out = dict(summaries[-1])
    out["wrong"] = [{"file": Path(d["file"]).name, "label": d.get("label"), "prediction": d["prediction"],
                     "confidence": d["confidence"]}
                    for d in records if "file" in d and "label" in d and d["label"] != d["prediction"]]
    return out


def least_times(fns: dict, frames: list, n: int) -> dict:
    """Per frame, the least thread CPU time (ms) of ``n`` runs of each of ``fns``, interleaved
    (the order alternating), so all share the machine's load alike."""
    out = {k: [] for k in fns}
    for f in frames:
        t = {k: [] for k in fns}
        for i in range(n):
            for k in (list(fns) if i % 2 == 0 else list(fns)[::-1]):
                c0 = time.thread_time_ns()
                fns[k](f)
                t[k].append(time.thread_time_ns() - c0)
        for k in fns:
            out[k].append(min(t[k]) / 1e6)
    return {k: {"p50": float(np.median(v)), "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
                "mean": float(np.mean(v)), "n": len(v)} for k, v in out.items()}


def single_digit(model, prepare):
    """One frame through a single-digit reading: ``prepare`` (a preprocessing's), and the model
    and postprocessing when it found a digit (what a cost comparison times per frame)."""
    from device.step import postprocess

    def run(frame):
        p = prepare(frame)
        if p.image is not None:
            postprocess(model.predict(p.image))
    return run
