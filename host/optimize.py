"""Model optimisation with tensorflow-model-optimization: magnitude pruning and QAT.

``prune``: ``prune_low_magnitude`` with a polynomial-decay schedule to the target sparsity,
then ``strip_pruning``.  ``quantize``: ``quantize_model`` (default 8-bit scheme), or for a
pruned model ``quantize_apply`` with ``Default8BitPrunePreserveQuantizeScheme`` so fine-tuning
keeps the zeros.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np

from host import tfenv  # noqa: F401
import tensorflow_model_optimization as tfmot

from host.data import Mnist
from host.train import TrainConfig, fit, steps_per_epoch


def prune(model, data: Mnist, cfg: TrainConfig, sparsity: float, epochs: int):
    """Prune ``model`` to ``sparsity`` over ``epochs`` of fine-tuning; returns (stripped model,
    history).  The schedule ramps from 0 to the target over the first ~2/3 of the steps and
    holds it for the rest, so the last steps recover accuracy at the final sparsity."""
    steps = steps_per_epoch(data, cfg) * epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
        end_step=max(1, int(steps * 2 / 3)), frequency=max(1, steps // 50))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    hist = fit(pruned, data, cfg, epochs, cfg.qat_lr * 5,
               extra_callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], early_stop=False,
               ema=0.0)  # an average of weights being masked would not stay sparse
    return tfmot.sparsity.keras.strip_pruning(pruned), hist


def quantize(model, data: Mnist, cfg: TrainConfig, epochs: int, pruned: bool):
    """Quantization-aware fine-tuning; returns (QAT model, history)."""
    q = tfmot.quantization.keras
    if pruned:
        annotated = q.quantize_annotate_model(model)
        qat = q.quantize_apply(annotated,
                               tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    else:
        qat = q.quantize_model(model)
    hist = fit(qat, data, cfg, epochs, cfg.qat_lr, early_stop=False, ema=0.0) if epochs > 0 else {}
    return qat, hist


def weight_sparsity(model) -> dict:
    """Per-layer fraction of exactly-zero kernel weights (conv and dense layers)."""
    out = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        kernel = getattr(inner, "kernel", None)
        if kernel is None:
            continue
        k = np.asarray(kernel.numpy() if hasattr(kernel, "numpy") else kernel)
        out[inner.name] = {"weights": int(k.size), "sparsity": float(np.mean(k == 0))}
    return out


def overall_sparsity(per_layer: dict) -> float:
    total = sum(v["weights"] for v in per_layer.values())
    zeros = sum(v["weights"] * v["sparsity"] for v in per_layer.values())
    return float(zeros / total) if total else 0.0


def gzip_size(data: bytes) -> int:
    """Bytes after gzip -9: how much pruning's zeros save on the wire."""
    return len(gzip.compress(data, compresslevel=9))


def keras_gzip_size(model) -> int:
    with tempfile.NamedTemporaryFile(suffix=".h5") as f:
        model.save(f.name, include_optimizer=False)
        return gzip_size(Path(f.name).read_bytes())
