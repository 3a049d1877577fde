"""``host``: train, prune, quantize, convert and evaluate the MNIST CNN on a workstation."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from device.cliutil import Help, Parser, number, positive, run_main, threads_type
from device.errors import UsageError
from host import config

# The verbs that train or convert import TensorFlow (seconds, and its start-up messages); each
# verb imports what it needs inside its function, after its arguments and output paths were
# checked, so `host --help`, a bad flag or `host report` answer without TensorFlow.


# -- argument types ------------------------------------------------------------------------
def _fraction(flag: str, lo_open: bool):
    """A float in [0, 1) (or (0, 1) with ``lo_open``)."""
    return number(float, lo=0, lo_open=lo_open, hi=1, hi_open=True, flag=flag)


def _index_list(text: str) -> list[int]:
    try:
        index = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mnist-index takes comma-separated integers (got {text!r})") from None
    if any(i < 0 for i in index):
        raise argparse.ArgumentTypeError(f"--mnist-index takes indexes >= 0 (got {text!r})")
    return index


def _existing_file(flag: str):
    def parse(text: str) -> str:
        p = Path(text)
        if not p.exists():
            raise argparse.ArgumentTypeError(f"{text}: no such file")
        if not p.is_file():
            raise argparse.ArgumentTypeError(f"{text} is not a file")
        return text
    parse.__name__ = flag
    return parse


EPOCHS = number(int, lo=1, flag="--epochs")
SEED = number(int, lo=0, hi=2**32 - 1, flag="--seed")
LIMIT = number(int, lo=100, flag="--limit")


# -- the parser -----------------------------------------------------------------------------
def _add_data(p):
    p.add_argument("--data", metavar="DIR", help="MNIST folder (4 IDX files, .gz or raw) or mnist.npz; "
                   "default: $MNIST_DIR, then ~/.keras/datasets/mnist.npz, then the keras download")


def _add_out(p, default: str):
    p.add_argument("--out", default=default, help="output folder (created if missing)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out that does not "
                   "hold a previous run of this verb, replacing the files this verb writes")


def _add_training(p, d: config.TrainConfig):
    p.add_argument("--arch", default=d.arch, choices=config.ARCH_NAMES, help="model architecture")
    p.add_argument("--epochs", type=EPOCHS, default=d.epochs,
                   help="max float epochs (early stopping on validation loss, patience 3)")
    p.add_argument("--batch", type=positive(int, flag="--batch"), default=d.batch, help="batch size")
    p.add_argument("--lr", type=positive(flag="--lr"), default=d.lr, help="initial Adam learning rate")
    p.add_argument("--lr-schedule", default=d.lr_schedule, choices=config.LR_SCHEDULES,
                   help="learning-rate decay over the epochs (cosine ends at 1%% of --lr)")
    p.add_argument("--lr-decay", type=number(float, lo=0, lo_open=True, hi=1, flag="--lr-decay"),
                   default=d.lr_decay, help="per-epoch factor for --lr-schedule exponential")
    p.add_argument("--l2", type=number(float, lo=0, flag="--l2"), default=d.l2,
                   help="L2 weight penalty (0 = off)")
    p.add_argument("--limit", type=LIMIT, metavar="N", help="use only N (>= 100) training images (quick runs)")
    p.add_argument("--augment", default=d.augment, choices=config.AUGMENT_MODES,
                   help="training augmentation: camera = rotation/shift/zoom + what the device's "
                   "crops of photos show (stroke width, saturation, blur, shadow, noise, cut ends); "
                   "full = the previous default (rotation/shift/zoom + stroke thickness and blur); "
                   "geometric = rotation/shift/zoom only")
    p.add_argument("--seed", type=SEED, default=d.seed, help="random seed")
    _add_data(p)


def _add_qat(p, d: config.TrainConfig, out_default: str):
    p.add_argument("--qat-epochs", type=number(int, lo=0, flag="--qat-epochs"), default=d.qat_epochs,
                   help="QAT fine-tuning epochs")
    p.add_argument("--qat-lr", type=positive(flag="--qat-lr"), default=d.qat_lr, help="QAT learning rate")
    p.add_argument("--io", default=d.io, choices=config.IO_TYPES,
                   help="input/output tensor type of the INT8 model")
    _add_out(p, out_default)


def _verb(sub, name: str, help: str, description: str):
    return sub.add_parser(name, help=help, description=description, formatter_class=Help)


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="host", description=__doc__, formatter_class=Help)
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB")

    d = config.defaults("train")
    p = _verb(sub, "train", "float training", "Float training: Adam, LR decay, early stopping. "
              "With the same flags it trains the float model `host train-qat` starts from.")
    _add_training(p, d)
    _add_out(p, "runs/float")

    d = config.defaults("train-qat")
    p = _verb(sub, "train-qat", "the main job: train + QAT (+ pruning) -> INT8 .tflite",
              "Float pre-training (or --from), optional magnitude pruning, quantization-aware "
              "training, full-INT8 conversion and evaluation of the .tflite on all 10,000 test "
              "images with the device runtime.")
    _add_training(p, d)
    p.add_argument("--from", dest="from_model", metavar="MODEL", type=_existing_file("--from"),
                   help="start from this float Keras model (.h5) instead of training one")
    p.add_argument("--sparsity", type=_fraction("--sparsity", lo_open=False), default=d.sparsity,
                   help="magnitude-prune to this sparsity in [0, 1), then prune-preserving QAT")
    p.add_argument("--prune-epochs", type=number(int, lo=1, flag="--prune-epochs"), default=d.prune_epochs,
                   help="pruning fine-tune epochs")
    _add_qat(p, d, "runs/qat")

    d = config.defaults("distill")
    p = _verb(sub, "distill", "knowledge distillation from a larger teacher -> INT8",
              "Train the student twice from the same initial weights on the same batches - on "
              "labels alone and distilled from a teacher (softened probabilities at --temperature, "
              "weighted 1-alpha) - then QAT + full INT8 + evaluation of both; writes distill.json "
              "with both accuracies.")
    _add_training(p, d)
    p.add_argument("--teacher", metavar="MODEL", type=_existing_file("--teacher"),
                   help="teacher: a float Keras model (.h5); default: train one of --teacher-arch first")
    p.add_argument("--teacher-arch", default="seed", choices=config.ARCH_NAMES,
                   help="teacher to train when no --teacher")
    p.add_argument("--teacher-epochs", type=number(int, lo=1, flag="--teacher-epochs"), default=3,
                   help="epochs for that teacher")
    p.add_argument("--temperature", type=positive(flag="--temperature"), default=4.0,
                   help="softmax temperature T of the soft targets")
    p.add_argument("--alpha", type=number(float, lo=0, hi=1, flag="--alpha"), default=0.3,
                   help="weight of the hard-label loss (1-alpha: the teacher's soft targets)")
    _add_qat(p, d, "runs/distill")

    d = config.defaults("prune-channels")
    p = _verb(sub, "prune-channels", "structured pruning: remove conv channels -> smaller INT8",
              "Rank each conv block's channels by their BatchNorm scale |gamma|, keep the top --keep "
              "fraction, rebuild a smaller dense model with the kept weights, fine-tune, QAT + INT8; "
              "the unpruned model gets the same QAT + INT8. Reports MACs, bytes, latency and "
              "accuracy before and after.")
    p.add_argument("model", type=_existing_file("model"),
                   help="float Keras model of the edge family (.h5 from train / train-qat)")
    p.add_argument("--keep", type=_fraction("--keep", lo_open=True), default=0.5,
                   help="fraction of channels kept in every block, in (0, 1)")
    p.add_argument("--epochs", type=EPOCHS, default=d.epochs, help="fine-tuning epochs after the cut")
    p.add_argument("--lr", type=positive(flag="--lr"), default=d.lr, help="fine-tuning learning rate")
    p.add_argument("--qat-epochs", type=number(int, lo=0, flag="--qat-epochs"), default=d.qat_epochs,
                   help="QAT fine-tuning epochs")
    p.add_argument("--limit", type=LIMIT, metavar="N", help="use only N (>= 100) training images")
    p.add_argument("--repeats", type=positive(int, flag="--repeats"), default=9,
                   help="interleaved latency repeats")
    p.add_argument("--seed", type=SEED, default=d.seed, help="random seed")
    _add_out(p, "runs/channels")
    _add_data(p)

    p = _verb(sub, "export-onnx", "ONNX export, checked with onnxruntime",
              "Export a float Keras model to ONNX (tf2onnx) and run it with onnxruntime on the "
              "10,000 test images next to the TFLite float32 conversion of the same model: same "
              "predictions on >= 99.9%% of images, or exit 1.")
    p.add_argument("model", type=_existing_file("model"), help="float Keras model (.h5)")
    p.add_argument("--opset", type=positive(int, flag="--opset"), default=17, help="ONNX opset")
    p.add_argument("--threads", type=threads_type(), default=1, help="threads for both runtimes")
    _add_out(p, "runs/onnx")
    _add_data(p)

    p = _verb(sub, "explain", "Grad-CAM heatmaps as a PNG grid",
              "Grad-CAM for image files (preprocessed as on the device) and/or MNIST test images: "
              "where the evidence for the predicted class lies.")
    p.add_argument("model", type=_existing_file("model"), help="float Keras model (.h5)")
    p.add_argument("images", nargs="*", help="image files, folders or globs (e.g. digit photos)")
    p.add_argument("--labels", metavar="CSV", type=_existing_file("--labels"),
                   help="labels.csv (file,label): misreads are marked")
    p.add_argument("--mnist-index", type=_index_list, metavar="I,J,...",
                   help="MNIST test images by index")
    p.add_argument("--mnist-errors", type=number(int, lo=0, flag="--mnist-errors"), default=0, metavar="N",
                   help="also the first N test images the model gets wrong")
    p.add_argument("--wrong-only", action="store_true", help="draw only the misread (labelled) images")
    p.add_argument("--layer", help="feature-map layer (default: the last one at least 7x7)")
    p.add_argument("--out", default="explain.png", help="the PNG grid")
    _add_data(p)

    d, mix = config.defaults("finetune"), config.MixConfig()
    p = _verb(sub, "finetune", "fine-tune on collected samples mixed with MNIST -> INT8",
              "Fine-tune the shipped model (or --base) on collected samples (folders with labels.csv "
              "from `device collect` or the preview; the dev photos folder too) mixed with MNIST, then "
              "QAT + full INT8 + evaluation and manifest, ready for `deploy.sh --model`. Scores MNIST "
              "and the held-out samples before and after (finetune.json).")
    p.add_argument("collections", nargs="+", metavar="COLLECTION", help="collection folders")
    p.add_argument("--base", metavar="MODEL", type=_existing_file("--base"),
                   help="start from this model: an INT8 edge .tflite, or float.h5 / qat.h5 from "
                   "host train-qat (default: the shipped device/models/model.tflite)")
    p.add_argument("--test", action="append", default=[], metavar="COLLECTION",
                   help="score on this collection (repeatable) and train on all of COLLECTION...; "
                   "default: hold out --holdout of it")
    p.add_argument("--holdout", type=_fraction("--holdout", lo_open=False), default=mix.holdout,
                   help="share of each digit's samples held out for scoring, in [0, 1)")
    p.add_argument("--ratio", type=_fraction("--ratio", lo_open=True), default=mix.ratio,
                   help="collected share of each batch, in (0, 1); the rest is MNIST")
    p.add_argument("--mnist-images", type=number(int, lo=100, hi=60000, flag="--mnist-images"),
                   default=mix.mnist_images, help="MNIST training images in the mix")
    p.add_argument("--epochs", type=number(int, lo=0, flag="--epochs"), default=d.epochs,
                   help="float fine-tuning epochs over the mix (0: QAT on the mix only)")
    p.add_argument("--lr", type=positive(flag="--lr"), default=d.lr, help="fine-tuning learning rate (cosine decay)")
    p.add_argument("--batch", type=positive(int, flag="--batch"), default=d.batch, help="batch size")
    p.add_argument("--seed", type=SEED, default=d.seed, help="random seed")
    _add_qat(p, d, "runs/finetune")
    _add_data(p)

    d = config.defaults("prune")
    p = _verb(sub, "prune", "magnitude pruning of a float model",
              "Polynomial-decay magnitude pruning to a target sparsity, strip_pruning, per-layer "
              "sparsity and gzip size.")
    p.add_argument("model", type=_existing_file("model"), help="float Keras model (.h5)")
    p.add_argument("--sparsity", type=_fraction("--sparsity", lo_open=True), default=0.5,
                   help="target sparsity, in (0, 1)")
    p.add_argument("--epochs", dest="prune_epochs", type=EPOCHS, default=d.prune_epochs,
                   help="pruning fine-tune epochs")
    p.add_argument("--limit", type=LIMIT, metavar="N", help="use only N (>= 100) training images")
    p.add_argument("--seed", type=SEED, default=d.seed, help="random seed")
    _add_out(p, "runs/pruned")
    _add_data(p)

    p = _verb(sub, "convert", "Keras model -> TFLite, verified", "Convert and evaluate on the test set.")
    p.add_argument("model", type=_existing_file("model"), help="Keras model (.h5) from train / train-qat")
    p.add_argument("--mode", default="int8", choices=["int8", "dynamic", "float16", "float32"],
                   help="int8 = full integer; dynamic = dynamic-range weights")
    p.add_argument("--io", default="int8", choices=config.IO_TYPES, help="input/output type for --mode int8")
    _add_out(p, "runs/converted")
    _add_data(p)

    p = _verb(sub, "evaluate", "accuracy, confusion matrix, latency of a .tflite",
              "Evaluate a .tflite on the 10,000 MNIST test images with the device runtime.")
    p.add_argument("model", type=_existing_file("model"), help=".tflite model")
    p.add_argument("--threads", type=threads_type(), default=1, help="interpreter threads")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_data(p)

    p = _verb(sub, "report", "HTML / Markdown report from result files",
              "Render `device run` / `device bench` results (this machine's, or a Pi's from "
              "deploy.sh --bench), benchmark suite summaries and technique results side by side. "
              "Needs no TensorFlow.")
    p.add_argument("results", nargs="*", metavar="RESULT.json")
    p.add_argument("--fleet", metavar="DIR", help="a fleet rollout's folder (reports/fleet, from "
                   "fleet/deploy.yml): one row per Pi")
    p.add_argument("--out", default="report.html", help="self-contained HTML file")
    p.add_argument("--markdown", metavar="REPORT.md", help="also write a Markdown summary")
    p.add_argument("--baseline", metavar="OLD.json", help="mark stages slower than this result")
    p.add_argument("--tolerance", type=number(float, lo=0, flag="--tolerance"), default=0.10,
                   help="regression tolerance (fraction)")
    return ap


# -- the verbs ------------------------------------------------------------------------------
def _out_dir(args) -> None:
    from host.artifacts import check_out_dir

    check_out_dir(args.out, verb=args.verb, force=args.force)


def cmd_train(args) -> int:
    _out_dir(args)
    from host.pipeline import run_train

    run_train(config.from_args(args.verb, args), args.data, args.out)
    return 0


def cmd_train_qat(args) -> int:
    _out_dir(args)
    from host.pipeline import run_train_qat

    run_train_qat(config.from_args(args.verb, args), args.data, args.out, args.from_model)
    return 0


def cmd_prune(args) -> int:
    _out_dir(args)
    from host.pipeline import run_prune

    run_prune(args.model, args.sparsity, config.from_args(args.verb, args), args.data, args.out)
    return 0


def cmd_convert(args) -> int:
    _out_dir(args)
    from host.pipeline import run_convert

    run_convert(args.model, args.mode, args.io, args.data, args.out)
    return 0


def cmd_evaluate(args) -> int:
    from host.pipeline import run_evaluate

    run_evaluate(args.model, args.data, args.threads, args.json)
    return 0


def cmd_finetune(args) -> int:
    _out_dir(args)
    from host.finetune import run_finetune  # reads the collections before TensorFlow loads

    mix = config.MixConfig(ratio=args.ratio, mnist_images=args.mnist_images, holdout=args.holdout)
    run_finetune(args.collections, config.from_args(args.verb, args), mix, args.data, args.out,
                 base=args.base, test=args.test)
    return 0


def cmd_distill(args) -> int:
    _out_dir(args)
    from host.techniques import run_distill

    run_distill(config.from_args(args.verb, args), args.data, args.out, teacher=args.teacher,
                teacher_arch=args.teacher_arch, teacher_epochs=args.teacher_epochs,
                temperature=args.temperature, alpha=args.alpha)
    return 0


def cmd_prune_channels(args) -> int:
    _out_dir(args)
    from host.techniques import run_prune_channels

    run_prune_channels(args.model, args.keep, config.from_args(args.verb, args), args.data, args.out,
                       args.repeats)
    return 0


def cmd_export_onnx(args) -> int:
    _out_dir(args)
    from host.techniques import run_export_onnx

    doc = run_export_onnx(args.model, args.data, args.out, args.opset, args.threads)
    if not doc["pass"]:
        print(f"host: ONNX and TFLite float32 agree on only {doc['agreement']:.2%} of images "
              f"(< {doc['min_agreement']:.1%})", file=sys.stderr)
        return 1
    return 0


def cmd_explain(args) -> int:
    from device.fsio import check_output

    if not args.images and not args.mnist_index and not args.mnist_errors:
        raise UsageError("nothing to explain: give image files/folders, --mnist-index or --mnist-errors")
    if Path(args.out).suffix.lower() != ".png":
        raise UsageError(f"--out {args.out} must be a .png file")
    check_output(args.out, "--out")
    if args.wrong_only and args.images and not args.labels and not (args.mnist_index or args.mnist_errors):
        raise UsageError("--wrong-only needs labels: --labels CSV for files, or MNIST images")
    from host.techniques import run_explain

    run_explain(args.model, args.images, args.labels, args.mnist_index or [], args.mnist_errors, args.layer,
                args.data, args.out, args.wrong_only)
    return 0


def cmd_report(args) -> int:
    from device.fsio import check_output

    check_output(args.out, "--out")
    if args.markdown:
        check_output(args.markdown, "--markdown")
        if Path(args.markdown).resolve() == Path(args.out).resolve():
            raise UsageError("--markdown and --out name the same file; give two paths")
    from host.report import build_report
    from host.report.page import one_line

    rep = build_report(args.results, args.out, args.markdown, args.baseline, args.tolerance, args.fleet)
    for line in rep["problems"]:
        print(f"host: warning: {one_line(line)}", file=sys.stderr)
    for note in rep["notes"]:
        print(one_line(note))
    print(f"report: {args.out}" + (f", {args.markdown}" if args.markdown else ""))
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every ``finally`` (the staging folder) runs."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _stoppable(cmd):
    """Ctrl-C / SIGTERM inside a verb: one line, exit 130 / 143.  Staging folders and atomic
    writes make the line true: an output is the old one or the complete new one."""
    def run(args) -> int:
        try:
            return cmd(args)
        except KeyboardInterrupt as exc:
            term = isinstance(exc, Terminated)
            out = getattr(args, "out", None)
            print(f"host: {'terminated' if term else 'interrupted'}"
                  + (f"; nothing partial was written to {out}" if out else ""), file=sys.stderr)
            return 128 + signal.SIGTERM if term else 130
    return run


VERBS = {name: _stoppable(cmd) for name, cmd in {
    "train": cmd_train, "train-qat": cmd_train_qat, "distill": cmd_distill,
    "prune-channels": cmd_prune_channels, "export-onnx": cmd_export_onnx, "explain": cmd_explain,
    "prune": cmd_prune, "convert": cmd_convert, "evaluate": cmd_evaluate, "report": cmd_report,
    "finetune": cmd_finetune}.items()}


def main(argv=None) -> int:
    # A killed job must clean up like an interrupted one: its staging folder, its temp files.
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run_main("host", build_parser, VERBS, argv)
    except SystemExit as exc:  # argparse: --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
