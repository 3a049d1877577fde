"""Keras -> TFLite conversion: full INT8, dynamic-range, float16, float32."""

from __future__ import annotations

import numpy as np

from host import tfenv  # noqa: F401
import tensorflow as tf

from device.errors import UsageError
from host.augment import to_float

MODES = ("int8", "dynamic", "float16", "float32")
IO_TYPES = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}


def representative_images(x_train: np.ndarray, n: int = 500, seed: int = 0) -> np.ndarray:
    """A fixed random sample of training images (uint8) for calibration."""
    rng = np.random.default_rng(seed)
    return x_train[rng.choice(len(x_train), size=min(n, len(x_train)), replace=False)]


def convert(model, mode: str = "int8", io: str = "int8", rep_images: np.ndarray | None = None) -> bytes:
    """Convert a (float or QAT) Keras model; returns the ``.tflite`` bytes.

    ``int8``: full-integer (TFLITE_BUILTINS_INT8 only), activations calibrated on
    ``rep_images``, input/output of type ``io``.  Raises UsageError on a bad mode/io.
    """
    if mode not in MODES:
        raise UsageError(f"unknown conversion {mode!r}; choose one of: {', '.join(MODES)}")
    if io not in IO_TYPES:
        raise UsageError(f"unknown --io {io!r}; choose one of: {', '.join(IO_TYPES)}")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if rep_images is None:
            raise ValueError("int8 conversion needs representative images")
        floats = to_float(rep_images)

        def rep():
            for img in floats:
                yield [img[None]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = IO_TYPES[io]
        conv.inference_output_type = IO_TYPES[io]
    with tfenv.quiet_stderr():
        return conv.convert()
