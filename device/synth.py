"""Camera-like clips made from MNIST digits, for replay tests and benchmarks.

Each digit is "written" on paper and "filmed": dark ink (black, blue or red) on white, beige,
grey or tinted paper; uneven light (a gradient, a vignette and a soft shadow); a slight
perspective tilt; a random size and position; blur; sensor noise; and JPEG loss (every frame is
JPEG-compressed, and the clip itself is stored as MJPG).  Some frames show blank paper and are
labelled ``None``: the device must answer "no digit" there.

Deterministic for a given seed.  numpy + OpenCV only, so a Pi can run it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import cv2

from device.errors import UsageError
from device.fsio import atomic_write_json

PAPERS = [(245, 245, 245), (215, 232, 240), (200, 200, 200), (235, 215, 190), (230, 225, 200)]
INKS = [(25, 25, 25), (120, 40, 20), (30, 30, 160), (60, 50, 50)]  # BGR: black, blue, red, grey-black


def render_frame(digit: np.ndarray | None, rng: np.random.Generator, size=(640, 480)) -> np.ndarray:
    """One BGR frame of ``size`` (w, h) showing ``digit`` (uint8 28x28, white on black) on paper,
    or blank paper when ``digit`` is None."""
    w, h = size
    paper = np.array(PAPERS[rng.integers(len(PAPERS))], np.float32)
    # Uneven light: a linear gradient times a vignette, plus a soft shadow band.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.uniform(-0.35, 0.35, 2)
    light = 1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    r2 = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2
    light *= 1.0 - rng.uniform(0.1, 0.45) * r2 * 2
    if rng.random() < 0.5:
        # A soft shadow edge across the frame (a hand or the camera itself).
        ang = rng.uniform(0, np.pi)
        d = (xx - w / 2) * np.cos(ang) + (yy - h / 2) * np.sin(ang) - rng.uniform(-0.4, 0.4) * w
        light *= 1.0 - rng.uniform(0.15, 0.35) / (1.0 + np.exp(d / rng.uniform(15, 60)))
    frame = paper[None, None, :] * light[..., None]
    if digit is not None:
        ink = np.array(INKS[rng.integers(len(INKS))], np.float32)
        dh = int(rng.uniform(0.3, 0.75) * h)          # the digit's 28x28 cell height
        cell = cv2.resize(digit, (dh, dh), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
        # Perspective: jitter the four corners by up to 8 % of the cell.
        src = np.float32([[0, 0], [dh, 0], [dh, dh], [0, dh]])
        dst = src + rng.uniform(-0.08, 0.08, (4, 2)).astype(np.float32) * dh
        x0 = rng.uniform(0.05 * w, w - 1.05 * dh)
        y0 = rng.uniform(0.02 * h, max(0.02 * h + 1, h - 1.02 * dh))
        dst += np.float32([x0, y0])
        hom = cv2.getPerspectiveTransform(src, dst)
        alpha = cv2.warpPerspective(np.clip(cell, 0, 1), hom, (w, h), flags=cv2.INTER_LINEAR)
        alpha *= rng.uniform(0.75, 1.0)               # ink is never perfectly opaque
        frame = frame * (1 - alpha[..., None]) + (ink * light[..., None]) * alpha[..., None]
    sigma = rng.uniform(0.0, 1.6)
    if sigma > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    frame += rng.normal(0, rng.uniform(1.5, 6.0), frame.shape).astype(np.float32)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 86))])
    return cv2.imdecode(jpg, cv2.IMREAD_COLOR)


def make_clip(digits: np.ndarray, labels: np.ndarray, out: str | Path, n_digits: int = 200,
              hold: int = 3, blank_every: int = 10, fps: float = 30.0, seed: int = 0,
              size=(640, 480)) -> dict:
    """Write an MJPG ``.avi`` clip plus ``<clip>.labels.json`` (one label per frame, null for
    blank paper).  Each digit is held for ``hold`` frames (re-rendered each time: light, noise and
    JPEG change as in a live camera); every ``blank_every``-th shot is blank paper.
    Returns the labels document."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(digits), size=min(n_digits, len(digits)), replace=False)

    def shots():
        for k, i in enumerate(pick):
            todo = [(digits[i], int(labels[i]))]
            if blank_every and k % blank_every == blank_every - 1:
                todo.append((None, None))
            for img, lab in todo:
                for _ in range(hold):
                    yield render_frame(img, rng, size), lab, None

    return write_clip(out, shots(), fps=fps, size=size, meta={"seed": seed})


def write_clip(out: str | Path, shots, fps: float = 30.0, size=(640, 480), meta: dict | None = None) -> dict:
    """Write the frames of ``shots`` ((frame BGR, label, record or None) each) as an MJPG
    ``.avi`` and ``<clip>.labels.json``: ``labels`` (one per frame: a digit, a number string
    with its lines joined by a space, or null for no digit), ``records`` (the per-frame records,
    when the shots have them) and ``meta``.  Returns the labels document."""
    out = Path(out)
    if out.suffix.lower() != ".avi":
        raise UsageError(f"clip {out} must be an .avi (MJPG) file")
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, tuple(size))
    if not writer.isOpened():
        raise UsageError(f"cannot write video {out}")
    frame_labels: list = []
    records: list = []
    try:
        for frame, lab, rec in shots:
            writer.write(frame)
            frame_labels.append(lab)
            records.append(rec)
    finally:
        writer.release()
    doc = {"clip": out.name, "fps": fps, "size": list(size), **(meta or {}), "frames": len(frame_labels),
           "labels": frame_labels}
    if any(r is not None for r in records):
        doc["records"] = records
    atomic_write_json(str(out) + ".labels.json", doc)
    return doc


def load_labels(clip: str | Path) -> list[int | None]:
    path = Path(str(clip) + ".labels.json")
    try:
        return json.loads(path.read_text())["labels"]
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read clip labels {path}: {exc}") from None


SAMPLE = Path(__file__).resolve().parent / "data" / "mnist-sample.npz"


def load_sample(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """300 MNIST *test* digits shipped with the device side (``test_index`` says which), so a
    Pi can make or check a replay clip without the data set."""
    try:
        with np.load(path or SAMPLE) as f:
            return f["x"], f["y"]
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"cannot read digits {path or SAMPLE}: {exc}") from None
