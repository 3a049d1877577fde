"""The host jobs, as typed functions the CLI calls: train, train-qat, prune, convert, evaluate."""

from __future__ import annotations

import json
import time
from pathlib import Path

from host import tfenv  # noqa: F401
from device.errors import UsageError
from device.fsio import atomic_write_json
from host import models as archs
from host.artifacts import Staging, build_manifest, check_out_dir, target_lines
from host.convert import convert, representative_images
from host.data import Mnist, load_mnist
from host.evaluate import evaluate_tflite
from host.golden import expectations as golden_expectations
from host.optimize import (gzip_size, keras_gzip_size, overall_sparsity, prune, quantize,
                           weight_sparsity)
from host.train import TrainConfig, fit, keras_accuracy, load_keras, set_seed


def _pretrained(cfg: TrainConfig, data: Mnist, from_model: str | None):
    if from_model:
        model = load_keras(from_model)
        return model, {}, model.name if model.name in archs.ARCHS else cfg.arch
    model = archs.build(cfg.arch, cfg.l2)
    print(f"== float training: {cfg.arch}, {archs.count_params(model):,} params, "
          f"{archs.count_macs(model):,} MACs, up to {cfg.epochs} epochs")
    return model, fit(model, data, cfg, cfg.epochs, cfg.lr), cfg.arch


def run_train(cfg: TrainConfig, data_dir: str | None, out: str) -> dict:
    """Float training; writes ``float.h5`` and ``history.json`` into ``out``."""
    check_out_dir(out)
    archs.build(cfg.arch)  # unknown --arch fails before the data loads
    data = load_mnist(data_dir)
    set_seed(cfg.seed)
    model, hist, _ = _pretrained(cfg, data, None)
    acc = keras_accuracy(model, data)
    with Staging(out, "train") as st:
        model.save(st.path("float.h5"), include_optimizer=False)
        atomic_write_json(st.path("history.json"), {"float": hist, "config": cfg.to_dict()})
    print(f"float test accuracy {acc:.4f}; saved {Path(out) / 'float.h5'}")
    return {"accuracy": acc, "history": hist}


def run_train_qat(cfg: TrainConfig, data_dir: str | None, out: str,
                  from_model: str | None = None) -> dict:
    """The main job: float pre-training (or ``from_model``), optional pruning, QAT, full-INT8
    conversion, and evaluation of the ``.tflite`` on all test images with the device runtime.
    Returns the manifest."""
    t_start = time.monotonic()
    check_out_dir(out)
    if not from_model:
        archs.build(cfg.arch)
    if not 0.0 <= cfg.sparsity < 1.0:
        raise UsageError(f"--sparsity must be in [0, 1) (got {cfg.sparsity})")
    data = load_mnist(data_dir)
    set_seed(cfg.seed)
    float_model, hist_float, arch = _pretrained(cfg, data, from_model)
    acc_float = keras_accuracy(float_model, data)
    histories = {"float": hist_float}
    base = float_model
    if cfg.sparsity > 0:
        print(f"== magnitude pruning to {cfg.sparsity:.0%} over {cfg.prune_epochs} epochs")
        base, histories["prune"] = prune(float_model, data, cfg, cfg.sparsity, cfg.prune_epochs)
    with Staging(out, "train-qat") as st:
        manifest = qat_int8_artifacts(
            st, "", float_model, base, data, cfg, histories, arch=arch, acc_float=acc_float,
            config={**cfg.to_dict(), "from": from_model, "data": data.source}, t_start=t_start)
    print_summary(manifest, Path(out))
    print()
    for line in target_lines(manifest):
        print(line)
    return manifest


def qat_int8_artifacts(st: Staging, folder: str, float_model, base, data: Mnist, cfg: TrainConfig,
                       histories: dict, *, arch: str, acc_float: float, config: dict,
                       t_start: float, extra: dict | None = None) -> dict:
    """The shared tail of every INT8 job: QAT of ``base`` (prune-preserving when
    ``cfg.sparsity``), full-INT8 conversion, evaluation of the ``.tflite`` on all test images
    with the device runtime, and the artifacts (model.tflite, float.h5, qat.h5, history.json,
    model.json last) staged in ``st`` under ``folder`` ("" = the top).  Returns the manifest."""
    print(f"== quantization-aware training: {cfg.qat_epochs} epochs"
          + (" (prune-preserving)" if cfg.sparsity > 0 else ""))
    qat_model, histories["qat"] = quantize(base, data, cfg, cfg.qat_epochs, cfg.sparsity > 0)
    acc_qat = keras_accuracy(qat_model, data)
    print(f"== converting to full-INT8 TFLite (io {cfg.io})")
    tflite = convert(qat_model, "int8", cfg.io, representative_images(data.x_train, seed=cfg.seed))
    per_layer = weight_sparsity(base)
    if folder:
        st.path(folder).mkdir()

    def path(name: str) -> Path:
        return st.dir / folder / name if folder else st.path(name)

    path("model.tflite").write_bytes(tflite)
    print("== evaluating model.tflite on the 10,000 test images (device runtime)")
    ev = evaluate_tflite(path("model.tflite"), data)
    float_model.save(path("float.h5"), include_optimizer=False)
    qat_model.save(path("qat.h5"), include_optimizer=False)
    atomic_write_json(path("history.json"), histories)
    manifest = build_manifest(
        tflite, ev, arch=arch, params=archs.count_params(float_model),
        macs=archs.count_macs(float_model), sparsity=overall_sparsity(per_layer),
        conversion=f"int8 (QAT{', prune-preserving' if cfg.sparsity else ''})",
        keras_accuracy={"keras_float": acc_float, "keras_qat": acc_qat}, config=config,
        extra={"gzip_bytes": gzip_size(tflite), "wall_seconds": round(time.monotonic() - t_start, 1),
               "layer_sparsity": per_layer, "golden": golden_expectations(path("model.tflite")),
               **(extra or {})})
    atomic_write_json(path("model.json"), manifest)
    return manifest


