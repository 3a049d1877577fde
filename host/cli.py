"""``host``: train, prune, quantize, convert and evaluate the MNIST CNN on a workstation."""

from __future__ import annotations

import argparse
import sys

from device.errors import UsageError
from host.finetune import FinetuneOptions  # TensorFlow-free: the verb's defaults

FMT = argparse.ArgumentDefaultsHelpFormatter


def _add_data(p):
    p.add_argument("--data", metavar="DIR", help="MNIST folder (4 IDX files, .gz or raw) or "
                   "mnist.npz; default $MNIST_DIR, then ~/.keras/datasets/mnist.npz, then download")


def _add_training(p, epochs_default=15):
    p.add_argument("--arch", default="edge", help="model architecture: edge | seed | wide")
    p.add_argument("--epochs", type=int, default=epochs_default, help="max float epochs "
                   "(early stopping on validation loss, patience 3)")
    p.add_argument("--batch", type=int, default=128, help="batch size")
    p.add_argument("--lr", type=float, default=2e-3, help="initial Adam learning rate")
    p.add_argument("--lr-schedule", default="cosine", choices=["cosine", "exponential"],
                   help="learning-rate decay over the epochs (cosine ends at 1%% of --lr)")
    p.add_argument("--lr-decay", type=float, default=0.85,
                   help="per-epoch factor for --lr-schedule exponential")
    p.add_argument("--l2", type=float, default=0.0, help="L2 weight penalty (0 = off)")
    p.add_argument("--limit", type=int, metavar="N", help="use only N training images (quick runs)")
    p.add_argument("--augment", default="full", choices=["full", "geometric", "none"],
                   help="training augmentation: full = rotation/shift/zoom + stroke thickness "
                   "and blur (camera-like); geometric = rotation/shift/zoom only")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    _add_data(p)


