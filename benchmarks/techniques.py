"""Benchmark of the article's advanced techniques (issue: distill, prune-channels, ONNX, Grad-CAM).

    MNIST_DIR=../shared/data/mnist python -m benchmarks.techniques [--quick]

On the machine it runs on, with the `host` CLI (each a separate process):
  1. a `wide` teacher (the edge layout at twice the width) trained with the default budget;
  2. `host distill` from that teacher: the edge student trained on labels alone and distilled,
     same initial weights, batches and epochs, both through QAT + INT8 and evaluated - on all
     training images (T=4, alpha=0.3, and T=2, alpha=0.5), and on 6,000 (where a teacher's soft
     targets usually matter more; the teacher itself saw all the data);
  3. `host prune-channels` of the edge float model the suite built
     (runs/suite/full/edge-int8/float.h5; trained here when missing): keep 50 % with 3 and 8
     fine-tuning epochs, keep 75 % with 3;
  4. `host export-onnx` of the same edge float model;
  5. `host explain` on the real photo dev set and the first MNIST test errors.

Writes benchmarks/results/<machine>/techniques/*.json and explain-*.png; `host report` renders
the JSON files as lines of the benchmark report.  The work folders are this script's own, so
its host commands pass --force (a folder left by an older version holds no run record).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from benchmarks.harness import PHOTOS, ROOT, host, results_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny budgets: proves the script runs")
    ap.add_argument("--work", default=str(ROOT / "runs" / "techniques"))
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--edge-float", default=str(ROOT / "runs" / "suite" / "full" / "edge-int8" / "float.h5"),
                    help="the edge float model to prune / export / explain")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    work = Path(args.work) / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    out = results_dir(args.results, sub="techniques-quick" if args.quick else "techniques")
    tiny = ["--limit", "3000", "--epochs", "1"] if args.quick else []

    edge_float = Path(args.edge_float)
    if args.quick or not edge_float.is_file():
        host("train", *tiny, "--out", work / "edge", "--force")
        edge_float = work / "edge" / "float.h5"

    teacher = work / "teacher" / "float.h5"
    if not teacher.is_file():
        host("train", "--arch", "wide", *(tiny or ["--epochs", "9"]), "--out", work / "teacher", "--force")
    runs = [("distill-all", tiny)] + ([] if args.quick else [
        ("distill-6000", ["--limit", "6000"]),
        ("distill-all-t2a05", ["--temperature", "2", "--alpha", "0.5"])])
    for name, extra in runs:
        host("distill", "--teacher", teacher, *extra, "--out", work / name, "--force")
        shutil.copy2(work / name / "distill.json", out / f"{name}.json")

    # keep 50 % (widths 8-12-16-24-32) with a short and the default fine-tuning, and keep 75 %
    # (widths 12-18-24-36-48).
    cuts = [("keep50-1ep", 0.5, 1)] if args.quick else [("keep50-3ep", 0.5, 3), ("keep50-8ep", 0.5, 8),
                                                        ("keep75-3ep", 0.75, 3)]
    for name, keep, epochs in cuts:
        host("prune-channels", edge_float, "--keep", keep, "--epochs", epochs, *(tiny[:2] if tiny else []),
             "--repeats", 3 if args.quick else 15, "--out", work / f"channels-{name}", "--force")
        shutil.copy2(work / f"channels-{name}" / "prune_channels.json", out / f"prune_channels-{name}.json")

    host("export-onnx", edge_float, "--out", work / "onnx", "--force")
    shutil.copy2(work / "onnx" / "onnx.json", out / "export_onnx.json")

    if (PHOTOS / "labels.csv").is_file():
        photos = sorted(str(p) for p in PHOTOS.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        labels = ["--labels", PHOTOS / "labels.csv"]
        host("explain", edge_float, *photos[::6], *labels, "--out", out / "explain-photos.png")
        host("explain", edge_float, PHOTOS, *labels, "--wrong-only", "--out", out / "explain-photos-misread.png")
    host("explain", edge_float, "--mnist-errors", 12, "--out", out / "explain-mnist-errors.png")
    print(f"results: {out} ({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
