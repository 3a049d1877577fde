"""``device``: run the MNIST model on a Raspberry Pi (or any Linux box) and measure it."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from device.errors import UsageError

FMT = argparse.ArgumentDefaultsHelpFormatter


def _add_model(p):
    p.add_argument("--model", help="the .tflite model (default: the model shipped in "
                   "device/models/, checked against its manifest)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads")
    p.add_argument("--no-xnnpack", dest="xnnpack", action="store_false",
                   help="build the interpreter without the XNNPACK delegate")
    p.add_argument("--runtime", choices=["ai-edge-litert", "tflite-runtime", "tensorflow"],
                   help="force one interpreter runtime (default: the first installed)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="device", description=__doc__, formatter_class=FMT)
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("run", help="capture, recognise and time every frame", formatter_class=FMT,
                       description="capture -> preprocess -> infer -> postprocess, per-stage "
                       "latency and memory against a per-frame budget.")
    src = p.add_argument_group("source (exactly one)")
    src.add_argument("--camera", action="store_true", help="the Pi camera module (picamera2)")
    src.add_argument("--camera-index", type=int, metavar="N", help="a V4L2 / USB camera (OpenCV)")
    src.add_argument("--source", metavar="FILE|DIR|GLOB",
                     help="/dev/videoN, a video file, or a folder / glob of images")
    p.add_argument("--realtime", action="store_true", help="pace a replay at its frame rate")
    p.add_argument("--full-decode", action="store_true",
                   help="decode an MJPG replay to full-size colour frames (default: straight to "
                        "a reduced grayscale frame, like the Pi camera's lores stream)")
    p.add_argument("--loop", action="store_true", help="repeat a replay until stopped")
    _add_model(p)
    p.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--budget-ms", type=float, default=5.0, help="per-frame processing budget")
    p.add_argument("--output", default="results.json", help="results file (JSON)")
    p.add_argument("--frames-out", metavar="FILE", help="per-frame JSON lines")
    p.add_argument("--fail-over-budget", action="store_true",
                   help="exit 1 when the p99 per-frame total exceeds the budget")
    p.add_argument("--quiet", action="store_true", help="no live prediction lines")

    p = sub.add_parser("bench", help="interpreter benchmark (like benchmark_model)",
                       formatter_class=FMT, description="Init time, first inference, warm-up, "
                       "N timed runs, memory footprint.")
    p.add_argument("bench_model", nargs="?", metavar="MODEL", help="the .tflite (default: shipped)")
    _add_model(p)
    p.add_argument("--runs", type=int, default=1000, help="timed runs")
    p.add_argument("--warmup", type=int, default=50, help="untimed warm-up runs")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-",
                   help="write the result JSON to FILE (or stdout with no FILE)")

    p = sub.add_parser("classify", help="recognise digits in image files", formatter_class=FMT,
                       description="Preprocess and predict each image; with --labels, accuracy.")
    p.add_argument("images", nargs="+", help="image files, folders or globs")
    _add_model(p)
    p.add_argument("--labels", metavar="CSV", help="labels.csv with columns file,label")
    p.add_argument("--json", action="store_true", help="one JSON object per image")

    p = sub.add_parser("golden", help="check the model's predictions on the golden set",
                       formatter_class=FMT, description="Run the shipped golden inputs (MNIST test "
                       "digits and preprocessed photos) and compare with the predictions recorded "
                       "on the host; exit 1 if any differs.")
    _add_model(p)
    p.add_argument("--json", action="store_true", help="one JSON object (with the differing indices)")

    sub.add_parser("info", help="board, CPU, runtimes, cameras", formatter_class=FMT,
                   description="What this machine is and what the device side can use on it.")

    p = sub.add_parser("make-clip", help="write a camera-like replay clip of MNIST digits",
                       formatter_class=FMT, description="Render MNIST test digits as camera frames "
                       "(paper, uneven light, perspective, blur, noise, coloured ink, JPEG) into an "
                       "MJPG .avi plus <clip>.labels.json, for `device run --source`.")
    p.add_argument("out", help="the .avi to write")
    p.add_argument("--digits", type=int, default=100, help="how many digits (max 300)")
    p.add_argument("--hold", type=int, default=3, help="frames per digit")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same clip)")
    return ap


def _model(args, path=None):
    from device.runtime import Model

    return Model(path or args.model, threads=args.threads, xnnpack=args.xnnpack,
                 runtime=args.runtime)


def cmd_run(args) -> int:
    from device.loop import RunOptions, run_loop, summary_lines
    from device.sources import open_source

    if args.frames is not None and args.frames < 1:
        raise UsageError("--frames must be >= 1")
    if args.output:
        out_dir = Path(args.output).resolve().parent
        if not out_dir.is_dir():
            raise UsageError(f"--output folder {out_dir} does not exist")
    source = open_source(args.camera, args.camera_index, args.source, args.realtime, args.loop,
                         fast_decode=not args.full_decode)
    model = _model(args)
    opts = RunOptions(frames=args.frames, duration=args.duration, budget_ms=args.budget_ms,
                      output=args.output, frames_out=args.frames_out, quiet=args.quiet)
    result = run_loop(model, source, opts)
    for line in summary_lines(result):
        print(line)
    if args.output:
        print(f"results: {args.output}")
    if result.status == "source_error":
        print(f"device: error: {result.error}", file=sys.stderr)
        return 1
    total = result.stages["total"]
    if args.fail_over_budget and total.get("count") and total["p99"] > args.budget_ms:
        print(f"device: p99 per-frame total {total['p99']:.3f} ms exceeds the "
              f"{args.budget_ms} ms budget", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args) -> int:
    from device.bench import run_bench
    from device.system import warnings_for

    if args.runs < 1:
        raise UsageError("--runs must be >= 1")
    r = run_bench(args.bench_model or args.model, args.threads, args.xnnpack, args.runs,
                  args.warmup, runtime=args.runtime)
    if args.json == "-":
        print(json.dumps(r.to_json(), indent=2))
        return 0
    if args.json:
        r.write(args.json)
    s = r.stages["inference"]
    m = r.model
    print(f"model {m['path']} ({m['bytes']:,} bytes, {m['input']['dtype']} input), "
          f"{m['runtime']} {m['runtime_version']}, threads {m['threads']}, "
          f"xnnpack {'on' if m['xnnpack'] else 'off'}")
    print(f"init {r.extra['init_ms']:.2f} ms, first inference {r.extra['first_inference_ms']:.3f} ms, "
          f"{r.extra['warmup_runs']} warm-up runs")
    print(f"{r.frames} runs: min {s['min']:.4f}  mean {s['mean']:.4f}  p50 {s['p50']:.4f}  "
          f"p90 {s['p90']:.4f}  p99 {s['p99']:.4f}  max {s['max']:.4f}  std {s['std']:.4f} ms")
    print(f"memory: RSS after init {r.memory['rss_after_init_kb'] / 1024:.1f} MB "
          f"(+{r.memory['init_footprint_kb'] / 1024:.1f} MB for the model), peak "
          f"{r.memory['peak_rss_kb'] / 1024:.1f} MB")
    for w in warnings_for(r.machine):
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(f"results: {args.json}")
    return 0


def cmd_classify(args) -> int:
    from device.classify import classify_files

    return classify_files(_model(args), args.images, args.labels, args.json)


def cmd_golden(args) -> int:
    from device.golden import report

    return report(_model(args), args.json)


def cmd_info(args) -> int:
    from device.info import info_lines

    for line in info_lines():
        print(line)
    return 0


def cmd_make_clip(args) -> int:
    from device.synth import load_sample, make_clip

    x, y = load_sample()
    doc = make_clip(x, y, args.out, n_digits=args.digits, hold=args.hold, seed=args.seed)
    print(f"{args.out}: {doc['frames']} frames ({args.digits} digits, blank paper every 10th); "
          f"labels in {args.out}.labels.json")
    return 0


VERBS = {"run": cmd_run, "bench": cmd_bench, "classify": cmd_classify, "golden": cmd_golden,
         "info": cmd_info, "make-clip": cmd_make_clip}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return VERBS[args.verb](args)
    except UsageError as exc:
        print(f"device: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