def _add_qat(p, out_default: str):
    p.add_argument("--qat-epochs", type=int, default=1, help="QAT fine-tuning epochs")
    p.add_argument("--qat-lr", type=float, default=1e-4, help="QAT learning rate")
    p.add_argument("--io", default="int8", choices=["int8", "uint8", "float32"],
                   help="input/output tensor type of the INT8 model")
    p.add_argument("--out", default=out_default, help="output folder")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="host", description=__doc__, formatter_class=FMT)
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("train", help="float training", formatter_class=FMT,
                       description="Float training: Adam, LR decay, early stopping.")
    _add_training(p)
    p.add_argument("--out", default="runs/float", help="output folder")

    p = sub.add_parser("train-qat", help="the main job: train + QAT (+ pruning) -> INT8 .tflite",
                       formatter_class=FMT, description="Float pre-training (or --from), optional "
                       "magnitude pruning, quantization-aware training, full-INT8 conversion and "
                       "evaluation of the .tflite on all 10,000 test images with the device runtime.")
    _add_training(p, epochs_default=9)
    p.add_argument("--from", dest="from_model", metavar="MODEL",
                   help="start from this float Keras model (.h5) instead of training one")
    p.add_argument("--sparsity", type=float, default=0.0,
                   help="magnitude-prune to this sparsity, then prune-preserving QAT")
    p.add_argument("--prune-epochs", type=int, default=2, help="pruning fine-tune epochs")
    _add_qat(p, "runs/qat")

    p = sub.add_parser("distill", help="knowledge distillation from a larger teacher -> INT8",
                       formatter_class=FMT, description="Train the student twice from the same "
                       "initial weights on the same batches - on labels alone and distilled from a "
                       "teacher (softened probabilities at --temperature, weighted 1-alpha) - then "
                       "QAT + full INT8 + evaluation of both; writes distill.json with both accuracies.")
    _add_training(p, epochs_default=9)
    p.add_argument("--teacher", metavar="MODEL", help="teacher: a float Keras model (.h5); default: "
                   "train one of --teacher-arch first")
    p.add_argument("--teacher-arch", default="seed", help="teacher to train when no --teacher: seed | wide")
    p.add_argument("--teacher-epochs", type=int, default=3, help="epochs for that teacher")
    p.add_argument("--temperature", type=float, default=4.0, help="softmax temperature T of the soft targets")
    p.add_argument("--alpha", type=float, default=0.3,
                   help="weight of the hard-label loss (1-alpha: the teacher's soft targets)")
    _add_qat(p, "runs/distill")

    p = sub.add_parser("prune-channels", help="structured pruning: remove conv channels -> smaller INT8",
                       formatter_class=FMT, description="Rank each conv block's channels by their "
                       "BatchNorm scale |gamma|, keep the top --keep fraction, rebuild a smaller dense "
                       "model with the kept weights, fine-tune, QAT + INT8; the unpruned model gets the "
                       "same QAT + INT8. Reports MACs, bytes, latency and accuracy before and after.")
    p.add_argument("model", help="float Keras model of the edge family (.h5 from train / train-qat)")
    p.add_argument("--keep", type=float, default=0.5, help="fraction of channels kept in every block")
    p.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs after the cut")
    p.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate")
    p.add_argument("--qat-epochs", type=int, default=1, help="QAT fine-tuning epochs")
    p.add_argument("--limit", type=int, metavar="N", help="use only N training images")
    p.add_argument("--repeats", type=int, default=9, help="interleaved latency repeats")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default="runs/channels", help="output folder")
    _add_data(p)

    p = sub.add_parser("export-onnx", help="ONNX export, checked with onnxruntime", formatter_class=FMT,
                       description="Export a float Keras model to ONNX (tf2onnx) and run it with "
                       "onnxruntime on the 10,000 test images next to the TFLite float32 conversion "
                       "of the same model: same predictions on >= 99.9%% of images, or exit 1.")
    p.add_argument("model", help="float Keras model (.h5)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--threads", type=int, default=1, help="threads for both runtimes")
    p.add_argument("--out", default="runs/onnx", help="output folder")
    _add_data(p)

    p = sub.add_parser("explain", help="Grad-CAM heatmaps as a PNG grid", formatter_class=FMT,
                       description="Grad-CAM for image files (preprocessed as on the device) and/or "
                       "MNIST test images: where the evidence for the predicted class lies.")
    p.add_argument("model", help="float Keras model (.h5)")
    p.add_argument("images", nargs="*", help="image files, folders or globs (e.g. digit photos)")
    p.add_argument("--labels", metavar="CSV", help="labels.csv (file,label): misreads are marked")
    p.add_argument("--mnist-index", default="", metavar="I,J,...", help="MNIST test images by index")
    p.add_argument("--mnist-errors", type=int, default=0, metavar="N",
                   help="also the first N test images the model gets wrong")
    p.add_argument("--wrong-only", action="store_true", help="draw only the misread (labelled) images")
    p.add_argument("--layer", help="feature-map layer (default: the last one at least 7x7)")
    p.add_argument("--out", default="explain.png", help="the PNG grid")
    _add_data(p)

    p = sub.add_parser("finetune", help="fine-tune on collected samples mixed with MNIST -> INT8",
                       formatter_class=FMT, description="Fine-tune the shipped model (or --base) on "
                       "collected samples (folders with labels.csv, from `device collect` or the "
                       "preview; the dev photos folder too) mixed with MNIST, then QAT + full INT8 + "
                       "evaluation and manifest, ready for `deploy.sh --model`.  Scores MNIST and the "
                       "held-out samples before and after (finetune.json).")
    p.add_argument("collections", nargs="+", metavar="COLLECTION", help="collection folders")
    ft = FinetuneOptions()
    p.add_argument("--base", metavar="MODEL", help="start from this model: an INT8 edge .tflite, or "
                   "float.h5 / qat.h5 from host train-qat (default: the shipped device/models/model.tflite)")
    p.add_argument("--test", action="append", default=[], metavar="COLLECTION", help="score on this "
                   "collection (repeatable) and train on all of COLLECTION...; default: hold out --holdout")
    p.add_argument("--holdout", type=float, default=ft.holdout, help="share of each digit's samples held out")
    p.add_argument("--ratio", type=float, default=ft.ratio, help="collected share of each batch (the rest: MNIST)")
    p.add_argument("--mnist-images", type=int, default=ft.mnist_images, help="MNIST training images in the mix")
    p.add_argument("--epochs", type=int, default=ft.epochs, help="float fine-tuning epochs over the mix")
    p.add_argument("--lr", type=float, default=ft.lr, help="fine-tuning learning rate (cosine decay)")
    p.add_argument("--batch", type=int, default=ft.batch, help="batch size")
    p.add_argument("--seed", type=int, default=ft.seed, help="random seed")
    _add_qat(p, "runs/finetune")
    _add_data(p)

    p = sub.add_parser("prune", help="magnitude pruning of a float model", formatter_class=FMT,
                       description="Polynomial-decay magnitude pruning to a target sparsity, "
                       "strip_pruning, per-layer sparsity and gzip size.")
    p.add_argument("model", help="float Keras model (.h5)")
    p.add_argument("--sparsity", type=float, default=0.5, help="target sparsity")
    p.add_argument("--epochs", type=int, default=2, help="pruning fine-tune epochs")
    p.add_argument("--limit", type=int, metavar="N", help="use only N training images")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default="runs/pruned", help="output folder")
    _add_data(p)

    p = sub.add_parser("convert", help="Keras model -> TFLite, verified", formatter_class=FMT,
                       description="Convert and evaluate on the test set.")
    p.add_argument("model", help="Keras model (.h5) from train / train-qat")
    p.add_argument("--mode", default="int8", choices=["int8", "dynamic", "float16", "float32"],
                   help="int8 = full integer; dynamic = dynamic-range weights")
    p.add_argument("--io", default="int8", choices=["int8", "uint8", "float32"],
                   help="input/output type for --mode int8")
    p.add_argument("--out", default="runs/converted", help="output folder")
    _add_data(p)

    p = sub.add_parser("evaluate", help="accuracy, confusion matrix, latency of a .tflite",
                       formatter_class=FMT, description="Evaluate a .tflite on the 10,000 MNIST "
                       "test images with the device runtime.")
    p.add_argument("model", help=".tflite model")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_data(p)
    p = sub.add_parser("report", help="HTML / Markdown report from device result files",
                       formatter_class=FMT, description="Render `device run` / `device bench` "
                       "results (this machine's, or a Pi's from deploy.sh --bench) side by side.")
    p.add_argument("results", nargs="+", metavar="RESULT.json")
    p.add_argument("--out", default="report.html", help="self-contained HTML file")
    p.add_argument("--markdown", metavar="REPORT.md", help="also write a Markdown summary")
    p.add_argument("--baseline", metavar="OLD.json", help="mark stages slower than this result")
    p.add_argument("--tolerance", type=float, default=0.10, help="regression tolerance (fraction)")
    return ap


