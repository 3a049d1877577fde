"""``device``: run the MNIST model on a Raspberry Pi (or any Linux box) and measure it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from device.cliutil import Help, Parser, number, positive, run_main, threads_type
from device.errors import UsageError

RUNS_DIR = "runs"   # where `device run` puts its results unless --output says otherwise


def _add_model(p):
    p.add_argument("--model", help="the .tflite model (default: the model shipped in "
                   "device/models/, which is only run when its manifest matches)")
    p.add_argument("--threads", type=threads_type(), default=1, help="interpreter threads")
    p.add_argument("--no-xnnpack", dest="xnnpack", action="store_false",
                   help="build the interpreter without the XNNPACK delegate (default: with it)")
    p.add_argument("--runtime", choices=["ai-edge-litert", "tflite-runtime", "tensorflow"],
                   help="force one interpreter runtime (default: the first installed)")


def build_parser() -> Parser:
    ap = Parser(prog="device", description=__doc__, formatter_class=Help)
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)

    p = sub.add_parser("run", help="capture, recognise and time every frame", formatter_class=Help,
                       description="capture -> preprocess -> infer -> postprocess, per-stage "
                       "latency and memory against a per-frame budget.")
    src = p.add_argument_group("source (exactly one)")
    src.add_argument("--camera", action="store_true", help="the Pi camera module (picamera2)")
    src.add_argument("--camera-index", type=number(int, lo=0, flag="--camera-index"), metavar="N",
                     help="a V4L2 / USB camera (OpenCV)")
    src.add_argument("--source", metavar="FILE|DIR|GLOB",
                     help="/dev/videoN, a video file, or a folder / glob of images")
    p.add_argument("--fps", type=positive(float, "--fps"), default=30.0,
                   help="--camera: the frame rate to fix on the Pi camera (the rate it delivers is "
                        "recorded)")
    p.add_argument("--realtime", action="store_true", help="pace a replay at its frame rate")
    p.add_argument("--full-decode", action="store_true",
                   help="decode an MJPG replay to full-size colour frames (default: straight to "
                        "a reduced grayscale frame, like the Pi camera's lores stream)")
    p.add_argument("--loop", action="store_true", help="repeat a replay until stopped")
    _add_model(p)
    p.add_argument("--frames", type=number(int, lo=1, flag="--frames"), metavar="N",
                   help="stop after N frames")
    p.add_argument("--duration", type=positive(float, "--duration"), metavar="S", help="stop after S seconds")
    p.add_argument("--budget-ms", type=positive(float, "--budget-ms"), default=5.0,
                   help="per-frame processing budget")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--output", metavar="FILE", help=f"results file (JSON; default: a new "
                     f"{RUNS_DIR}/run-<UTC time>.json, so no earlier run is ever replaced)")
    out.add_argument("--no-output", action="store_true", help="write no results file")
    p.add_argument("--frames-out", metavar="FILE", help="per-frame JSON lines")
    p.add_argument("--checkpoint-s", type=positive(float, "--checkpoint-s"), metavar="S",
                   help="also write the results file every S seconds while running (a service)")
    p.add_argument("--fail-over-budget", action="store_true",
                   help="exit 1 when the p99 per-frame total exceeds the budget or no frame was "
                        "processed")
    p.add_argument("--quiet", action="store_true", help="no live prediction lines")

    p = sub.add_parser("bench", help="interpreter benchmark (like benchmark_model)",
                       formatter_class=Help, description="Init time, first inference, warm-up, "
                       "N timed runs, memory footprint.")
    p.add_argument("bench_model", nargs="?", metavar="MODEL", help="the .tflite (default: shipped)")
    _add_model(p)
    p.add_argument("--runs", type=number(int, lo=1, flag="--runs"), default=1000, help="timed runs")
    p.add_argument("--warmup", type=number(int, lo=0, flag="--warmup"), default=50,
                   help="untimed warm-up runs")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-",
                   help="write the result JSON to FILE (or stdout with no FILE)")

    p = sub.add_parser("classify", help="recognise digits in image files", formatter_class=Help,
                       description="Preprocess and predict each image; with --labels, accuracy.")
    p.add_argument("images", nargs="+", help="image files, folders or globs")
    _add_model(p)
    p.add_argument("--labels", metavar="CSV", help="labels.csv with columns file,label")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per image, then one summary object (all on stdout)")

    p = sub.add_parser("golden", help="check the model's predictions on the golden set",
                       formatter_class=Help, description="Run the shipped golden inputs (MNIST test "
                       "digits and preprocessed photos) and compare with the predictions recorded "
                       "on the host; exit 1 if any differs.")
    _add_model(p)
    p.add_argument("--json", action="store_true", help="one JSON object (with the differing indices)")

    sub.add_parser("info", help="board, CPU, runtimes, cameras", formatter_class=Help,
                   description="What this machine is and what the device side can use on it.")

    p = sub.add_parser("make-clip", help="write a camera-like replay clip of MNIST digits",
                       formatter_class=Help, description="Render MNIST test digits as camera frames "
                       "(paper, uneven light, perspective, blur, noise, coloured ink, JPEG) into an "
                       "MJPG .avi plus <clip>.labels.json, for `device run --source`.")
    p.add_argument("out", help="the .avi to write")
    p.add_argument("--digits", type=number(int, lo=1, hi=300, flag="--digits"), default=100,
                   help="how many digits (1-300: the MNIST test digits shipped with the device side)")
    p.add_argument("--hold", type=number(int, lo=1, flag="--hold"), default=3, help="frames per digit")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same clip)")
    return ap


def _model(args, path=None):
    from device.runtime import Model

    return Model(path or args.model, threads=args.threads, xnnpack=args.xnnpack, runtime=args.runtime)


def _outputs(args) -> tuple[str | None, bool]:
    """(results path, whether it replaces an existing file); checked before anything starts."""
    from device.fsio import check_output, unique_path

    if args.frames_out:
        check_output(args.frames_out, "--frames-out")
    if args.no_output:
        return None, False
    if args.output is not None:
        dest = check_output(args.output, "--output")
        return args.output, dest.exists()
    folder = Path(RUNS_DIR)
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {folder.resolve()} for the results ({exc.strerror}); "
                         "pass --output FILE") from None
    path = unique_path(folder, "run-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), ".json")
    check_output(path, "--output")
    return str(path), False


def cmd_run(args) -> int:
    from device.loop import Limits, run_loop
    from device.recorder import Recorder, RecordOptions, summary_lines
    from device.sources import SourceSpec, open_source
    from device.step import Step

    output, replaces = _outputs(args)
    source = open_source(SourceSpec(args.camera, args.camera_index, args.source, args.realtime,
                                    args.loop, fast_decode=not args.full_decode, fps=args.fps))
    model = _model(args)
    step = Step(model)
    opts = RecordOptions(budget_ms=args.budget_ms, output=output, frames_out=args.frames_out,
                         quiet=args.quiet, checkpoint_s=args.checkpoint_s)
    recorder = Recorder(opts, model.describe(), model.timing())
    with source:  # an unopenable camera or file is a usage error: nothing is written
        recorder.open()
        try:
            result = run_loop(step, source, recorder, Limits(args.frames, args.duration))
        except BaseException as exc:
            partial = getattr(exc, "partial_result", None)
            if partial is not None and output and partial.frames:
                partial.write(output)
                print(f"device: the run failed; what was measured is in {output}", file=sys.stderr)
            raise
        finally:
            recorder.close()
        # Written before the source is released: a camera whose stop hangs cannot lose it.
        if output and result.status != "no_frames":
            result.write(output)
    for line in summary_lines(result):
        print(line)
    if result.status == "no_frames":
        where = f"; nothing was written to {output}" + (" (the previous file is untouched)" if replaces else "") \
            if output else ""
        print(f"device: no frame was processed{where}", file=sys.stderr)
        return 1
    if output:
        print(f"results: {output}" + (" (replaced the previous file)" if replaces else ""))
    if result.status == "source_error":
        print(f"device: error: {result.error}", file=sys.stderr)
        return 1
    p99 = result.p99_total
    if args.fail_over_budget and p99 is not None and p99 > args.budget_ms:
        print(f"device: p99 per-frame total {p99:.3f} ms exceeds the {args.budget_ms:g} ms budget",
              file=sys.stderr)
        return 1
    return 0


def cmd_bench(args) -> int:
    import json

    from device.bench import run_bench
    from device.system import warnings_for

    if args.json and args.json != "-":
        from device.fsio import check_output

        check_output(args.json, "--json")
    r = run_bench(args.bench_model or args.model, args.threads, args.xnnpack, args.runs,
                  args.warmup, runtime=args.runtime)
    if args.json == "-":
        print(json.dumps(r.to_json(), indent=2))
        return 0
    if args.json:
        r.write(args.json)
    s = r.stages["inference"]
    m, t = r.model, r.timing
    print(f"model {m['path']} ({m['bytes']:,} bytes, {m['input']['dtype']} input, {m['verified']}), "
          f"{m['runtime']} {m['runtime_version']}, threads {m['threads']}, "
          f"xnnpack {'on' if m['xnnpack'] else 'off'}")
    print(f"load {t['model_load_ms']:.2f} ms (interpreter {t['interpreter_init_ms']:.2f} ms), "
          f"first inference {t['first_inference_ms']:.3f} ms, {r.warmup_runs} warm-up runs")
    print(f"{r.runs} runs: min {s['min']:.4f}  mean {s['mean']:.4f}  p50 {s['p50']:.4f}  "
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
    from device.step import Step

    return classify_files(Step(_model(args)), args.images, args.labels, args.json)


def cmd_golden(args) -> int:
    from device.golden import report

    return report(_model(args), args.json)


def cmd_info(args) -> int:
    from device.info import info_lines

    for line in info_lines():
        print(line)
    return 0


def cmd_make_clip(args) -> int:
    from device.fsio import check_output
    from device.synth import load_sample, make_clip

    check_output(args.out, "make-clip OUT")
    check_output(args.out + ".labels.json", "make-clip OUT")
    x, y = load_sample()
    doc = make_clip(x, y, args.out, n_digits=args.digits, hold=args.hold, seed=args.seed)
    print(f"{args.out}: {doc['frames']} frames ({args.digits} digits, blank paper every 10th); "
          f"labels in {args.out}.labels.json")
    return 0


VERBS = {"run": cmd_run, "bench": cmd_bench, "classify": cmd_classify, "golden": cmd_golden,
         "info": cmd_info, "make-clip": cmd_make_clip}


def main(argv=None) -> int:
    return run_main("device", build_parser, VERBS, argv)


if __name__ == "__main__":
    sys.exit(main())
