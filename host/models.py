"""Model architectures (``--arch``) and their cost: parameters and multiply-accumulates.

``seed`` is the reference article's CNN, exactly; ``edge`` is the compact model the device
ships (BatchNorm, global average pooling instead of the 1.6M-weight dense layer); ``wide`` is
``edge`` at twice the width (a distillation teacher).
"""

from __future__ import annotations

from host import tfenv  # noqa: F401  (before TensorFlow)
import tf_keras as keras
from tf_keras import layers

from device.errors import UsageError

INPUT_SHAPE = (28, 28, 1)


def build_seed(l2: float = 0.0) -> keras.Model:
    """The seed article's CNN: 2 convs, max-pool, dropout, a 128-unit dense layer."""
    reg = keras.regularizers.l2(l2) if l2 else None
    return keras.Sequential([
        keras.Input(INPUT_SHAPE),
        layers.Conv2D(32, 3, padding="same", activation="relu", kernel_regularizer=reg),
        layers.Conv2D(64, 3, padding="same", activation="relu", kernel_regularizer=reg),
        layers.MaxPooling2D(2),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu", kernel_regularizer=reg),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ], name="seed")


def _conv_bn_relu(x, filters: int, padding: str, reg, name: str):
    # Conv -> BN -> ReLU is the pattern tfmot's default 8-bit scheme folds into one quantized
    # conv, so QAT sees exactly the arithmetic the INT8 model will run.
    x = layers.Conv2D(filters, 3, padding=padding, use_bias=False, kernel_regularizer=reg,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_edge(l2: float = 0.0, widths=(16, 24, 32, 48, 64), name: str = "edge") -> keras.Model:
    """Compact CNN for a Pi core: ~53k parameters (~55 KB as INT8), ~3.5M MACs (seed: ~16M).

    28x28: conv16 | pool | 14x14: conv24, conv32 | pool | 7x7: conv48, conv64 (valid, 5x5)
    | global average pool | dense 10.  The second and third stages carry the capacity; the
    full-resolution stage stays narrow because it costs the most MACs per channel.
    """
    reg = keras.regularizers.l2(l2) if l2 else None
    w1, w2, w3, w4, w5 = widths
    inp = keras.Input(INPUT_SHAPE, name="image")
    x = _conv_bn_relu(inp, w1, "same", reg, "b1")
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = _conv_bn_relu(x, w2, "same", reg, "b2a")
    x = _conv_bn_relu(x, w3, "same", reg, "b2b")
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = _conv_bn_relu(x, w4, "same", reg, "b3a")
    x = _conv_bn_relu(x, w5, "valid", reg, "b3b")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.1, name="drop")(x)
    out = layers.Dense(10, activation="softmax", kernel_regularizer=reg, name="logits")(x)
    return keras.Model(inp, out, name=name)


def build_wide(l2: float = 0.0) -> keras.Model:
    """The edge layout at twice the width (~210k parameters, ~14M MACs): a distillation
    teacher and a starting point for channel pruning."""
    return build_edge(l2, widths=(32, 48, 64, 96, 128), name="wide")


ARCHS = {"seed": build_seed, "edge": build_edge, "wide": build_wide}


def build(arch: str, l2: float = 0.0) -> keras.Model:
    if arch not in ARCHS:
        raise UsageError(f"unknown --arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    return ARCHS[arch](l2=l2)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one inference (batch 1): convolutions and dense layers, which
    are all but a rounding error of the work."""
    total = 0
    for layer in _leaf_layers(model):
        cls = type(layer).__name__
        inner = getattr(layer, "layer", layer)  # quantize / prune wrappers keep the real layer here
        cls = type(inner).__name__
        if cls == "Conv2D":
            _, h, w, c_out = inner.output_shape
            kh, kw = inner.kernel_size
            c_in = inner.input_shape[-1]
            total += h * w * c_out * kh * kw * c_in // inner.groups
        elif cls == "DepthwiseConv2D":
            _, h, w, c_out = inner.output_shape
            kh, kw = inner.kernel_size
            total += h * w * c_out * kh * kw
        elif cls == "Dense":
            total += int(inner.input_shape[-1]) * inner.units
    return int(total)


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and not hasattr(layer, "layer"):
            yield from _leaf_layers(layer)
        else:
            yield layer


def count_params(model: keras.Model) -> int:
    return int(model.count_params())
