"""ONNX export of a float Keras model (tf2onnx), checked with onnxruntime against the TFLite
float32 conversion of the same model on the 10,000 MNIST test images."""

from __future__ import annotations

import time

import numpy as np

from device.errors import UsageError

INPUT_NAME = "image"


def _libs():
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as exc:
        raise UsageError(f"ONNX export needs tf2onnx and onnxruntime ({exc.name} is missing): "
                         "pip install -e '.[host]'") from None
    return tf2onnx, onnxruntime


def check_opset(opset: int) -> None:
    """UsageError unless the installed tf2onnx can write ``opset``."""
    tf2onnx, _ = _libs()
    known = tf2onnx.constants.OPSET_TO_IR_VERSION
    if opset not in known:
        raise UsageError(f"--opset {opset} is not one tf2onnx {tf2onnx.__version__} writes "
                         f"({min(known)}..{max(known)})")


def to_onnx(model, opset: int = 17) -> bytes:
    """The serialized ONNX model: input ``image`` float32 [N, 28, 28, 1], output probabilities."""
    import tensorflow as tf

    tf2onnx, _ = _libs()
    spec = (tf.TensorSpec((None, 28, 28, 1), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    return proto.SerializeToString()


def onnx_session(data: bytes, threads: int = 1):
    _, ort = _libs()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def run_one_by_one(predict, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, 10), per-call milliseconds (N,)) with one image per call, as on a
    device; ``predict`` maps a (28, 28) float image to 10 probabilities."""
    probs = np.empty((len(images), 10), np.float32)
    ms = np.empty(len(images))
    for i, img in enumerate(images):
        t0 = time.perf_counter_ns()
        probs[i] = predict(img)
        ms[i] = (time.perf_counter_ns() - t0) / 1e6
    return probs, ms


def latency_summary(ms: np.ndarray) -> dict:
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "mean": float(ms.mean())}
