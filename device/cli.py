"""``device``: run the MNIST model on a Raspberry Pi (or any Linux box) and measure it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from device.cliutil import Help, Parser, host_port, number, positive, run_main, threads_type
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


def _add_read(p):
    p.add_argument("--read", choices=["digit", "number"], default="digit",
                   help="digit: the one digit in view (the tallest); number: every digit in view, "
                        "in reading order (lines top to bottom, each left to right), one batched "
                        "inference per frame")


def _add_source(p):
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


def _source_spec(args):
    from device.sources import SourceSpec

    return SourceSpec(args.camera, args.camera_index, args.source, args.realtime, args.loop,
                      fast_decode=not args.full_decode, fps=args.fps)


def _add_preview(p):
    g = p.add_argument_group("live preview and sample collection")
    g.add_argument("--preview", type=host_port(), metavar="[HOST:]PORT",
                   help="serve a live page (frame, model input, prediction, latency charts, label "
                        "buttons) on HOST:PORT (HOST default 127.0.0.1; any other address needs "
                        "a token)")
    g.add_argument("--preview-token", metavar="TOKEN",
                   help="the preview's access token (default: $MNIST_EDGE_PREVIEW_TOKEN, else a "
                        "new random one for a non-local address; printed in the URL)")
    g.add_argument("--preview-fps", type=number(float, lo=0.5, hi=30, flag="--preview-fps"), default=10.0,
                   metavar="N", help="most frames per second the page gets (encoding runs off the loop's thread)")
    g.add_argument("--collection", metavar="DIR", default="collection",
                   help="where the page's label buttons and `device collect` save samples "
                        "(images + labels.csv; created if missing)")
    g.add_argument("--collect-max-mb", type=positive(float, "--collect-max-mb"), default=200.0,
                   metavar="MB", help="cap on a collection folder; the oldest samples are evicted first")
    g.add_argument("--collect-every", type=number(float, lo=0, flag="--collect-every"), default=0.0,
                   metavar="S", help="`device collect` and --collect-uncertain save at most one "
                   "sample every S seconds (a camera repeats the same view 30 times a second)")


def build_parser() -> Parser:
    ap = Parser(prog="device", description=__doc__, formatter_class=Help)
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)

    p = sub.add_parser("run", help="capture, recognise and time every frame", formatter_class=Help,
                       description="capture -> preprocess -> infer -> postprocess, per-stage "
                       "latency and memory against a per-frame budget.")
    _add_source(p)
    _add_model(p)
    _add_read(p)
    p.add_argument("--labels", metavar="FILE",
                   help="ground truth: a clip's .labels.json (from make-clip) or a labels.csv "
                        "(file,label) for a folder; adds per-frame accuracy and the per-class "
                        "confusion to the summary and the results file")
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
    _add_preview(p)
    p.add_argument("--collect-uncertain", metavar="DIR",
                   help="save every digit read with confidence below --below to this collection, "
                        "unlabelled, for labelling later")
    p.add_argument("--below", type=number(float, lo=0, hi=1, lo_open=True, flag="--below"), metavar="P",
                   help="the confidence threshold of --collect-uncertain (default: 0.8)")

    p = sub.add_parser("collect", help="save the next N frames showing a digit, with its label",
                       formatter_class=Help, description="Show the camera one digit (or something that "
                       "is not a digit) and save the next --count frames in which a digit is found "
                       "to a collection folder, labelled, for `host finetune`.")
    p.add_argument("--label", required=True, choices=[*"0123456789", "none"],
                   help="what the camera is shown (none: not a digit)")
    p.add_argument("--count", type=number(int, lo=1, flag="--count"), default=20, help="samples to save")
    _add_source(p)
    _add_model(p)
    p.add_argument("--duration", type=positive(float, "--duration"), metavar="S", help="give up after S seconds")
    p.add_argument("--budget-ms", type=positive(float, "--budget-ms"), default=5.0,
                   help="per-frame budget (the preview's charts)")
    _add_preview(p)

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
    _add_read(p)
    p.add_argument("--labels", metavar="CSV", help="labels.csv with columns file,label (with "
                   "--read number: the number, its lines separated by spaces)")
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
    sc = p.add_argument_group("real scenes (instead of the tidy clip above)")
    sc.add_argument("--scene", choices=["digit", "number"],
                    help="render scenes a camera over a desk sees: the paper's edge and the desk, "
                         "hand and phone shadows, lamp spots, glare, ruled and squared paper, stray "
                         "marks, small digits, perspective, motion blur, dim light, padded borders; "
                         "one digit per frame, or numbers of 2-8 digits on one or two lines")
    sc.add_argument("--frames", type=number(int, lo=1, flag="--frames"), default=300,
                    help="scene frames (every 10th without a digit)")
    sc.add_argument("--photos", metavar="DIR", help="cut the digits from the one-digit photos in DIR "
                    "(with labels.csv, files named <writer>-...) instead of the shipped MNIST sample")
    sc.add_argument("--writers", metavar="NAME", nargs="+",
                    help="with --photos: only these writers' photos (e.g. held out from tuning)")
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
    from device import observers
    from device.loop import Limits, run_loop
    from device.recorder import Recorder, RecordOptions, summary_lines
    from device.sources import open_source
    from device.step import Step

    output, replaces = _outputs(args)
    scorer = None
    if args.labels:
        from device.scoring import Scorer, Truth

        scorer = Scorer(Truth(args.labels, number=args.read == "number"), args.read)
    source = open_source(_source_spec(args))
    model = _model(args)
    step = Step(model, read=args.read)
    opts = RecordOptions(budget_ms=args.budget_ms, output=output, frames_out=args.frames_out,
                         quiet=args.quiet, checkpoint_s=args.checkpoint_s, read=args.read)
    recorder = Recorder(opts, model.describe(), model.timing(), scorer=scorer)
    # The preview binds and collection folders are checked here, before the camera opens.
    extras = observers.build(args, source, uncertain=args.collect_uncertain, below=args.below)
    with extras, source:  # an unopenable camera or file is a usage error: nothing is written
        if scorer is not None:
            scorer.truth.check_source(source)
        recorder.open()
        try:
            result = run_loop(step, source, recorder, Limits(args.frames, args.duration), extras.observers)
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
    for line in summary_lines(result) + extras.summary_lines():
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


def cmd_collect(args) -> int:
    from device import observers
    from device.loop import Limits, run_loop
    from device.recorder import Recorder, RecordOptions
    from device.sources import open_source
    from device.step import Step

    source = open_source(_source_spec(args))
    model = _model(args)
    recorder = Recorder(RecordOptions(budget_ms=args.budget_ms, quiet=True), model.describe(), model.timing())
    extras = observers.build(args, source, label=args.label, count=args.count)
    with extras, source:
        result = run_loop(Step(model), source, recorder, Limits(duration=args.duration), extras.observers)
    saver = extras.savers[0]
    for line in extras.summary_lines():
        print(line)
    if result.status == "source_error":
        print(f"device: error: {result.error}", file=sys.stderr)
        return 1
    if saver.saved < args.count:
        print(f"device: {saver.saved} of {args.count} samples saved ({result.stop_reason or result.status}; "
              f"{recorder.frames} frames, {recorder.counts['no_digit']} without a digit)", file=sys.stderr)
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

    return classify_files(Step(_model(args), read=args.read), args.images, args.labels, args.json)


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
    if args.photos and not args.scene:
        raise UsageError("--photos draws scenes: add --scene digit or --scene number")
    if args.writers and not args.photos:
        raise UsageError("--writers picks photos: add --photos DIR")
    if args.scene:
        from device.glyphs import mnist_glyphs, photo_glyphs
        from device.scenes import make_scene_clip

        if args.photos:
            glyphs = photo_glyphs(args.photos, set(args.writers) if args.writers else None)
            if not glyphs:
                raise UsageError(f"--photos {args.photos}: no photo of writer(s) {', '.join(args.writers)}")
        else:
            glyphs = mnist_glyphs(*load_sample())
        doc = make_scene_clip(args.out, glyphs, args.frames, args.scene, seed=args.seed)
        print(f"{args.out}: {doc['frames']} scene frames ({args.scene}s of {', '.join(doc['writers'])}, "
              f"every 10th without a digit); labels in {args.out}.labels.json")
        return 0
    x, y = load_sample()
    doc = make_clip(x, y, args.out, n_digits=args.digits, hold=args.hold, seed=args.seed)
    print(f"{args.out}: {doc['frames']} frames ({args.digits} digits, blank paper every 10th); "
          f"labels in {args.out}.labels.json")
    return 0


VERBS = {"run": cmd_run, "collect": cmd_collect, "bench": cmd_bench, "classify": cmd_classify,
         "golden": cmd_golden, "info": cmd_info, "make-clip": cmd_make_clip}


def main(argv=None) -> int:
    return run_main("device", build_parser, VERBS, argv)


if __name__ == "__main__":
    sys.exit(main())
