"""Evaluate a ``.tflite`` on the MNIST test set through the device's own interpreter code."""

from __future__ import annotations

import time

import numpy as np

from device.runtime import Model
from host.data import Mnist


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = 10) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true.astype(int), y_pred.astype(int)), 1)
    return cm


def evaluate_tflite(path, data: Mnist, threads: int = 1, limit: int | None = None) -> dict:
    """Accuracy, per-class accuracy, confusion matrix (rows: true, columns: predicted) and
    host per-invoke latency of the model at ``path`` on the test images (all 10,000 unless
    ``limit``).  Images go in exactly as the Pi feeds them: float [0, 1] quantized with the
    input tensor's own parameters, one at a time."""
    model = Model(path, threads=threads, verify=False)
    x = data.x_test[:limit] if limit else data.x_test
    y = data.y_test[:limit] if limit else data.y_test
    floats = x.astype(np.float32) / 255.0
    preds = np.empty(len(x), dtype=np.int64)
    times = np.empty(len(x), dtype=np.int64)
    for i, img in enumerate(floats):
        model.set_input(img)
        t0 = time.perf_counter_ns()
        model.invoke()
        times[i] = time.perf_counter_ns() - t0
        preds[i] = int(np.argmax(model.scores()))
    cm = confusion_matrix(y, preds)
    per_class = (np.diag(cm) / np.maximum(cm.sum(axis=1), 1)).tolist()
    ms = times / 1e6
    return {
        "images": int(len(x)),
        "accuracy": float(np.mean(preds == y)),
        "correct": int(np.sum(preds == y)),
        "per_class_accuracy": [round(float(v), 6) for v in per_class],
        "confusion_matrix": cm.tolist(),
        "host_latency_ms": {"threads": threads, "p50": float(np.percentile(ms, 50)),
                            "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean())},
        "model": model.describe(),
    }
