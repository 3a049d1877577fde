"""How a scene is lit and filmed: light (level, gradient, vignette, a lamp's spot), the hard cast
shadow of a hand or a phone, glare, and the camera (motion or focus blur, sensor noise that
grows in dim light, a padded border, JPEG).  Sizes follow the digits' size, as on a real desk.
numpy + OpenCV only; every function draws from the generator it is given.  ``opts`` is a
``device.scenes.SceneOptions`` (not imported here: scenes imports this module).
"""

from __future__ import annotations

import functools
import math

import numpy as np

import cv2


@functools.lru_cache(maxsize=4)
def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y, x) as float32, shared (read-only) by every frame of a size."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def hand_or_phone(rng, size, block_frame, hd) -> np.ndarray:
    """A cast-shadow mask (float 0..1, frame size): a hand (palm, fingers, arm) or a phone,
    reaching in from outside the frame with its edge near the digits."""
    w, h = size
    sc = 4  # fixed-point shift 2
    mask = np.zeros((h, w), np.uint8)
    bx0, by0, bx1, by1 = block_frame
    # Aim the shadow's edge at, or near, the digits.
    tx = rng.uniform(bx0 - 0.5 * hd, bx1 + 0.5 * hd)
    ty = rng.uniform(by0 - 0.5 * hd, by1 + 0.5 * hd)
    ang = rng.uniform(0, 2 * math.pi)
    u = np.array([math.cos(ang), math.sin(ang)])     # from the shadow's body towards the target
    v = np.array([-u[1], u[0]])
    reach = rng.uniform(0.0, 0.35) * w

    def poly(points):
        cv2.fillPoly(mask, [np.round(np.asarray(points) * sc).astype(np.int32)], 255, cv2.LINE_AA, shift=2)

    def capsule(p0, p1, r):
        cv2.line(mask, tuple(int(c) for c in np.round(np.asarray(p0) * sc)),
                 tuple(int(c) for c in np.round(np.asarray(p1) * sc)), 255, max(1, int(2 * r)), cv2.LINE_AA, shift=2)

    tip = np.array([tx, ty]) + u * reach * rng.uniform(-0.3, 0.3)
    # Sizes relative to the digits, as on a real desk: a palm is several digits wide, a finger
    # about one digit high, a phone three to six.
    if rng.random() < 0.6:   # a hand: palm, four fingers towards the target, thumb, arm
        palm_r = rng.uniform(1.5, 3.0) * hd
        finger = rng.uniform(1.1, 1.8) * palm_r
        palm = tip - u * (finger + palm_r * 0.8)
        cv2.ellipse(mask, tuple(int(c) for c in np.round(palm * sc)),
                    (int(palm_r * sc), int(palm_r * 1.1 * sc)), math.degrees(ang), 0, 360, 255, -1,
                    cv2.LINE_AA, shift=2)
        fw = rng.uniform(0.2, 0.28) * palm_r
        for k, off in enumerate((-0.65, -0.22, 0.22, 0.65)):
            base = palm + v * off * palm_r + u * 0.6 * palm_r
            spread = (off * rng.uniform(0.0, 0.35))
            d = u * math.cos(spread) + v * math.sin(spread)
            capsule(base, base + d * finger * (0.8 if k in (0, 3) else 1.0), fw)
        capsule(palm - v * 0.8 * palm_r, palm - v * 1.6 * palm_r + u * 0.6 * palm_r, fw * 1.1)
        capsule(palm, palm - u * 3 * w, palm_r * 0.9)
    else:                    # a phone (or a ruler, a book): a long rounded rectangle
        pw = rng.uniform(2.5, 6.0) * hd
        p0 = tip - u * 3 * w
        poly([p0 - v * pw / 2, tip - v * pw / 2, tip + v * pw / 2, p0 + v * pw / 2])
    soft = rng.uniform(0.6, 3.0) if rng.random() < 0.8 else rng.uniform(4.0, 10.0)
    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), soft)


def light(rng, opts, bf, hd, tags) -> np.ndarray:
    w, h = opts.size
    yy, xx = grid(h, w)
    level = rng.uniform(0.15, 0.3) if rng.random() < opts.p_lowlight else rng.uniform(0.65, 1.0)
    if level < 0.35:
        tags.add("lowlight")
    gx, gy = rng.uniform(-0.35, 0.35, 2)
    light = level * (1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5))
    light *= 1.0 - rng.uniform(0.0, 0.35) * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2) * 2
    if rng.random() < opts.p_spot:
        sx, sy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        sig, depth = rng.uniform(0.15, 0.4) * w, rng.uniform(0.3, 0.65)
        light *= (1 - depth) + depth * np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * sig * sig))
        tags.add("spot")
    if rng.random() < opts.p_shadow:
        shadow = hand_or_phone(rng, opts.size, bf, hd)
        light *= 1.0 - rng.uniform(0.3, 0.7) * shadow
        tags.add("shadow")
    return light


def glare(rng, size, bf, hd) -> np.ndarray:
    """A specular highlight: an elliptical bright blob added to the image; one that would
    wash out the digits entirely is kept off them."""
    w, h = size
    yy, xx = grid(h, w)
    sx, sy = rng.uniform(0.05, 0.3, 2) * (w, h)
    gain = rng.uniform(120, 320)
    bx0, by0, bx1, by1 = bf
    for _ in range(20):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        # Distance from the digits' box, in units of the blob's size.
        dx = max(bx0 - cx, 0, cx - bx1) / sx
        dy = max(by0 - cy, 0, cy - by1) / sy
        if dx * dx + dy * dy > 4.0:
            break
    else:
        gain = rng.uniform(40, 100)   # over the digits: a veil, not a blinding spot
    return gain * np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2) / 2)


def film(frame: np.ndarray, rng, opts, tags) -> np.ndarray:
    """Motion or focus blur, sensor noise (worse in dim light), a padded border, JPEG."""
    w, h = opts.size
    if rng.random() < opts.p_motion:
        n = int(rng.integers(5, 16))
        k = np.zeros((n, n), np.float32)
        a = rng.uniform(0, math.pi)
        c = (n - 1) / 2
        cv2.line(k, (int(round(c - c * math.cos(a))), int(round(c - c * math.sin(a)))),
                 (int(round(c + c * math.cos(a))), int(round(c + c * math.sin(a)))), 1.0, 1, cv2.LINE_AA)
        frame = cv2.filter2D(frame, -1, k / k.sum())
        tags.add("motion")
    sigma = rng.uniform(0.0, 1.4)
    if sigma > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    dim = "lowlight" in tags
    noise = rng.uniform(4.0, 9.0) if dim else rng.uniform(1.0, 4.0)
    frame += rng.standard_normal(frame.shape, dtype=np.float32) * (
        noise + 0.25 * np.sqrt(np.clip(frame, 0, None)))
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    if rng.random() < opts.p_border:
        side = int(rng.integers(4))
        k = int(rng.uniform(0.03, 0.12) * (h if side < 2 else w))
        f = np.rot90(frame, side)   # view: the padded strip is always rows 0..k
        mode = rng.integers(3)
        if mode == 0:
            f[:k] = f[k]
        elif mode == 1:
            f[:k] = cv2.blur(np.ascontiguousarray(f[:k]), (31, 9))
        else:
            f[:k] = rng.integers(0, 25)
        frame = np.ascontiguousarray(np.rot90(f, -side))
        tags.add("border")
    ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(45, 91))])
    return cv2.imdecode(jpg, cv2.IMREAD_COLOR)
