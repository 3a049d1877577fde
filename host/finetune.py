"""``host finetune``: teach the model a user's own handwriting from samples collected on the
device, without forgetting MNIST.

1. The collections are read (:mod:`host.collection`) and part of them is held out (a fraction
   of each digit, or whole ``--test`` collections, e.g. another writer).
2. The base model becomes a float Keras model: the shipped ``.tflite`` (default) or any edge
   ``.tflite`` is rebuilt from its INT8 weights (:mod:`host.rebuild`); a QAT ``.h5`` is converted
   to INT8 and rebuilt the same way; a float ``.h5`` is used as it is.  "Before" is always an
   INT8 model through the device runtime: the base ``.tflite``, the QAT model's conversion, or
   the float model's post-training INT8 conversion.
3. Fine-tuning on a pool of MNIST training images plus the collected samples repeated so that
   they make ``ratio`` of it: every shuffled batch holds that share in expectation, and every
   image of both kinds is re-augmented each time it is drawn (rotation, shift, zoom, stroke
   thickness, blur: the training augmentation).  A few epochs at a low rate; then QAT on the
   same pool, INT8 conversion, evaluation on all 10,000 MNIST test images and the manifest
   (:func:`host.pipeline.qat_int8_artifacts`), so ``--out`` is ready for ``deploy.sh --model``.
4. Held-out samples and MNIST are scored with the INT8 models before and after
   (``finetune.json``).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from device.errors import UsageError

if TYPE_CHECKING:
    from host.collection import Samples

CALIBRATION_IMAGES = 2000


def _base_kind(base: str | None) -> tuple[Path, str]:
    """(path, "tflite" | "keras") of ``--base``, checked before TensorFlow loads."""
    from device.runtime import DEFAULT_MODEL, is_tflite

    path = Path(base) if base else DEFAULT_MODEL
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise UsageError(f"cannot read --base {path}: {exc.strerror}; pass an INT8 edge .tflite or a "
                         ".h5 from host train / train-qat (float.h5 or qat.h5)") from None
    if is_tflite(head):
        return path, "tflite"
    if head[:8] == b"\x89HDF\r\n\x1a\n" or path.suffix == ".keras":
        return path, "keras"
    raise UsageError(f"--base {path} is neither a .tflite nor a Keras .h5 model; pass an INT8 edge "
                     ".tflite or the float.h5 / qat.h5 that host train-qat writes")


def mix_pool(data, train: Samples, ratio: float, mnist_images: int, seed: int):
    """(an Mnist whose training set is the fine-tuning pool and whose test set is MNIST's,
    a description of the pool).  The collected samples are repeated so that they make
    ``ratio`` of the pool; ``host.train.fit`` shuffles and augments the pool each epoch."""
    from host.data import Mnist

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(data.x_train), size=min(mnist_images, len(data.x_train)), replace=False))
    copies = max(1, round(ratio * len(idx) / ((1.0 - ratio) * len(train))))
    x = np.concatenate([data.x_train[idx], np.tile(train.x, (copies, 1, 1))])
    y = np.concatenate([data.y_train[idx], np.tile(train.y.astype(np.uint8), copies)])
    pool = Mnist(x, y, data.x_test, data.y_test, source=f"{data.source} + {len(train)} collected samples")
    desc = {"mnist_images": int(len(idx)), "collected_samples": len(train), "copies": int(copies),
            "collected_share": round(copies * len(train) / len(x), 4), "pool": int(len(x))}
    return pool, desc


def score(tflite_path, samples: Samples) -> dict | None:
    """Accuracy, mean negative log-likelihood of the true digit (a finer signal than accuracy
    on a few samples) and per-sample predictions of an INT8 model on ``samples``."""
    from device.preprocess import to_unit
    from device.runtime import Model

    if not len(samples):
        return None
    probs = Model(tflite_path, verify=False).predict_many(to_unit(samples.x))
    pred = probs.argmax(axis=1)
    p_true = probs[np.arange(len(samples)), samples.y]
    return {"samples": len(samples), "correct": int(np.sum(pred == samples.y)),
            "accuracy": float(np.mean(pred == samples.y)),
            "nll": float(np.mean(-np.log(np.maximum(p_true, 1e-4)))),
            "predictions": [{"file": n, "label": int(lab), "prediction": int(p), "confidence": round(float(c), 4)}
                            for n, lab, p, c in zip(samples.names, samples.y, pred, probs.max(axis=1))]}


def _base_model(path: Path, kind: str, data, cfg, work: Path):
    """(float Keras model, the "before" INT8 .tflite path, arch, description of the base)."""
    from host import models as archs
    from host.convert import convert, representative_images
    from host.rebuild import MIN_AGREEMENT, agreement, edge_from_tflite
    from host.train import load_keras

    t0 = time.monotonic()
    desc = {"path": str(path)}
    rep = representative_images(data.x_train, seed=cfg.seed)
    before = path
    if kind == "keras":
        model = load_keras(str(path))
        quantized = any(type(layer).__name__.startswith("Quantize") for layer in model.layers)
        before = work / "base.tflite"
        before.write_bytes(convert(model, "int8", cfg.io, rep))
        if not quantized:
            desc |= {"kind": "float Keras", "before": "post-training INT8 conversion of the base"}
            return model, before, model.name if model.name in archs.ARCHS else "custom", desc
        desc |= {"kind": "QAT Keras", "before": "INT8 conversion of the base"}
    else:
        desc |= {"kind": "INT8 tflite", "before": "the base itself"}
    calib = data.x_train[np.random.default_rng(cfg.seed).choice(len(data.x_train), CALIBRATION_IMAGES, replace=False)]
    model = edge_from_tflite(before, calib)
    agree = agreement(model, before, data.x_test[:1000])
    if agree < MIN_AGREEMENT:
        raise UsageError(f"--base {path}: the float model rebuilt from its INT8 weights agrees with it on only "
                         f"{agree:.1%} of 1,000 test images; pass the float .h5 it was trained as")
    desc |= {"rebuilt_from_int8": True, "rebuild_agreement": agree,
             "rebuild_seconds": round(time.monotonic() - t0, 1)}
    return model, before, "edge", desc


def run_finetune(collections: list[str], cfg, mix, data_dir: str | None, out: str, *,
                 base: str | None = None, test: list[str] | tuple = ()) -> dict:
    """Fine-tune ``base`` (default: the shipped model) on ``collections`` mixed with MNIST, then
    QAT + INT8 + evaluation; ``out`` gets the usual artifacts (model.tflite, model.json,
    float.h5, qat.h5, history.json) plus ``finetune.json``, whose content is returned.
    ``cfg``: a :class:`host.config.TrainConfig` (epochs, lr, batch, qat_epochs, qat_lr, io, seed,
    augment); ``mix``: a :class:`host.config.MixConfig`; ``test``: collections scored instead of
    a held-out share.  UsageError for bad collections or base models; all but an unusable
    base model are caught before TensorFlow loads."""
    t_start = time.monotonic()
    from host.artifacts import check_out_dir
    from host.collection import read_collections, split_holdout

    check_out_dir(out)
    base_path, kind = _base_kind(base)
    samples, counts = read_collections(collections)
    if test:
        train, held = samples, read_collections(test)[0]
    else:
        train, held = split_holdout(samples, mix.holdout, cfg.seed)
    for line in counts["unreadable"]:
        print(f"host: skipped {line}")
    tally = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts["total"].items() if v)
    print(f"== {len(train)} collected samples to train on, {len(held)} held out ({tally})")

    from host.artifacts import Staging
    from host.data import load_mnist
    from host.evaluate import evaluate_tflite
    from host.pipeline import print_summary, qat_int8_artifacts
    from host.techniques import _doc, _write
    from host.train import fit, keras_accuracy, set_seed

    data = load_mnist(data_dir)
    set_seed(cfg.seed)
    with Staging(out, "finetune") as st:
        model, before_path, arch, base_desc = _base_model(base_path, kind, data, cfg, st.dir)
        before = {"mnist_int8": evaluate_tflite(before_path, data)["accuracy"],
                  "keras_float": keras_accuracy(model, data), "heldout": score(before_path, held)}
        pool, pool_desc = mix_pool(data, train, mix.ratio, mix.mnist_images, cfg.seed)
        print(f"== fine-tuning: {pool_desc['collected_samples']} collected samples x {pool_desc['copies']} + "
              f"{pool_desc['mnist_images']:,} MNIST images ({pool_desc['collected_share']:.0%} collected), "
              f"{cfg.epochs} epochs from lr {cfg.lr:g}")
        set_seed(cfg.seed)
        hist = fit(model, pool, cfg, cfg.epochs, cfg.lr, early_stop=False) if cfg.epochs else {}
        acc_float = keras_accuracy(model, data)
        settings = {"base": base_desc, "collections": [str(c) for c in collections],
                    "test": [str(c) for c in test], **asdict(mix), "pool": pool_desc,
                    **{k: getattr(cfg, k) for k in ("epochs", "lr", "batch", "qat_epochs", "qat_lr", "io", "seed")}}
        set_seed(cfg.seed)
        manifest = qat_int8_artifacts(
            st, "", model, model, pool, cfg, {"finetune": hist}, arch=arch, acc_float=acc_float,
            config={**cfg.to_dict(), "data": data.source, "finetune": settings}, t_start=t_start)
        after = {"mnist_int8": manifest["accuracy"]["tflite"], "keras_float": acc_float,
                 "heldout": score(st.path("model.tflite"), held)}
        doc = _doc("finetune", **settings, samples=counts, before=before, after=after,
                   sha256=manifest["sha256"], wall_seconds=round(time.monotonic() - t_start, 1))
        _write(st.path("finetune.json"), doc)
    print_summary(manifest, Path(out))
    _print_comparison(before, after, Path(out) / "finetune.json")
    return doc


def _print_comparison(before: dict, after: dict, where: Path) -> None:
    def held(r):
        return "n/a" if r is None else f"{r['accuracy']:.2%} ({r['correct']}/{r['samples']})"

    print(f"\n  {'':<26}{'before':>16}{'after':>16}")
    print(f"  {'MNIST test, INT8':<26}{before['mnist_int8']:>16.4f}{after['mnist_int8']:>16.4f}")
    print(f"  {'MNIST test, Keras float':<26}{before['keras_float']:>16.4f}{after['keras_float']:>16.4f}")
    print(f"  {'held-out samples, INT8':<26}{held(before['heldout']):>16}{held(after['heldout']):>16}")
    if before["heldout"] is not None:
        print(f"  {'held-out NLL of the label':<26}{before['heldout']['nll']:>16.4f}{after['heldout']['nll']:>16.4f}")
    print(f"  {where}")

