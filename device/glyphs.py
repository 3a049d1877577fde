"""Handwritten digits to draw scenes with: glyphs cut from one-digit photos, or made from
MNIST digits.

A glyph is a transmittance image (1 = bare paper, 0 = opaque ink), so a scene multiplies it into
its paper and lights the result: the ink darkens in a shadow as the paper does.  Photo glyphs
keep their writer (the file-name prefix of the dev photos), so a benchmark can hold writers
out.  numpy + OpenCV only.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import cv2

from device.errors import UsageError
from device.sources.images import ImageRefused, read_image


@dataclass(frozen=True)
class Glyph:
    """One handwritten digit: ``t`` float32 (h, w, 3) transmittance (1 = paper, 0 = opaque
    ink), ``box`` its tight ink box (x, y, w, h) inside ``t``, ``label`` the digit and
    ``source`` the writer ("mnist" for MNIST digits)."""
    t: np.ndarray
    box: tuple[int, int, int, int]
    label: int
    source: str


def glyph_from_photo(img: np.ndarray, label: int, source: str) -> Glyph:
    """Cut the digit out of a photo of one digit on paper: divide by the paper's own level
    (a closing wider than the strokes, so the photo's light and shadows go), keep the ink
    blobs of the digit (the largest and those near it: a photo's dark corner is not ink), and
    fade everything else to bare paper."""
    h, w = img.shape[:2]
    k = max(15, (min(h, w) // 5) | 1)
    # uint8 morphology and box blurs: OpenCV's fast paths (a photo is up to ~700 px).
    paper = cv2.morphologyEx(img, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    paper = cv2.max(cv2.blur(cv2.blur(paper, (k // 2 | 1, k // 2 | 1)), (k // 2 | 1, k // 2 | 1)), img)
    t = np.clip(img.astype(np.float32) / np.maximum(paper.astype(np.float32), 1.0), 0.0, 1.0)
    strength = 1.0 - t.min(axis=2)
    n, lab, st, _ = cv2.connectedComponentsWithStats((strength > 0.3).astype(np.uint8), connectivity=8)
    if n < 2:
        raise UsageError(f"photo of {label} from {source}: no ink found")
    areas = st[1:, cv2.CC_STAT_AREA]
    main = 1 + int(np.argmax(areas))
    x, y, bw, bh = (int(v) for v in st[main, :4])
    keep = [i for i in range(1, n)
            if st[i, 4] >= 0.03 * areas.max()
            and st[i, 0] <= x + bw + bw // 3 and st[i, 0] + st[i, 2] >= x - bw // 3
            and st[i, 1] <= y + bh + bh // 4 and st[i, 1] + st[i, 3] >= y - bh // 4]
    mask = np.isin(lab, keep).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    r = max(2, int(0.04 * max(box[2], box[3])))
    near = cv2.dilate(mask, np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(np.float32)
    gain = np.clip((strength - 0.06) / 0.12, 0.0, 1.0) * cv2.GaussianBlur(near, (0, 0), r / 2)
    t = 1.0 - (1.0 - t) * gain[..., None]
    # Keep a margin around the box, drop the rest of the photo.
    pad = int(0.2 * max(box[2], box[3]))
    x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
    x1, y1 = min(w, box[0] + box[2] + pad), min(h, box[1] + box[3] + pad)
    return Glyph(np.ascontiguousarray(t[y0:y1, x0:x1]), (box[0] - x0, box[1] - y0, box[2], box[3]),
                 int(label), source)


def writer_of(filename: str) -> str:
    """Dev photos are named <writer>-<commit>-<label>.<ext>."""
    return Path(filename).stem.rsplit("-", 2)[0]


def photo_glyphs(folder: str | Path, writers: set[str] | None = None) -> list[Glyph]:
    """Glyphs from a folder of one-digit photos with ``labels.csv`` (file,label), optionally
    only those of ``writers``."""
    folder = Path(folder)
    try:
        with open(folder / "labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise UsageError(f"cannot read {folder / 'labels.csv'}: {exc.strerror}") from None
    out = []
    for r in sorted(rows, key=lambda r: r["file"]):
        who = writer_of(r["file"])
        if writers is not None and who not in writers:
            continue
        try:
            img = read_image(folder / r["file"])
        except ImageRefused as exc:
            raise UsageError(f"cannot read photo {folder / r['file']}: {exc}") from None
        out.append(glyph_from_photo(img, int(r["label"]), who))
    return out


def mnist_glyphs(x: np.ndarray, y: np.ndarray) -> list[Glyph]:
    """MNIST digits (white on black, 28x28) as black-ink glyphs; the ink colour is chosen per
    scene (:func:`_tint`)."""
    out = []
    for img, lab in zip(x, y):
        alpha = img.astype(np.float32) / 255.0
        ys, xs = np.nonzero(alpha > 0.3)
        box = (int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1))
        out.append(Glyph(np.repeat((1.0 - alpha)[..., None], 3, axis=2), box, int(lab), "mnist"))
    return out


def _thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a 0/1 uint8 mask to its one-pixel skeleton (vectorised sweeps;
    a glyph of a few hundred pixels takes a few dozen)."""
    m = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p2, p3, p4 = m[:-2, 1:-1], m[:-2, 2:], m[1:-1, 2:]
            p5, p6, p7 = m[2:, 2:], m[2:, 1:-1], m[2:, :-2]
            p8, p9 = m[1:-1, :-2], m[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
            b = sum(ring[:8])
            a = sum(((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.uint8) for i in range(8))
            c = (p2 * p4 * p6 == 0) if step == 0 else (p2 * p4 * p8 == 0)
            d = (p4 * p6 * p8 == 0) if step == 0 else (p2 * p6 * p8 == 0)
            kill = (m[1:-1, 1:-1] == 1) & (b >= 2) & (b <= 6) & (a == 1) & c & d
            if kill.any():
                m[1:-1, 1:-1][kill] = 0
                changed = True
        if not changed:
            return m[1:-1, 1:-1]


def with_pen(g: Glyph, width: float, ink: tuple[float, float, float] | None = None,
             strength: float = 1.0) -> Glyph:
    """The same digit written with another pen: the glyph's strokes thinned to their
    skeleton and drawn again ``width`` x the ink box's height wide (a fine ballpoint is ~0.01,
    a felt pen ~0.08), in ``ink`` (BGR transmittance; default the glyph's own darkest ink) at
    ``strength`` (1 = as opaque as the glyph's ink).  For benchmarks and tests: a fine pen is
    what one dev writer used and the others did not, so it is generated for the rest."""
    s = 1.0 - g.t.min(axis=2)
    bh = g.box[3]
    up = max(1, int(np.ceil(3 / max(width * bh, 1e-3))))   # the new stroke >= ~3 px wide
    big = cv2.resize(s, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR) if up > 1 else s
    skel = _thin((big > 0.3).astype(np.uint8))
    r = max(0.5, width * bh * up / 2)
    k = int(2 * np.ceil(r) + 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    stroke = cv2.dilate(skel * 255, disc).astype(np.float32) / 255.0
    stroke = cv2.GaussianBlur(stroke, (0, 0), max(0.5, 0.3 * up))
    if ink is None:
        strong = g.t[s > 0.8 * s.max()]
        ink = tuple(float(v) for v in strong.mean(axis=0)) if len(strong) else (0.1, 0.1, 0.1)
    alpha = np.clip(stroke * strength, 0.0, 1.0)[..., None]
    t = 1.0 - alpha * (1.0 - np.asarray(ink, np.float32))
    # Kept at the drawing's resolution: a scene scales it once (a 28x28 MNIST digit drawn
    # back at its own size would be a sub-pixel line, blurred again by the scene's scaling).
    return Glyph(np.ascontiguousarray(t, dtype=np.float32), tuple(int(v * up) for v in g.box), g.label, g.source)
