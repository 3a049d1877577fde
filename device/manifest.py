"""The model manifest (``model.json`` beside ``model.tflite``): read and verify.

The host writes it after converting and evaluating a model; the device reads it to check that
the file it loads is the file that was measured.

Format history (``MANIFEST_VERSION``):
  1 - first version: sha256, bytes, arch, params, macs, sparsity, input/output tensors,
      input_contract, accuracy (tflite + keras), per-class accuracy, confusion matrix,
      training config, library versions, created.
      Later, still version 1 (optional fields, absent in older manifests): ``golden``, the
      model's expected predictions on ``device/data/golden.npz`` (see ``device/golden.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from device.errors import UsageError

MANIFEST_VERSION = 1

# What every model in this project expects; the device's preprocessing produces exactly this.
INPUT_CONTRACT = {
    "shape": [1, 28, 28, 1],
    "layout": "NHWC",
    "color": "grayscale",
    "polarity": "white digit on black background (as MNIST)",
    "range": [0.0, 1.0],
    "normalisation": "pixel / 255; digit scaled into a 20x20 box, centred by centre of mass in 28x28",
    "quantization": "int8/uint8 inputs: q = round(x / scale) + zero_point, from the input tensor's own parameters",
}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path_for(model_path: str | os.PathLike) -> Path:
    """``dir/model.tflite`` -> ``dir/model.json``."""
    return Path(model_path).with_suffix(".json")


def load_manifest(path: str | os.PathLike) -> dict:
    """Read a manifest; raises UsageError if it is not valid JSON of a known version."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read manifest {path}: {exc}; regenerate it with `host train-qat` "
                         "or `host convert`") from None
    if not isinstance(data, dict) or data.get("manifest_version") not in (MANIFEST_VERSION,):
        raise UsageError(f"{path} is not an mnist-edge model manifest (manifest_version "
                         f"{MANIFEST_VERSION} expected)")
    return data