def run_prune(model_path: str, sparsity: float, cfg: TrainConfig, data_dir: str | None,
              out: str) -> dict:
    """Magnitude-prune a float Keras model; writes ``pruned.h5`` and ``prune.json``."""
    if not 0.0 < sparsity < 1.0:
        raise UsageError(f"--sparsity must be in (0, 1) (got {sparsity})")
    check_out_dir(out)
    model = load_keras(model_path)
    data = load_mnist(data_dir)
    set_seed(cfg.seed)
    before = keras_gzip_size(model)
    stripped, hist = prune(model, data, cfg, sparsity, cfg.prune_epochs)
    per_layer = weight_sparsity(stripped)
    report = {"target_sparsity": sparsity, "sparsity": overall_sparsity(per_layer),
              "layers": per_layer, "gzip_bytes_before": before,
              "gzip_bytes_after": keras_gzip_size(stripped),
              "accuracy": keras_accuracy(stripped, data), "history": hist}
    with Staging(out, "prune") as st:
        stripped.save(st.path("pruned.h5"), include_optimizer=False)
        atomic_write_json(st.path("prune.json"), report)
    print(f"{'layer':<16}{'weights':>10}{'sparsity':>10}")
    for name, v in per_layer.items():
        print(f"{name:<16}{v['weights']:>10,}{v['sparsity']:>10.1%}")
    print(f"overall sparsity {report['sparsity']:.1%}; gzip {before:,} -> "
          f"{report['gzip_bytes_after']:,} bytes; test accuracy {report['accuracy']:.4f}")
    return report


def run_convert(model_path: str, mode: str, io: str, data_dir: str | None, out: str) -> dict:
    """Convert a Keras model (.h5) to TFLite and verify it on the test set like train-qat."""
    if Path(model_path).suffix == ".tflite" or _is_tflite(model_path):
        raise UsageError(f"{model_path} is already a TFLite model; `host convert` takes the Keras "
                         "model (.h5) that train / train-qat saved")
    check_out_dir(out)
    model = load_keras(model_path)
    data = load_mnist(data_dir)
    tflite = convert(model, mode, io, representative_images(data.x_train))
    arch = model.name if model.name in archs.ARCHS else "custom"
    with Staging(out, "convert") as st:
        st.path("model.tflite").write_bytes(tflite)
        ev = evaluate_tflite(st.path("model.tflite"), data)
        manifest = build_manifest(
            tflite, ev, arch=arch, params=archs.count_params(model), macs=archs.count_macs(model),
            sparsity=overall_sparsity(weight_sparsity(model)), conversion=mode,
            keras_accuracy={"keras": keras_accuracy(model, data)},
            config={"from": str(model_path), "io": io, "data": data.source},
            extra={"gzip_bytes": gzip_size(tflite),
                   "golden": golden_expectations(st.path("model.tflite"))})
        atomic_write_json(st.path("model.json"), manifest)
    print_summary(manifest, Path(out))
    return manifest


def _is_tflite(path: str) -> bool:
    from device.runtime import is_tflite

    try:
        with open(path, "rb") as f:
            return is_tflite(f.read(8))
    except OSError:
        return False


def run_evaluate(model_path: str, data_dir: str | None, threads: int, as_json: bool) -> dict:
    from device.runtime import Model

    Model(model_path, threads=threads, verify=False)  # a bad model fails before the data loads
    data = load_mnist(data_dir)
    ev = evaluate_tflite(model_path, data, threads=threads)
    if as_json:
        print(json.dumps(ev, indent=2))
        return ev
    print(f"{model_path}: accuracy {ev['accuracy']:.4f} ({ev['correct']}/{ev['images']}), "
          f"host latency p50 {ev['host_latency_ms']['p50']:.3f} ms, "
          f"p99 {ev['host_latency_ms']['p99']:.3f} ms ({threads} thread(s))")
    print("per class: " + "  ".join(f"{d}:{a:.3f}" for d, a in enumerate(ev["per_class_accuracy"])))
    print("confusion matrix (rows true, columns predicted):")
    print("      " + "".join(f"{d:>6}" for d in range(10)))
    for d, row in enumerate(ev["confusion_matrix"]):
        print(f"{d:>6}" + "".join(f"{v:>6}" for v in row))
    return ev


def print_summary(m: dict, out: Path) -> None:
    acc = m["accuracy"]
    rows = [
        ("model", str(out / "model.tflite")),
        ("arch", m["arch"]),
        ("conversion", m["conversion"]),
        ("params / MACs", f"{m['params']:,} / {m['macs']:,}"),
        ("size", f"{m['bytes']:,} bytes ({m.get('gzip_bytes', 0):,} gzipped)"),
        ("sparsity", f"{m['sparsity']:.1%}"),
        ("input", f"{m['input']['dtype']} scale {m['input']['scale']:.6g} zp {m['input']['zero_point']}"),
        ("tflite accuracy", f"{acc['tflite']:.4f} ({acc['tflite_correct']}/{acc['test_images']})"),
    ]
    rows += [(k.replace("_", " ") + " accuracy", f"{v:.4f}") for k, v in acc.items()
             if k.startswith("keras")]
    rows.append(("host latency", f"p50 {m['host_latency_ms']['p50']:.3f} ms, "
                                 f"p99 {m['host_latency_ms']['p99']:.3f} ms"))
    if "wall_seconds" in m:
        rows.append(("wall time", f"{m['wall_seconds']:.0f} s"))
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
