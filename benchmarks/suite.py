"""The all-variants benchmark suite: every model variant side by side on the machine it runs on.

    MNIST_DIR=../shared/data/mnist python -m benchmarks.suite [--quick] [--reuse]

In one run:
  1. builds (or with --reuse, reuses) the models with the `host` CLI: the `seed` reference CNN
     and the `edge` CNN, each as float32, float16, dynamic-range and full-INT8 (QAT) TFLite,
     plus the edge's pruned, prune-preserving-QAT INT8 variant.  Every conversion is evaluated
     on all 10,000 MNIST test images through the device runtime (the accuracy in its manifest);
  2. `device classify` of each variant on the real photo dev set (../shared/data/digit-photos);
  3. `device run` of each variant on a fixed replay clip (generated deterministically from the
     MNIST digits shipped in device/data): per-frame accuracy, per-stage latency, memory;
  4. `device bench` of each variant at 1, 2 and 4 threads, XNNPACK on and off, in separate
     processes, the whole grid repeated in a shuffled order so machine noise hits all alike;
     every ratio (e.g. edge INT8 vs seed INT8) is taken within a repeat, and its spread
     (min / median / max over repeats) is reported;
  5. writes benchmarks/results/<machine>/suite.json (summary) and the device result files under
     benchmarks/results/<machine>/suite/, then renders benchmarks/report.html and
     benchmarks/REPORT.md with `host report` (a --quick run writes *-quick names and no
     REPORT.md).

--quick proves the suite works (CI): tiny training budgets, one variant pair (edge and seed
INT8, plus the shipped model, which needs no training), fewer runs.  The full run is what gets
committed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import (ROOT, clip_accuracy, device, host, photos_accuracy, read_result, replay,
                                results_dir)
from device import schema
from device.bench import ratio_spread
from device.system import machine_info
FULL_VARIANTS = ["seed-float32", "seed-float16", "seed-dynamic", "seed-int8",
                 "edge-float32", "edge-float16", "edge-dynamic", "edge-int8", "edge-pruned-int8", "shipped-int8"]
QUICK_VARIANTS = ["seed-int8", "edge-int8", "shipped-int8"]   # one variant pair + what ships
THREADS = (1, 2, 4)
REFERENCE = "seed-int8"       # latency ratios are against the seed CNN's INT8 model
SHIPPED = "shipped-int8"      # device/models/model.tflite, measured like the rest


def build_models(work: Path, variants: list[str], quick: bool, reuse: bool) -> dict[str, Path]:
    """Each variant's folder (model.tflite + model.json), built with the host CLI."""
    tiny = ["--limit", "2000", "--epochs", "1", "--qat-epochs", "1"]
    train = {
        # The default job (deterministic per seed on one machine; the shipped model came from it).
        "edge": tiny if quick else [],
        # The seed CNN costs ~4.6x the MACs per step: 3 epochs on all data (it converges fast).
        "seed": ["--arch", "seed", *(tiny if quick else ["--epochs", "3"])],
    }
    dirs: dict[str, Path] = {}

    def done(d: Path) -> bool:
        return reuse and (d / "model.json").is_file() and (d / "model.tflite").is_file()

    for arch in ("edge", "seed"):
        if not any(v.startswith(arch + "-") for v in variants):
            continue
        d = work / f"{arch}-int8"
        if not done(d):
            shutil.rmtree(d, ignore_errors=True)
            print(f"== suite: building {arch} (train-qat)", flush=True)
            host("train-qat", "--out", d, *train[arch])
        dirs[f"{arch}-int8"] = d
        for mode in ("float32", "float16", "dynamic"):
            name = f"{arch}-{mode}"
            if name not in variants:
                continue
            vd = work / name
            if not done(vd):
                shutil.rmtree(vd, ignore_errors=True)
                print(f"== suite: converting {name}", flush=True)
                host("convert", d / "float.h5", "--mode", mode, "--out", vd)
            dirs[name] = vd
    if "edge-pruned-int8" in variants:
        vd = work / "edge-pruned-int8"
        if not done(vd):
            shutil.rmtree(vd, ignore_errors=True)
            print("== suite: pruning edge to 50 % + prune-preserving QAT", flush=True)
            host("train-qat", "--from", work / "edge-int8" / "float.h5", "--sparsity", "0.5",
                 "--out", vd, *(["--limit", "2000", "--prune-epochs", "1"] if quick else []))
        dirs["edge-pruned-int8"] = vd
    if "shipped-int8" in variants:
        # The model device/ ships, re-evaluated in this run (its manifest is from training time).
        vd = work / "shipped-int8"
        vd.mkdir(exist_ok=True)
        for name in ("model.tflite", "model.json"):
            shutil.copy2(ROOT / "device" / "models" / name, vd / name)
        dirs["shipped-int8"] = vd
    return {v: dirs[v] for v in variants}


