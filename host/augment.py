"""Training-time augmentation, in numpy + OpenCV on each batch.

``camera`` (the default) imitates what ``device/preprocess.py`` hands the model from a photo,
which MNIST's scanned pen strokes never show: strokes thinner or thicker than MNIST's (pens,
digit size), saturated strokes (the device scales the stroke level to white), blur, sensor
noise on the strokes, a shadow that leaves part of the digit dimmer, a stroke end cut at the
crop edge (the device then re-fits what is left into the 20x20 box), and the slight scale and
centring errors of the crop - on top of the seed article's rotation, shift and zoom.  Like
the device, it ends by scaling each digit so its brightest ink is white.

``full`` is the previous default (rotation/shift/zoom plus 2x2 dilation / erosion and blur),
``geometric`` the seed article's augmentation alone; both are kept bit for bit so old results
can be reproduced.  Every mode draws from the one generator it is given, so a seed fixes the
batches.

OpenCV on the CPU costs ~20 us per image; the same ops in a tf.data map cost ~0.5 ms per image
here because they compete with training for the two cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from host import tfenv  # noqa: F401
import tensorflow as tf

_KERNEL = np.ones((2, 2), np.uint8)
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
# One image is 28x28: OpenCV worker threads would only fight TensorFlow for the two cores.
cv2.setNumThreads(1)


@dataclass(frozen=True)
class CameraAugment:
    """Probabilities and ranges of the ``camera`` mode (each effect drawn independently)."""
    rotate_deg: float = 12.0
    shift: float = 0.08          # fraction of 28 px, each axis: centring error after the crop
    zoom: float = 0.10           # scale error of the 20x20 fit
    thin: float = 0.25           # thinner strokes (fine pen, large digit)
    thick: float = 0.15          # thicker strokes (felt pen, small digit)
    saturate: float = 0.25       # stroke level stretched to white (the device's levelling)
    blur: float = 0.20           # camera focus / motion, sigma 0.4-0.9 px
    shadow: float = 0.10         # part of the digit 30-60 % dimmer, soft edge
    noise: float = 0.10          # sensor noise on the strokes (the device masks the background)
    cut: float = 0.05            # 8-20 % of one side cut off, the rest re-fitted and re-centred


CAMERA = CameraAugment()
MODES = ("camera", "full", "geometric", "none")


def _affine(img: np.ndarray, angle: float, scale: float, shift) -> np.ndarray:
    m = cv2.getRotationMatrix2D((13.5, 13.5), angle, scale)
    m[:, 2] += shift
    return cv2.warpAffine(img, m, (28, 28), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def augment_batch(x: np.ndarray, rng: np.random.Generator, rotate_deg=15.0, shift=0.1,
                  zoom=0.1, camera: bool = True) -> np.ndarray:
    """The ``full`` mode (``camera=False``: ``geometric``): uint8 (B, 28, 28) -> augmented uint8
    (B, 28, 28), a new random draw per image."""
    out = np.empty_like(x)
    n = len(x)
    angles = rng.uniform(-rotate_deg, rotate_deg, n)
    scales = rng.uniform(1 - zoom, 1 + zoom, n)
    shifts = rng.uniform(-shift, shift, (n, 2)) * 28
    stroke = rng.random(n)
    blur = rng.random(n) < 0.2
    for i in range(n):
        img = _affine(x[i], angles[i], scales[i], shifts[i])
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


def refit(img: np.ndarray, box: int = 20) -> np.ndarray:
    """Fit the ink's bounding box into ``box`` x ``box`` (aspect kept) and centre it by centre of
    mass in 28x28: what the device does with whatever it found, and how MNIST was made."""
    ys, xs = np.nonzero(img)
    if len(ys) == 0:
        return img
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = img[y0:y1, x0:x1]
    s = box / max(y1 - y0, x1 - x0)
    nw, nh = max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))
    digit = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    m = cv2.moments(digit)
    cx, cy = (m["m10"] / m["m00"], m["m01"] / m["m00"]) if m["m00"] else ((nw - 1) / 2, (nh - 1) / 2)
    ox = min(max(int(round(13.5 - cx)), 0), 28 - nw)
    oy = min(max(int(round(13.5 - cy)), 0), 28 - nh)
    out = np.zeros_like(img)
    out[oy:oy + nh, ox:ox + nw] = digit
    return out


def _cut(img: np.ndarray, frac: float, side: int) -> np.ndarray:
    """Blank ``frac`` of the ink's bounding box from one side (0 top, 1 bottom, 2 left, 3 right)."""
    ys, xs = np.nonzero(img)
    if len(ys) == 0:
        return img
    out = img.copy()
    lo, hi = (ys.min(), ys.max() + 1) if side < 2 else (xs.min(), xs.max() + 1)
    k = int(round((hi - lo) * frac))
    sl = slice(lo, lo + k) if side % 2 == 0 else slice(hi - k, hi)
    if side < 2:
        out[sl, :] = 0
    else:
        out[:, sl] = 0
    return out


