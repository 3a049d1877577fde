"""Benchmark for the device side (issue: `device run`).

On the machine it runs on, one thread, the shipped model, everything in separate `device`
processes (so memory figures are the device process's own, without the host's TensorFlow):
  1. a deterministic camera-like 640x480 clip made from MNIST *test* digits
     (`device.synth`: paper, uneven light, perspective, blur, noise, coloured ink, JPEG);
  2. `device run` over it: per-frame accuracy against the clip's labels, per-stage latency,
     preprocess + inference per frame (exact, from --frames-out); once with the default
     reduced grayscale decoding of the MJPG packets (what the targets are judged on, the
     file equivalent of the Pi camera's lores Y plane) and once with --full-decode (640x480
     BGR frames), both reported;
  3. a soak: the clip looped for --soak-frames frames: peak RSS and RSS growth after warm-up;
  4. `device classify` on the real photo dev set (../shared/data/digit-photos).

Writes benchmarks/results/<machine>/device_loop.json (+ the raw `device run` result files).
    MNIST_DIR=../shared/data/mnist python -m benchmarks.device_loop [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import (ROOT, clip_accuracy, device, mnist_clip, photos_accuracy, read_result, replay,
                                results_dir, write_summary)
from device.system import machine_info

TARGETS = {"pre_inf_p50_ms": 0.5, "pre_inf_p99_ms": 1.5, "peak_rss_mb": 80, "rss_growth_mb": 2,
           "photos_accuracy": 0.97, "clip_accuracy": 0.97}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small clip, short soak (CI)")
    ap.add_argument("--soak-frames", type=int, default=100_000)
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-device"))
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--model", help="model to measure (default: the shipped one)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = ["--model", args.model] if args.model else []
    machine = machine_info()
    out_dir = results_dir(args.results, machine)
    suffix = "-quick" if args.quick else ""
    clip = mnist_clip(work / f"clip{suffix}.avi", 40 if args.quick else 300, hold=3)

    def run(name: str, *flags) -> dict:
        res, rows = replay(clip, out_dir / f"{name}{suffix}.json", work / f"{name}.jsonl", *flags, model=args.model)
        pre_inf = np.array([r["preprocess_ms"] + (r["inference_ms"] or 0) for r in rows])
        return {
            "result": res, "decode": res["source"]["decode"], **clip_accuracy(rows, clip),
            "stages_ms": {k: {q: v[q] for q in ("p50", "p90", "p99", "max")}
                          for k, v in res["stages"].items() if v.get("count")},
            "preprocess_plus_inference_ms": {q: float(np.percentile(pre_inf, int(q[1:])))
                                             for q in ("p50", "p90", "p99")} | {"max": float(pre_inf.max())},
            "peak_rss_mb": res["memory"]["peak_rss_kb"] / 1024,
        }

    main_run = run("run-clip")
    full = run("run-clip-full-decode", "--full-decode")
    clip_acc, blank_ok = main_run["accuracy_per_frame"], main_run["blank_as_no_digit"]

    soak = args.soak_frames if not args.quick else 3000
    soak_json = out_dir / f"run-soak{suffix}.json"
    t0 = time.monotonic()
    device("run", "--source", clip, "--loop", "--frames", soak, "--threads", 1, "--quiet",
           "--output", soak_json, *model, capture=True)
    soak_s = time.monotonic() - t0
    soak_res = read_result(soak_json)

    photos = photos_accuracy(args.model)
    run_res = main_run.pop("result")
    full.pop("result")
    frames = main_run.pop("frames")
    full.pop("frames")
    result = {
        "model": run_res["model"],
        "clip": {"file": clip.name, "frames": frames, "digit_frames": main_run["digit_frames"],
                 "blank_frames": main_run["blank_frames"], "size": [640, 480], "seed": 0,
                 "accuracy_per_frame": clip_acc, "blank_as_no_digit": blank_ok},
        "decode": main_run["decode"],
        "stages_ms": main_run["stages_ms"],
        "preprocess_plus_inference_ms": main_run["preprocess_plus_inference_ms"],
        "full_decode": full,
        "within_budget": run_res["within_budget"], "budget_ms": run_res["budget_ms"],
        "soak": {"frames": soak_res["frames"], "seconds": round(soak_s, 1),
                 "peak_rss_mb": soak_res["memory"]["peak_rss_kb"] / 1024,
                 "rss_growth_mb": soak_res["memory"]["rss_growth_kb"] / 1024,
                 "rss_after_warmup_mb": (soak_res["memory"]["rss_after_warmup_kb"] or 0) / 1024,
                 "total_p99_ms": soak_res["stages"]["total"]["p99"]},
        "photos": photos,
    }
    p = result["preprocess_plus_inference_ms"]
    result["pass"] = {
        "pre_inf_p50_ms": p["p50"] <= TARGETS["pre_inf_p50_ms"],
        "pre_inf_p99_ms": p["p99"] <= TARGETS["pre_inf_p99_ms"],
        "peak_rss_mb": result["soak"]["peak_rss_mb"] <= TARGETS["peak_rss_mb"],
        "rss_growth_mb": result["soak"]["rss_growth_mb"] <= TARGETS["rss_growth_mb"],
        "photos_accuracy": bool(photos and photos["accuracy"] >= TARGETS["photos_accuracy"]),
        "clip_accuracy": clip_acc >= TARGETS["clip_accuracy"],
    }
    write_summary(out_dir / f"device_loop{suffix}.json", "device_loop", quick=args.quick, targets=TARGETS,
                  measured={"pre_inf_p50_ms": p["p50"], "pre_inf_p99_ms": p["p99"],
                            "peak_rss_mb": result["soak"]["peak_rss_mb"],
                            "rss_growth_mb": result["soak"]["rss_growth_mb"],
                            "photos_accuracy": photos and photos["accuracy"], "clip_accuracy": clip_acc},
                  details=result, machine=machine)
    print(json.dumps({"clip_accuracy": clip_acc, "blank_ok": blank_ok, "pre_inf_ms": p,
                      "full_decode_pre_inf_ms": full["preprocess_plus_inference_ms"],
                      "soak": result["soak"], "photos": photos and photos["accuracy"],
                      "pass": result["pass"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
