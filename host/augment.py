"""Training-time augmentation, in numpy + OpenCV on each batch.

Geometric (the seed article): rotation +-15 degrees, shift +-10 %, zoom +-10 %, as one affine
warp per image.  Camera-like (for real handwriting photos, measured on ``digit-photos``): stroke
thickness (dilate / erode) and blur, because a thresholded photo has thicker or thinner strokes
and softer edges than MNIST's scanned pen strokes.

OpenCV on the CPU costs ~20 us per image; the same ops in a tf.data map cost ~0.5 ms per image
here because they compete with training for the two cores.
"""

from __future__ import annotations

import cv2
import numpy as np

from host import tfenv  # noqa: F401
import tensorflow as tf

_KERNEL = np.ones((2, 2), np.uint8)
# One image is 28x28: OpenCV worker threads would only fight TensorFlow for the two cores.
cv2.setNumThreads(1)


MODES = ("full", "geometric", "none")


def augment_batch(x: np.ndarray, rng: np.random.Generator, rotate_deg=15.0, shift=0.1,
                  zoom=0.1, camera: bool = True) -> np.ndarray:
    """uint8 (B, 28, 28) -> augmented uint8 (B, 28, 28); a new random draw per image.
    ``camera=False``: the geometric part only (no stroke thickness, no blur)."""
    out = np.empty_like(x)
    n = len(x)
    angles = rng.uniform(-rotate_deg, rotate_deg, n)
    scales = rng.uniform(1 - zoom, 1 + zoom, n)
    shifts = rng.uniform(-shift, shift, (n, 2)) * 28
    stroke = rng.random(n)
    blur = rng.random(n) < 0.2
    for i in range(n):
        m = cv2.getRotationMatrix2D((13.5, 13.5), angles[i], scales[i])
        m[:, 2] += shifts[i]
        img = cv2.warpAffine(x[i], m, (28, 28), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        # Stroke thickness: a fifth dilated, a tenth thinned (only digits with ink to spare:
        # eroding a fine "1" would erase it), the rest as drawn.
        if not camera:
            pass
        elif stroke[i] < 0.2:
            img = cv2.dilate(img, _KERNEL)
        elif stroke[i] > 0.9 and np.count_nonzero(img > 128) > 150:
            img = cv2.erode(img, _KERNEL)
        # Blur on some: a camera is never as sharp as a scanner.
        elif blur[i]:
            img = cv2.GaussianBlur(img, (3, 3), 0.8)
        out[i] = img
    return out


def to_float(images) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]: the input contract."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., None]


def train_dataset(x: np.ndarray, y: np.ndarray, batch: int, augment: str, seed: int):
    """A tf.data pipeline of shuffled (and optionally augmented) float batches, reshuffled and
    re-augmented every epoch.  The numpy work runs in the generator, one call per batch."""
    rng = np.random.default_rng(seed)

    def batches():
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            xb = x[idx] if augment == "none" else augment_batch(x[idx], rng, camera=augment == "full")
            yield to_float(xb), y[idx].astype(np.int32)

    spec = (tf.TensorSpec((None, 28, 28, 1), tf.float32), tf.TensorSpec((None,), tf.int32))
    return tf.data.Dataset.from_generator(batches, output_signature=spec).prefetch(2)