def evaluate_now(model: Path) -> dict:
    """Accuracy and confusion matrix on all 10,000 test images, through the device runtime."""
    return json.loads(host("evaluate", model, "--json", capture=True).stdout)


def make_suite_clip(path: Path, n_digits: int) -> Path:
    """The fixed replay clip: the MNIST test digits shipped in device/data, seed 0."""
    if not path.is_file():
        device("make-clip", path, "--digits", n_digits, "--hold", 2, "--seed", 0, capture=True)
    return path


def clip_run(model: Path, clip: Path, out: Path, frames_out: Path) -> dict:
    res, rows = replay(clip, out, frames_out, model=model)
    return {"file": out.name, "frames": res["frames"],
            "accuracy_per_frame": clip_accuracy(rows, clip)["accuracy_per_frame"],
            "stages_ms": {k: {q: v[q] for q in ("p50", "p99")} for k, v in res["stages"].items()
                          if v.get("count")},
            "within_budget": res["within_budget"], "budget_ms": res["budget_ms"],
            "peak_rss_mb": res["memory"]["peak_rss_kb"] / 1024}


def bench_grid(models: dict[str, Path], out_dir: Path, repeats: int, runs: int, seed: int = 0) -> dict:
    """p50 of every (variant, threads, xnnpack) per repeat, each in its own `device bench`
    process; the first repeat's result files are kept."""
    grid = [(v, t, x) for v in models for t in THREADS for x in (True, False)]
    p50: dict[str, list[float]] = {}
    kept: dict[str, dict] = {}
    rng = random.Random(seed)
    for rep in range(repeats):
        order = grid[:]
        rng.shuffle(order)
        for i, (v, t, x) in enumerate(order):
            key = f"{v}|t{t}|{'xnn' if x else 'noxnn'}"
            path = out_dir / f"bench-{v}-t{t}-{'xnnpack' if x else 'no-xnnpack'}.json"
            target = path if rep == 0 else out_dir / ".bench-tmp.json"
            device("bench", models[v], "--threads", t, *([] if x else ["--no-xnnpack"]),
                 "--runs", runs, "--json", target, capture=True)
            res = read_result(target)
            p50.setdefault(key, []).append(res["stages"]["inference"]["p50"])
            if rep == 0:
                kept[key] = {"file": path.name, "init_ms": res["timing"].get("model_load_ms"),
                             "first_inference_ms": res["timing"].get("first_inference_ms"),
                             "init_footprint_mb": res["memory"]["init_footprint_kb"] / 1024,
                             "peak_rss_mb": res["memory"]["peak_rss_kb"] / 1024,
                             "p99_ms": res["stages"]["inference"]["p99"]}
            print(f"\r== suite: bench repeat {rep + 1}/{repeats}, {i + 1}/{len(order)}", end="", flush=True)
    print()
    (out_dir / ".bench-tmp.json").unlink(missing_ok=True)
    table = {}
    for key, vals in p50.items():
        v, t, x = key.split("|")
        table.setdefault(v, {})[f"{t}-{x}"] = {
            "p50_ms_per_repeat": vals, "p50_ms": float(np.median(vals)),
            "p50_ms_min": min(vals), "p50_ms_max": max(vals), **kept[key]}
    return table


