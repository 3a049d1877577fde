"""Structured (channel) pruning of the ``edge`` CNN: whole convolution filters are removed and
a smaller dense model is rebuilt, so MACs, bytes and latency really drop (magnitude pruning
only zeroes weights inside the same shapes).

Criterion: the absolute BatchNorm scale |gamma| of each channel (Liu et al., "Learning
Efficient Convolutional Networks through Network Slimming", 2017).  A channel's output after
BN is gamma * normalised + beta; a small |gamma| means the channel contributes little beyond a
constant.  The kept channels' weights are copied into the smaller model (conv kernels along
both their input and output channels, BN statistics, the classifier's input rows), which is
then fine-tuned.
"""

from __future__ import annotations

import numpy as np

from device.errors import UsageError
from host import models as archs

BLOCKS = ("b1", "b2a", "b2b", "b3a", "b3b")


def edge_widths(model) -> tuple[int, ...]:
    try:
        return tuple(int(model.get_layer(f"{b}_conv").filters) for b in BLOCKS)
    except ValueError:
        raise UsageError(f"{model.name!r} is not an edge-family model (no b1_conv..b3b_conv layers); "
                         "prune-channels works on models from `host train --arch edge|wide`") from None


def channel_scores(model) -> dict[str, np.ndarray]:
    """|gamma| of every channel, per block."""
    return {b: np.abs(model.get_layer(f"{b}_bn").get_weights()[0]) for b in BLOCKS}


def keep_indices(scores: dict[str, np.ndarray], keep: float, min_channels: int = 4) -> dict[str, np.ndarray]:
    """The highest-scoring ``keep`` fraction of each block's channels, in their original order."""
    if not 0.0 < keep < 1.0:
        raise UsageError(f"--keep must be in (0, 1) (got {keep})")
    out = {}
    for b, s in scores.items():
        n = max(min_channels, int(round(len(s) * keep)))
        n = min(n, len(s))
        out[b] = np.sort(np.argsort(-s, kind="stable")[:n])
    return out


def shrink(model, keep: dict[str, np.ndarray]):
    """A new edge model with only the kept channels, the weights copied from ``model``."""
    widths = tuple(len(keep[b]) for b in BLOCKS)
    small = archs.build_edge(widths=widths)
    prev = np.arange(1)  # the image's single channel
    for b in BLOCKS:
        k = keep[b]
        (kernel,) = model.get_layer(f"{b}_conv").get_weights()  # (3, 3, c_in, c_out), no bias
        small.get_layer(f"{b}_conv").set_weights([kernel[:, :, prev][:, :, :, k]])
        gamma, beta, mean, var = model.get_layer(f"{b}_bn").get_weights()
        small.get_layer(f"{b}_bn").set_weights([gamma[k], beta[k], mean[k], var[k]])
        prev = k
    w, bias = model.get_layer("logits").get_weights()
    small.get_layer("logits").set_weights([w[prev], bias])
    return small