def run(args: argparse.Namespace) -> int:
    if args.verb == "finetune":
        from dataclasses import fields

        from host.finetune import run_finetune  # TensorFlow loads after the inputs are checked

        opts = FinetuneOptions(**{f.name: getattr(args, f.name) for f in fields(FinetuneOptions)
                                  if f.name != "test"}, test=tuple(args.test))
        run_finetune(args.collections, opts, args.data, args.out)
        return 0
    # Imported here so `host --help` and argument errors answer without loading TensorFlow.
    from host import pipeline
    from host.train import TrainConfig

    if args.verb == "report":
        from host.report import build_report

        rep = build_report(args.results, args.out, args.markdown, args.baseline, args.tolerance)
        for note in rep["notes"]:
            print(note)
        print(f"report: {args.out}" + (f", {args.markdown}" if args.markdown else ""))
        return 0
    if args.verb == "evaluate":
        pipeline.run_evaluate(args.model, args.data, args.threads, args.json)
        return 0
    if args.verb == "convert":
        pipeline.run_convert(args.model, args.mode, args.io, args.data, args.out)
        return 0
    if args.verb in ("prune-channels", "export-onnx", "explain", "distill"):
        return run_technique(args)
    if args.verb == "prune":
        cfg = TrainConfig(limit=args.limit, seed=args.seed, prune_epochs=args.epochs)
        pipeline.run_prune(args.model, args.sparsity, cfg, args.data, args.out)
        return 0
    cfg = TrainConfig(arch=args.arch, epochs=args.epochs, batch=args.batch, lr=args.lr,
                      lr_schedule=args.lr_schedule, lr_decay=args.lr_decay, l2=args.l2,
                      limit=args.limit, augment=args.augment, seed=args.seed)
    if args.verb == "train":
        pipeline.run_train(cfg, args.data, args.out)
        return 0
    cfg.qat_epochs, cfg.qat_lr, cfg.sparsity = args.qat_epochs, args.qat_lr, args.sparsity
    cfg.prune_epochs, cfg.io = args.prune_epochs, args.io
    pipeline.run_train_qat(cfg, args.data, args.out, args.from_model)
    return 0


def run_technique(args: argparse.Namespace) -> int:
    from host import techniques
    from host.train import TrainConfig

    if args.verb == "prune-channels":
        if args.epochs < 0 or args.qat_epochs < 0 or args.repeats < 1:
            raise UsageError("--epochs and --qat-epochs must be >= 0 and --repeats >= 1")
        cfg = TrainConfig(epochs=args.epochs, lr=args.lr, qat_epochs=args.qat_epochs, limit=args.limit,
                          seed=args.seed)
        techniques.run_prune_channels(args.model, args.keep, cfg, args.data, args.out, args.repeats)
        return 0
    if args.verb == "export-onnx":
        doc = techniques.run_export_onnx(args.model, args.data, args.out, args.opset, args.threads)
        if not doc["pass"]:
            print(f"host: ONNX and TFLite float32 agree on only {doc['agreement']:.2%} of images "
                  f"(< {doc['min_agreement']:.1%})", file=sys.stderr)
            return 1
        return 0
    if args.verb == "explain":
        try:
            index = [int(v) for v in args.mnist_index.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"--mnist-index takes comma-separated integers (got {args.mnist_index!r})") from None
        techniques.run_explain(args.model, args.images, args.labels, index, args.mnist_errors, args.layer,
                               args.data, args.out, args.wrong_only)
        return 0
    cfg = TrainConfig(arch=args.arch, epochs=args.epochs, batch=args.batch, lr=args.lr,
                      lr_schedule=args.lr_schedule, lr_decay=args.lr_decay, l2=args.l2,
                      limit=args.limit, augment=args.augment, seed=args.seed,
                      qat_epochs=args.qat_epochs, qat_lr=args.qat_lr, io=args.io)
    techniques.run_distill(cfg, args.data, args.out, teacher=args.teacher, teacher_arch=args.teacher_arch,
                           teacher_epochs=args.teacher_epochs, temperature=args.temperature, alpha=args.alpha)
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "limit", None) is not None and args.limit < 100:
        print("host: --limit must be at least 100 images", file=sys.stderr)
        return 2
    try:
        return run(args)
    except UsageError as exc:
        print(f"host: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("host: interrupted; nothing was written to --out", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
