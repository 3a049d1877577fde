"""Benchmark for the host pipeline (issue: `host train-qat`).

On the machine it runs on, in one run:
  1. the default `host train-qat` (edge, INT8), timed end to end as a subprocess;
  2. the `seed` reference CNN through the same pipeline (short training: it is the latency and
     size reference; its accuracy is reported for what it is);
  3. single-thread interpreter latency of both INT8 models, interleaved in repeats so machine
     noise hits both alike; the speed-up is the ratio of medians, with its spread.

Writes benchmarks/results/<machine>/train_qat.json.  Usage:
    MNIST_DIR=../shared/data/mnist python -m benchmarks.train_qat [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import ROOT, host, results_dir, write_summary
from device.bench import interleaved_p50
from device.system import machine_info
from host.artifacts import TARGET_ACCURACY, TARGET_BYTES

TARGETS = {"accuracy": TARGET_ACCURACY, "bytes": TARGET_BYTES, "speedup_vs_seed": 3.0, "wall_seconds": 15 * 60}


def train(out: Path, args: list[str]) -> tuple[dict, float]:
    t0 = time.monotonic()
    host("train-qat", "--out", out, "--force", *args)  # --force: the folder is this benchmark's own
    wall = time.monotonic() - t0
    return json.loads((out / "model.json").read_text()), wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny budgets: proves the suite runs (CI)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench"), help="where models are built")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--reuse", action="store_true", help="reuse models already in --work")
    args = ap.parse_args(argv)
    work = Path(args.work)
    quick = ["--limit", "2000", "--epochs", "1", "--qat-epochs", "1"] if args.quick else []
    edge_out, seed_out = work / "edge", work / "seed"
    if args.reuse and (edge_out / "model.json").is_file():
        edge, edge_wall = json.loads((edge_out / "model.json").read_text()), None
    else:
        edge, edge_wall = train(edge_out, quick)
    if args.reuse and (seed_out / "model.json").is_file():
        seed, seed_wall = json.loads((seed_out / "model.json").read_text()), None
    else:
        # The seed CNN costs ~4.6x the MACs per step; a short run is enough for its latency and size.
        seed, seed_wall = train(seed_out, ["--arch", "seed", "--limit", "2000" if args.quick else "20000",
                                           "--epochs", "1" if args.quick else "2", "--qat-epochs", "1"])
    lat = interleaved_p50({"edge": edge_out / "model.tflite", "seed": seed_out / "model.tflite"},
                              repeats=3 if args.quick else 15, runs=200 if args.quick else 2000)
    ratios = [s / e for s, e in zip(lat["seed"], lat["edge"])]
    speedup = float(np.median(ratios))
    machine = machine_info()
    result = {
        "edge": {"accuracy": edge["accuracy"], "bytes": edge["bytes"], "gzip_bytes": edge.get("gzip_bytes"),
                 "params": edge["params"], "macs": edge["macs"], "sha256": edge["sha256"],
                 "wall_seconds": edge_wall, "pipeline_seconds": edge.get("wall_seconds"),
                 "training": edge["training"]},
        "seed": {"accuracy": seed["accuracy"], "bytes": seed["bytes"], "params": seed["params"],
                 "macs": seed["macs"], "wall_seconds": seed_wall, "training": seed["training"]},
        "latency_ms_single_thread": {"edge_median_per_repeat": lat["edge"], "seed_median_per_repeat": lat["seed"],
                                     "speedup_per_repeat": ratios,
                                     "speedup": {"min": min(ratios), "median": speedup, "max": max(ratios)}},
    }
    result["pass"] = {
        "accuracy": edge["accuracy"]["tflite"] >= TARGETS["accuracy"],
        "bytes": edge["bytes"] <= TARGETS["bytes"],
        "speedup_vs_seed": speedup >= TARGETS["speedup_vs_seed"],
        "wall_seconds": edge_wall is not None and edge_wall <= TARGETS["wall_seconds"],
    }
    out_dir = results_dir(args.results, machine)
    name = "train_qat-quick.json" if args.quick else "train_qat.json"
    write_summary(out_dir / name, "train_qat", quick=args.quick, targets=TARGETS,
                  measured={"accuracy": edge["accuracy"]["tflite"], "bytes": edge["bytes"],
                            "speedup_vs_seed": speedup, "wall_seconds": edge_wall},
                  details=result, machine=machine)
    print(json.dumps({"accuracy": edge["accuracy"]["tflite"], "bytes": edge["bytes"],
                      "speedup": result["latency_ms_single_thread"]["speedup"], "wall_s": edge_wall,
                      "pass": result["pass"]}, indent=2))
    print(f"results: {out_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