def _shadow(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dim the ink beyond a random line through the digit by 30-60 %, with a soft edge."""
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    d = (xx - 13.5) * np.cos(ang) + (yy - 13.5) * np.sin(ang) - rng.uniform(-6, 6)
    light = 1.0 - rng.uniform(0.3, 0.6) / (1.0 + np.exp(-d / rng.uniform(0.5, 3.0)))
    return (img * light).astype(np.uint8)


def camera_batch(x: np.ndarray, rng: np.random.Generator, spec: CameraAugment = CAMERA) -> np.ndarray:
    """The ``camera`` mode: uint8 (B, 28, 28) -> augmented uint8 (B, 28, 28)."""
    n = len(x)
    out = np.empty_like(x)
    angles = rng.uniform(-spec.rotate_deg, spec.rotate_deg, n)
    scales = rng.uniform(1 - spec.zoom, 1 + spec.zoom, n)
    shifts = rng.uniform(-spec.shift, spec.shift, (n, 2)) * 28
    u = rng.random((n, 8))
    for i in range(n):
        img = x[i]
        # The handwriting and the crop first: the device re-fits a cut digit into its box.
        if u[i, 0] < spec.cut:
            img = refit(_cut(img, rng.uniform(0.08, 0.2), int(rng.integers(4))))
        if u[i, 1] < spec.thin:
            # Erode only digits with ink to spare (a fine "1" would vanish); the cross is a
            # thinner cut than a 3x3 square, the 2x2 square thinner still.
            ink = np.count_nonzero(img > 128)
            if ink >= 60:
                img = cv2.erode(img, _CROSS if ink >= 150 and rng.random() < 0.5 else _KERNEL)
        elif u[i, 1] > 1 - spec.thick:
            img = cv2.dilate(img, _KERNEL if rng.random() < 0.7 else _CROSS)
        img = _affine(img, angles[i], scales[i], shifts[i])
        # Then the image formation.
        if u[i, 2] < spec.saturate:
            img = cv2.convertScaleAbs(img, alpha=rng.uniform(1.3, 2.2))
        if u[i, 3] < spec.blur:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9))
        if u[i, 4] < spec.shadow:
            img = _shadow(img, rng)
        if u[i, 5] < spec.noise:
            near = cv2.dilate(img, _KERNEL) > 0
            noisy = img + rng.normal(0, rng.uniform(4, 14), img.shape) * near
            img = np.clip(noisy, 0, 255).astype(np.uint8)
        # The device scales the stroke level so the brightest ink is white: so do we.
        peak = int(img.max())
        out[i] = cv2.convertScaleAbs(img, alpha=255.0 / peak) if 0 < peak < 255 else img
    return out


def augment(x: np.ndarray, rng: np.random.Generator, mode: str) -> np.ndarray:
    """One batch of ``mode`` (see :data:`MODES`)."""
    if mode == "camera":
        return camera_batch(x, rng, CAMERA)
    if mode in ("full", "geometric"):
        return augment_batch(x, rng, camera=mode == "full")
    if mode == "none":
        return x
    raise ValueError(f"unknown augmentation {mode!r}; choose one of: {', '.join(MODES)}")


def to_float(images) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]: the input contract."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., None]


def train_dataset(x: np.ndarray, y: np.ndarray, batch: int, augment_mode: str, seed: int):
    """A tf.data pipeline of shuffled (and optionally augmented) float batches, reshuffled and
    re-augmented every epoch.  The numpy work runs in the generator, one call per batch."""
    rng = np.random.default_rng(seed)

    def batches():
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            yield to_float(augment(x[idx], rng, augment_mode)), y[idx].astype(np.int32)

    spec = (tf.TensorSpec((None, 28, 28, 1), tf.float32), tf.TensorSpec((None,), tf.int32))
    return tf.data.Dataset.from_generator(batches, output_signature=spec).prefetch(2)