def ratios(bench: dict, reference: str) -> dict:
    """Per variant and configuration: reference p50 / variant p50, taken within each repeat."""
    out = {}
    for v, cfgs in bench.items():
        for cfg, b in cfgs.items():
            ref = bench.get(reference, {}).get(cfg)
            if not ref:
                continue
            out.setdefault(v, {})[cfg] = ratio_spread(ref["p50_ms_per_repeat"], b["p50_ms_per_repeat"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny budgets, one variant pair (CI)")
    ap.add_argument("--reuse", action="store_true", help="reuse models already built in --work")
    ap.add_argument("--work", default=str(ROOT / "runs" / "suite"), help="where models are built")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--repeats", type=int, help="bench grid repeats (default 5; quick 1)")
    ap.add_argument("--runs", type=int, help="timed runs per bench (default 500; quick 50)")
    ap.add_argument("--report", default=str(ROOT / "benchmarks"),
                    help="folder for report.html and REPORT.md ('' = none)")
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    quick = args.quick
    variants = QUICK_VARIANTS if quick else FULL_VARIANTS
    repeats = args.repeats or (1 if quick else 5)
    runs = args.runs or (50 if quick else 500)
    work = Path(args.work) / ("quick" if quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    suffix = "-quick" if quick else ""
    files_dir = results_dir(args.results, machine, f"suite{suffix}")
    out_dir = files_dir.parent

    models = build_models(work, variants, quick, args.reuse)
    manifests = {v: json.loads((d / "model.json").read_text()) for v, d in models.items()}
    clip = make_suite_clip(work / "clip.avi", 20 if quick else 100)

    summary: dict[str, dict] = {}
    for v, d in models.items():
        print(f"== suite: {v}: photos and clip replay", flush=True)
        m = manifests[v]
        if v == "shipped-int8":
            ev = evaluate_now(d / "model.tflite")
            m["accuracy"] = {**m["accuracy"], "tflite": ev["accuracy"], "tflite_correct": ev["correct"]}
            m["confusion_matrix"] = ev["confusion_matrix"]
        summary[v] = {
            "arch": m["arch"], "conversion": m["conversion"], "bytes": m["bytes"],
            "gzip_bytes": m.get("gzip_bytes"), "params": m["params"], "macs": m["macs"],
            "sparsity": m["sparsity"], "sha256": m["sha256"], "input_dtype": m["input"]["dtype"],
            "mnist_accuracy": m["accuracy"]["tflite"], "mnist_correct": m["accuracy"]["tflite_correct"],
            "confusion_matrix": m["confusion_matrix"],
            "photos": photos_accuracy(d / "model.tflite"),
            "clip": clip_run(d / "model.tflite", clip, files_dir / f"run-{v}.json", work / f"frames-{v}.jsonl"),
        }
    bench = bench_grid({v: d / "model.tflite" for v, d in models.items()}, files_dir, repeats, runs)
    speedups = ratios(bench, REFERENCE)
    for v in summary:
        summary[v]["bench"] = bench[v]
        summary[v]["speedup_vs_" + REFERENCE.replace("-", "_")] = speedups.get(v, {})
    shipped = json.loads((ROOT / "device" / "models" / "model.json").read_text())
    suite_json = out_dir / f"suite{suffix}.json"
    schema.SuiteResult(
        machine=machine, quick=quick, variants=summary, reference=REFERENCE, shipped_variant=SHIPPED,
        shipped_sha256=shipped["sha256"],
        # Training is deterministic on one machine; another CPU's float kernels can differ.
        edge_int8_reproduces_shipped=summary.get("edge-int8", {}).get("sha256") == shipped["sha256"],
        threads=list(THREADS), repeats=repeats, runs_per_bench=runs,
        clip={"file": clip.name, "digits": 20 if quick else 100, "hold": 2, "seed": 0, "size": [640, 480]},
        files_dir=files_dir.name, wall_seconds=round(time.monotonic() - t_start, 1)).write(suite_json)
    print(f"results: {suite_json}")
    if args.report:
        rep = Path(args.report)
        run_files = sorted(files_dir.glob("run-*.json"))
        # The advanced techniques' results (benchmarks.techniques), when they exist, join the report.
        run_files += [] if quick else sorted((out_dir / "techniques").glob("*.json"))
        md = [] if quick else ["--markdown", rep / "REPORT.md"]
        host("report", suite_json, *run_files, "--out", rep / f"report{suffix}.html", *md)
        print(f"report: {rep / f'report{suffix}.html'}")
    for v, s in summary.items():
        b = s["bench"]["t1-xnn"]
        sp = s["speedup_vs_seed_int8"].get("t1-xnn", {})
        print(f"{v:<18} MNIST {s['mnist_accuracy']:.4f}  photos "
              f"{(s['photos'] or {}).get('accuracy', float('nan')):.2f}  {s['bytes']:>9,} B  "
              f"1t p50 {b['p50_ms']:.4f} ms  x{sp.get('median', float('nan')):.2f} vs seed-int8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
