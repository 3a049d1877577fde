"""A float Keras edge model rebuilt from an INT8 ``.tflite``: how ``host finetune`` starts from
the shipped model, whose Keras weights are not in the repository.

The converter folded each BatchNorm into its convolution (kernel and bias) and quantized the
weights per channel.  Dequantized, those weights are the model the device runs, minus the
rounding of activations (measured on the shipped model: 99.51 % on MNIST as float against the
INT8 file's 99.50 %, same prediction on every one of 2,000 test images).

The rebuilt model keeps the edge layout (Conv -> BatchNorm -> ReLU), so it trains, goes
through QAT and converts exactly like a model from ``host train``.  Its BatchNorms are set to
compute "+ bias" and nothing else, and they are calibrated: a BatchNorm in training mode
normalises by the batch's own statistics, so one with mean 0 and variance 1 would rescale every
activation at the first fine-tuning step and wreck the model.  With moving mean/variance set to
the statistics of the convolution's output on MNIST, and gamma/beta chosen to undo that
normalisation, inference mode computes exactly ``conv + bias`` and training mode nearly so.

Retraining the shipped model's float weights instead (``host train-qat`` defaults, seed 0)
costs the full training run (11-15 min here) and does not give the same model on another CPU
(TensorFlow's float kernels differ; see the README's reproducibility note).
"""

from __future__ import annotations

import numpy as np

from host import tfenv  # noqa: F401
import tf_keras as keras

from device.errors import UsageError
from device.preprocess import to_unit
from device.runtime import Model
from host.augment import to_float
from host.models import build_edge

BLOCKS = ("b1", "b2a", "b2b", "b3a", "b3b")
# The edge model's op sequence after conversion (Dropout disappears, ReLU fuses into the conv).
EDGE_OPS = ("CONV_2D", "MAX_POOL_2D", "CONV_2D", "CONV_2D", "MAX_POOL_2D", "CONV_2D", "CONV_2D",
            "MEAN", "FULLY_CONNECTED", "SOFTMAX")
MIN_AGREEMENT = 0.98


def _constant(interp, tensors: dict, produced: set, index: int, what: str) -> np.ndarray:
    """A weight tensor as float32: dequantized with its own (per-channel) scales."""
    t = tensors[index]
    if index in produced:
        raise UsageError(f"{what}: weights computed at run time (a float16 model?); only float32 and "
                         "INT8 .tflite models can be rebuilt")
    q = interp.get_tensor(index)
    if q.dtype == np.float32:
        return q
    qp = t["quantization_parameters"]
    scales, zps = qp["scales"], qp["zero_points"]
    if len(scales) == 0:
        raise UsageError(f"{what}: a {q.dtype} weight tensor without quantization parameters")
    shape = [1] * q.ndim
    if len(scales) > 1:
        shape[qp["quantized_dimension"]] = -1
    return ((q.astype(np.float64) - zps.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def edge_from_tflite(path, calibration: np.ndarray) -> keras.Model:
    """The float edge model (any widths: prune-channels models too) whose weights are those of
    the ``.tflite`` at ``path``.  ``calibration``: uint8 (N, 28, 28) images for the BatchNorm
    statistics (a couple of thousand MNIST training images).  UsageError when the file is not
    an edge-family model."""
    model = Model(path, xnnpack=False, verify=False)   # no delegate: ops and weights stay visible
    interp = model.interpreter
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()   # the op list; public in no runtime, stable across TF 2.x and LiteRT
    names = tuple(op["op_name"] for op in ops)
    what = f"--base {path}"
    if names != EDGE_OPS:
        raise UsageError(f"{what} is not an edge-family model (ops {', '.join(names)}); pass the float "
                         ".h5 it was trained as (host train / train-qat write float.h5)")
    produced = {i for op in ops for i in op["outputs"]}
    weights = [(_constant(interp, tensors, produced, op["inputs"][1], what),
                _constant(interp, tensors, produced, op["inputs"][2], what))
               for op in ops if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]
    convs, (dense_w, dense_b) = weights[:-1], weights[-1]
    keras_model = build_edge(widths=tuple(w.shape[0] for w, _ in convs))
    for block, (w, b) in zip(BLOCKS, convs):
        layer = keras_model.get_layer(f"{block}_conv")
        kernel = w.transpose(1, 2, 3, 0)    # TFLite OHWI -> Keras HWIO
        if kernel.shape != tuple(layer.kernel.shape):
            raise UsageError(f"{what}: layer {block} has kernel {kernel.shape}, the edge layout needs "
                             f"{tuple(layer.kernel.shape)}; pass the float .h5 instead")
        layer.set_weights([kernel])
        bn = keras_model.get_layer(f"{block}_bn")
        n = len(b)
        bn.set_weights([np.ones(n, np.float32), b, np.zeros(n, np.float32), np.full(n, 1 - bn.epsilon, np.float32)])
    keras_model.get_layer("logits").set_weights([dense_w.T, dense_b])
    # The model now computes what the .tflite does (BatchNorm = + bias, in inference mode).
    # Statistics of each convolution's output on real inputs, in one pass.
    probe = keras.Model(keras_model.input, [keras_model.get_layer(f"{b}_conv").output for b in BLOCKS])
    outs = probe.predict(to_float(calibration), batch_size=500, verbose=0)
    for block, (_, bias), out in zip(BLOCKS, convs, outs):
        bn = keras_model.get_layer(f"{block}_bn")
        mean, var = out.mean(axis=(0, 1, 2)), out.var(axis=(0, 1, 2))
        # gamma * (x - mean) / sqrt(var + eps) + beta == x + bias
        bn.set_weights([np.sqrt(var + bn.epsilon), bias + mean, mean, var])
    return keras_model


def agreement(keras_model, path, images: np.ndarray) -> float:
    """Share of ``images`` (uint8) on which the Keras model and the ``.tflite`` predict alike."""
    ref = Model(path, verify=False).predict_many(to_unit(images)).argmax(axis=1)
    got = keras_model.predict(to_float(images), batch_size=500, verbose=0).argmax(axis=1)
    return float(np.mean(ref == got))
