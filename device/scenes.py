"""Scenes for development: digits written on paper, filmed the way a user really points a camera.

``device.synth`` draws one tidy digit on a sheet that fills the frame.  A camera over a desk sees
more: the paper's edge with the desk beside it, the hard shadow of a hand or a phone crossing
the sheet, a lamp's spot, glare, ruled or squared paper, a stray mark beside the digit, a digit
only 10 % of the frame high, motion blur, dim light, a camera that pads its border, and numbers
of several digits on one or two lines.  This module renders such frames with their labels.

The digits are glyphs (:mod:`device.glyphs`): cut from the real phone photos, one writer per
file-name prefix, so a benchmark can score on writers it never tuned on, or made from MNIST
digits.  Ink
multiplies the paper's reflectance, light multiplies the result, glare adds to it: a shadow
darkens ink and paper alike, as it does on a real sheet.

A frame is drawn on a "paper plane" canvas a little larger than the frame (desk, sheet, lines,
glyphs, marks), warped into the frame by a perspective homography, then lit, shadowed, blurred,
made noisy and JPEG-compressed.  Every frame has its own generator seeded by (seed, index), so a
clip is deterministic and any frame can be re-rendered alone.  numpy + OpenCV only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import cv2

from device import lighting
from device.errors import UsageError
from device.glyphs import Glyph

PAPERS = [(0.95, 0.95, 0.95), (0.86, 0.92, 0.95), (0.80, 0.80, 0.80), (0.80, 0.88, 0.94),
          (0.84, 0.92, 0.93), (0.93, 0.90, 0.88)]                      # BGR reflectance
DESKS = [(0.10, 0.16, 0.26), (0.30, 0.45, 0.62), (0.08, 0.08, 0.08), (0.45, 0.45, 0.45),
         (0.35, 0.22, 0.12), (0.75, 0.75, 0.72), (0.18, 0.18, 0.20)]  # dark/light wood, black...
INKS = [(0.10, 0.10, 0.10), (0.45, 0.18, 0.10), (0.12, 0.12, 0.60), (0.22, 0.20, 0.20)]
RULED = (0.93, 0.78, 0.62)     # light blue ruling (transmittance, BGR)
MARGIN = (0.78, 0.74, 0.95)    # red margin line
GRID = [(0.80, 0.80, 0.80), (0.92, 0.82, 0.70)]

TAGS = ("edge", "shadow", "ruled", "squared", "stray", "spot", "glare", "motion", "lowlight",
        "border", "small")


@dataclass(frozen=True)
class SceneOptions:
    """What a scene may contain: each condition happens with its probability, independently.
    Tests force one condition with 1.0 (and others with 0.0)."""
    size: tuple[int, int] = (640, 480)
    p_edge: float = 0.5          # the sheet's edge (and the desk) in view
    p_shadow: float = 0.45       # a hard cast shadow of a hand or a phone
    p_ruled: float = 0.2         # ruled paper (else squared with p_squared, else plain)
    p_squared: float = 0.15
    p_stray: float = 0.4         # a second, non-digit mark on the paper
    p_spot: float = 0.3          # a lamp's spot instead of even light
    p_glare: float = 0.2
    p_motion: float = 0.25
    p_lowlight: float = 0.15
    p_border: float = 0.1        # a camera-padded border: replicated rows, blurred or black bars
    min_height: float = 0.10     # single digits: height as a fraction of the frame height
    max_height: float = 0.60


DEFAULT_SCENE = SceneOptions()
# Hostile scenes: shadows and the sheet's edge in most frames, rulings, stray marks, glare (the
# blank scenes the tests and benchmarks.new_seeds guard the preprocessing with).
HOSTILE = dict(p_edge=0.8, p_shadow=0.8, p_ruled=0.3, p_squared=0.3, p_stray=0.5, p_glare=0.3)


def _tint(g: Glyph, ink: np.ndarray) -> np.ndarray:
    """MNIST glyphs take the scene's pen colour; photo glyphs keep their own ink."""
    if g.source != "mnist":
        return g.t
    return 1.0 - (1.0 - g.t) * (1.0 - ink)


# -- the scene -------------------------------------------------------------------------------

@dataclass
class _Canvas:
    """The paper plane: reflectance (BGR, 0..1), the view rectangle's origin inside it."""
    refl: np.ndarray
    ox: int
    oy: int
    tags: set = field(default_factory=set)


def _noise_field(rng, shape, cells, amp) -> np.ndarray:
    """Smooth random texture: a coarse random grid upsampled (cubic), +-amp around 1."""
    h, w = shape
    cy, cx = cells
    g = rng.uniform(-1, 1, (max(2, cy), max(2, cx))).astype(np.float32)
    return 1.0 + amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def _desk(rng, shape) -> np.ndarray:
    h, w = shape
    base = np.array(DESKS[rng.integers(len(DESKS))], np.float32)
    if rng.random() < 0.5:   # wood grain: long streaks along one axis
        grain = _noise_field(rng, (h, w), (h // 6, 3), 0.18) if rng.random() < 0.5 else \
            _noise_field(rng, (h, w), (3, w // 6), 0.18)
    else:
        grain = _noise_field(rng, (h, w), (h // 40, w // 40), 0.08)
    return base[None, None, :] * grain[..., None]


def _sheet_distance(rng, shape, view, block, theta, tags) -> np.ndarray:
    """Signed distance (px, > 0 on paper) to the sheet's visible edges; +inf everywhere when
    the sheet fills the view.  The edges keep ``block`` (x0, y0, x1, y1) on paper."""
    h, w = shape
    vx0, vy0, vx1, vy1 = view
    bx0, by0, bx1, by1 = block
    c, s = math.cos(theta), math.sin(theta)
    cx, cy = (vx0 + vx1) / 2, (vy0 + vy1) / 2
    margin = 0.06 * (vx1 - vx0)
    # (side, inward normal, room between the view edge and the block)
    sides = [("left", (c, s), bx0 - vx0, lambda d: (vx0 + d, cy)),
             ("right", (-c, -s), vx1 - bx1, lambda d: (vx1 - d, cy)),
             ("top", (-s, c), by0 - vy0, lambda d: (cx, vy0 + d)),
             ("bottom", (s, -c), vy1 - by1, lambda d: (cx, vy1 - d))]
    order = rng.permutation(4)
    want = 1 if rng.random() < 0.7 else 2
    yy, xx = lighting.grid(h, w)
    dist = np.full((h, w), np.inf, np.float32)
    used = []
    for i in order:
        name, (nx, ny), room, point = sides[i]
        if len(used) == want or (len(used) == 1 and {used[0], name} in ({"left", "right"}, {"top", "bottom"})):
            continue
        lo = 0.05 * (vx1 - vx0)
        if room - margin < lo:
            continue
        px, py = point(rng.uniform(lo, room - margin))
        corners = [(bx0, by0), (bx1, by0), (bx0, by1), (bx1, by1)]
        if min((qx - px) * nx + (qy - py) * ny for qx, qy in corners) < margin:
            continue   # the tilt would cut into the digits
        dist = np.minimum(dist, (xx - px) * nx + (yy - py) * ny)
        used.append(name)
    if used:
        tags.add("edge")
    return dist


def _rule(canvas: _Canvas, rng, theta, block, hd, kind) -> None:
    """Ruled (horizontal lines, maybe a red margin) or squared paper, along the sheet's axes,
    anti-aliased; a digit line sits on a ruling."""
    h, w = canvas.refl.shape[:2]
    yy, xx = lighting.grid(h, w)
    c, s = math.cos(theta), math.sin(theta)
    bx0, by0, bx1, by1 = block
    a = (xx - bx0) * c + (yy - by1) * s         # along the sheet
    b = -(xx - bx0) * s + (yy - by1) * c        # across it, 0 at the block's baseline

    def lines(coord, spacing, width, colour, offset=0.0):
        d = np.abs(np.mod(coord - offset + spacing / 2, spacing) - spacing / 2)
        cover = np.clip(width / 2 + 0.5 - d, 0.0, 1.0)[..., None]
        canvas.refl *= 1.0 - cover * (1.0 - np.asarray(colour, np.float32))

    if kind == "ruled":
        # A ruling is ~0.2 mm wide on paper where digits are 6-10 mm high.
        width = max(1.0, rng.uniform(0.015, 0.035) * hd)
        lines(b, hd * rng.uniform(0.9, 1.5), width, RULED, rng.uniform(-0.05, 0.1) * hd)
        if rng.random() < 0.5:
            x_m = -rng.uniform(0.3, 1.5) * hd
            lines(a, 1e6, width, MARGIN, x_m)
    else:
        sp = hd * rng.uniform(0.45, 0.8)
        colour, width = GRID[rng.integers(len(GRID))], max(0.8, rng.uniform(0.01, 0.025) * hd)
        off = rng.uniform(0, sp)
        lines(a, sp, width, colour, off)
        lines(b, sp, width, colour, off)
    canvas.tags.add(kind)


def _place_glyph(canvas: _Canvas, t: np.ndarray, g: Glyph, cx: float, cy: float, height: float,
                 theta: float, rng) -> np.ndarray:
    """Multiply glyph ``t`` into the canvas with its ink box centred at (cx, cy), ``height``
    px high, rotated ``theta`` plus a little jitter and shear; returns the ink box's corners
    (4, 2) in canvas coordinates."""
    bx, by, bw, bh = g.box
    sc = height / bh
    ang = theta + rng.uniform(-0.09, 0.09)
    shear = rng.uniform(-0.12, 0.12)
    c, s = math.cos(ang), math.sin(ang)
    lin = np.array([[c, -s], [s, c]], np.float64) @ np.array([[1, shear], [0, 1]]) * sc
    centre = np.array([bx + bw / 2, by + bh / 2])
    off = np.array([cx, cy]) - lin @ centre
    m = np.hstack([lin, off[:, None]])
    gh, gw = t.shape[:2]
    corners = (lin @ np.array([[0, 0], [gw, 0], [0, gh], [gw, gh]], np.float64).T).T + off
    H, W = canvas.refl.shape[:2]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if x1 > x0 and y1 > y0:
        m_roi = m.copy()
        m_roi[:, 2] -= (x0, y0)
        patch = cv2.warpAffine(t, m_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_AREA if sc < 1 else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(1.0, 1.0, 1.0))
        canvas.refl[y0:y1, x0:x1] *= patch
    ink = np.array([[bx, by], [bx + bw, by], [bx, by + bh], [bx + bw, by + bh]], np.float64)
    return (lin @ ink.T).T + off


def _layout(rows: list[list[Glyph]], rng, view, single: bool, opts: SceneOptions):
    """Heights and centres of every glyph (canvas coordinates) and the block's box."""
    vx0, vy0, vx1, vy1 = view
    vw, vh = vx1 - vx0, vy1 - vy0
    n_lines = len(rows)
    longest = max(len(r) for r in rows)
    gaps = [[rng.uniform(0.22, 0.45) for _ in r] for r in rows]
    aspect = [[g.box[2] / g.box[3] for g in r] for r in rows]
    # Widest line in units of the digit height; the block must fit in 85 % of the view.
    width_units = max(sum(a) + sum(gp[1:]) for a, gp in zip(aspect, gaps))
    line_gap = rng.uniform(1.35, 1.8)
    height_units = 1 + (n_lines - 1) * line_gap
    hmax = min(0.85 * vw / width_units, 0.8 * vh / height_units)
    if single:
        hmax = min(hmax, opts.max_height * vh)
        hd = rng.uniform(opts.min_height * vh, max(opts.min_height * vh, hmax))
    else:
        hd = rng.uniform(min(opts.min_height * vh, hmax), max(min(opts.min_height * vh, hmax), min(hmax, 0.3 * vh)))
    bw, bh = width_units * hd, height_units * hd
    # Keep clear of a border strip the camera might pad (up to 12 %).
    mx, my = 0.13 * vw, 0.13 * vh
    x0 = rng.uniform(vx0 + min(mx, (vw - bw) / 2), vx1 - bw - min(mx, (vw - bw) / 2))
    y0 = rng.uniform(vy0 + min(my, (vh - bh) / 2), vy1 - bh - min(my, (vh - bh) / 2))
    places = []
    for li, (r, a, gp) in enumerate(zip(rows, aspect, gaps)):
        x = x0 + rng.uniform(0, 0.3) * hd * (longest - len(r)) / max(1, longest)
        base = y0 + li * line_gap * hd
        for j, g in enumerate(r):
            if j:
                x += gp[j] * hd
            hj = hd * rng.uniform(0.92, 1.06)
            wj = a[j] * hj
            places.append((g, li, x + wj / 2, base + hd - hj / 2 + rng.uniform(-0.05, 0.05) * hd, hj))
            x += wj
    return places, (x0, y0, x0 + bw, y0 + bh), hd


def _stray(canvas: _Canvas, rng, block, hd, view, ink) -> None:
    """One mark that is not a digit: a dot, a dash, a tick, a small cross or squiggle (all
    under 40 % of the digit height), or a long underline; never touching the digits."""
    vx0, vy0, vx1, vy1 = view
    bx0, by0, bx1, by1 = block
    kind = ["dot", "dash", "tick", "cross", "squiggle", "underline"][rng.integers(6)]
    width = max(1, int(round(rng.uniform(0.06, 0.12) * hd)))
    mask = np.zeros(canvas.refl.shape[:2], np.uint8)
    size = rng.uniform(0.15, 0.4) * hd
    if kind == "underline":
        y = by1 + rng.uniform(0.3, 0.6) * hd
        x0 = bx0 + rng.uniform(-0.2, 0.2) * (bx1 - bx0)
        length = rng.uniform(0.7, 1.3) * (bx1 - bx0) + hd
        pts = [np.array([[x0, y], [x0 + length, y + rng.uniform(-0.1, 0.1) * hd]])]
    else:
        for _ in range(20):   # somewhere on the view, clear of the block by 0.3 hd
            cx, cy = rng.uniform(vx0 + 0.15 * (vx1 - vx0), vx1 - 0.15 * (vx1 - vx0)), \
                rng.uniform(vy0 + 0.15 * (vy1 - vy0), vy1 - 0.15 * (vy1 - vy0))
            if not (bx0 - 0.3 * hd - size < cx < bx1 + 0.3 * hd + size
                    and by0 - 0.3 * hd - size < cy < by1 + 0.3 * hd + size):
                break
        else:
            return
        if kind == "dot":
            cv2.circle(mask, (int(cx * 4), int(cy * 4)), int(4 * max(1.5, 0.05 * hd)), 255, -1,
                       cv2.LINE_AA, shift=2)
            pts = []
        elif kind == "dash":
            a = rng.uniform(0, math.pi)
            d = np.array([math.cos(a), math.sin(a)]) * size / 2
            pts = [np.array([[cx, cy] - d, [cx, cy] + d])]
        elif kind == "tick":
            pts = [np.array([[cx - size / 2, cy], [cx - size / 6, cy + size / 2], [cx + size / 2, cy - size / 2]])]
        elif kind == "cross":
            q = size / 2
            pts = [np.array([[cx - q, cy - q], [cx + q, cy + q]]), np.array([[cx - q, cy + q], [cx + q, cy - q]])]
        else:
            p = np.cumsum(rng.uniform(-1, 1, (6, 2)) * size / 3, axis=0)
            pts = [p - p.mean(axis=0) + [cx, cy]]
    for p in pts:
        cv2.polylines(mask, [np.round(p * 4).astype(np.int32)], False, 255, width, cv2.LINE_AA, shift=2)
    alpha = (mask.astype(np.float32) / 255.0)[..., None] * rng.uniform(0.8, 1.0)
    canvas.refl *= 1.0 - alpha * (1.0 - ink)
    canvas.tags.add("stray")


def render_scene(rows: list[list[Glyph]] | None, rng: np.random.Generator,
                 opts: SceneOptions = DEFAULT_SCENE) -> tuple[np.ndarray, dict]:
    """One BGR uint8 frame showing ``rows`` of glyphs (one line per row; ``[[g]]`` is a single
    digit; None is a scene without a digit) and its record: ``digits`` (each with ``digit``,
    ``line`` and ``box`` (x, y, w, h) in frame pixels, in reading order) and ``tags`` (the
    conditions present, a subset of :data:`TAGS`)."""
    w, h = opts.size
    mx, my = int(0.1 * w), int(0.1 * h)
    ch, cw = h + 2 * my, w + 2 * mx
    view = (mx, my, mx + w, my + h)
    canvas = _Canvas(np.empty((ch, cw, 3), np.float32), mx, my)
    single = rows is not None and len(rows) == 1 and len(rows[0]) == 1
    if rows:
        places, block, hd = _layout(rows, rng, view, single, opts)
    else:
        hd = opts.min_height * h
        cx, cy = rng.uniform(mx + 0.3 * w, mx + 0.7 * w), rng.uniform(my + 0.3 * h, my + 0.7 * h)
        places, block = [], (cx - hd / 2, cy - hd / 2, cx + hd / 2, cy + hd / 2)
    theta = rng.uniform(-0.14, 0.14)
    # Paper and desk.
    paper = np.array(PAPERS[rng.integers(len(PAPERS))], np.float32)
    canvas.refl[:] = paper * _noise_field(rng, (ch, cw), (ch // 60, cw // 60), 0.02)[..., None]
    ink_colour = np.array(INKS[rng.integers(len(INKS))], np.float32)
    kind = rng.random()
    if kind < opts.p_ruled:
        _rule(canvas, rng, theta, block, hd, "ruled")
    elif kind < opts.p_ruled + opts.p_squared:
        _rule(canvas, rng, theta, block, hd, "squared")
    record = []
    for g, line, cx, cy, gh in places:
        corners = _place_glyph(canvas, _tint(g, ink_colour), g, cx, cy, gh, theta, rng)
        record.append((g.label, line, corners))
    if rng.random() < opts.p_stray:
        _stray(canvas, rng, block, hd, view, ink_colour)
    if rng.random() < opts.p_edge:
        dist = _sheet_distance(rng, (ch, cw), view, block, theta, canvas.tags)
        if "edge" in canvas.tags:
            on = np.clip(dist + 0.5, 0.0, 1.0)[..., None]
            desk = _desk(rng, (ch, cw))
            # The sheet's own thin shadow on the desk.
            desk *= 1.0 - 0.35 * np.exp(-np.clip(-dist, 0, None) / rng.uniform(2, 6))[..., None]
            canvas.refl[:] = canvas.refl * on + desk * (1.0 - on)
    # Perspective: the view rectangle goes to the frame with its corners moved by up to 7 %.
    src = np.float32([[mx, my], [mx + w, my], [mx, my + h], [mx + w, my + h]])
    dst = (np.float32([[0, 0], [w, 0], [0, h], [w, h]])
           + rng.uniform(-0.07, 0.07, (4, 2)) * (w, h)).astype(np.float32)
    hom = cv2.getPerspectiveTransform(src, dst)
    refl = cv2.warpPerspective(canvas.refl, hom, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    digits = []
    for label, line, corners in record:
        p = cv2.perspectiveTransform(corners[None].astype(np.float64), hom)[0]
        x0, y0 = p.min(axis=0)
        x1, y1 = p.max(axis=0)
        digits.append({"digit": label, "line": line,
                       "box": [int(x0), int(y0), int(math.ceil(x1 - x0)), int(math.ceil(y1 - y0))]})
    if digits:
        bf = (min(d["box"][0] for d in digits), min(d["box"][1] for d in digits),
              max(d["box"][0] + d["box"][2] for d in digits), max(d["box"][1] + d["box"][3] for d in digits))
    else:
        bf = cv2.perspectiveTransform(np.float64([[[block[0], block[1]], [block[2], block[3]]]]), hom)[0].ravel()
    tags = canvas.tags
    light = lighting.light(rng, opts, bf, hd, tags)
    frame = refl * light[..., None] * 255.0
    if rng.random() < opts.p_glare:
        frame += lighting.glare(rng, opts.size, bf, hd)[..., None]
        tags.add("glare")
    frame = lighting.film(frame, rng, opts, tags)
    if single and digits and digits[0]["box"][3] < 0.15 * h:
        tags.add("small")
    return frame, {"digits": digits, "tags": sorted(tags)}


# -- clips -----------------------------------------------------------------------------------

def scene_rows(glyphs: list[Glyph], rng: np.random.Generator, mode: str) -> list[list[Glyph]]:
    """What one frame shows: ``mode`` "digit" (one glyph) or "number" (2-8 digits, on one line
    or two, all by one writer; digits drawn at random, leading zeros allowed as on a meter)."""
    if mode == "digit":
        return [[glyphs[int(rng.integers(len(glyphs)))]]]
    if mode != "number":
        raise UsageError(f"unknown scene mode {mode!r}; use digit or number")
    writers = sorted({g.source for g in glyphs})
    who = writers[int(rng.integers(len(writers)))]
    by_label: dict[int, list[Glyph]] = {}
    for g in glyphs:
        if g.source == who or who == "mnist":
            by_label.setdefault(g.label, []).append(g)
    for g in glyphs:   # a writer without some digit borrows another writer's
        by_label.setdefault(g.label, []).append(g)
    labels = sorted(by_label)
    n = int(rng.integers(2, 9))
    seq = [by_label[labels[int(rng.integers(len(labels)))]] for _ in range(n)]
    seq = [c[int(rng.integers(len(c)))] for c in seq]
    if n >= 3 and rng.random() < 0.4:
        cut = int(rng.integers(1, n))
        return [seq[:cut], seq[cut:]]
    return [seq]


def label_of(rows: list[list[Glyph]] | None, mode: str):
    """A frame's label: the digit (int), the number (its lines joined by a space, as
    ``device.step.FrameRecord.text``), or None."""
    if not rows:
        return None
    if mode == "digit":
        return rows[0][0].label
    return " ".join("".join(str(g.label) for g in r) for r in rows)


def make_scene_clip(out: str | Path, glyphs: list[Glyph], frames: int = 300, mode: str = "digit",
                    blank_every: int = 10, seed: int = 0, opts: SceneOptions = DEFAULT_SCENE,
                    fps: float = 30.0) -> dict:
    """Write a clip of ``frames`` scenes (every ``blank_every``-th without a digit) as MJPG
    ``.avi`` plus ``<clip>.labels.json`` (:func:`device.synth.write_clip`; ``records`` hold each
    frame's digit boxes, lines, conditions and writer).  Frame i is rendered from the generator
    seeded (seed, i): the same seed gives the same clip."""
    from device.synth import write_clip

    if not glyphs:
        raise UsageError("no glyphs to draw scenes with")

    def shots():
        for i in range(frames):
            frame, rows, rec = scene(glyphs, seed, i, mode, blank_every, opts)
            yield frame, label_of(rows, mode), rec

    meta = {"seed": seed, "mode": mode, "scene": {k: v for k, v in vars(opts).items() if k != "size"},
            "writers": sorted({g.source for g in glyphs})}
    return write_clip(out, shots(), fps=fps, size=opts.size, meta=meta)


def scene(glyphs: list[Glyph], seed: int, index: int, mode: str = "digit", blank_every: int = 10,
          opts: SceneOptions = DEFAULT_SCENE):
    """Frame ``index`` of the clip ``make_scene_clip(seed=seed, ...)`` would write:
    (BGR frame, the glyph rows or None, its record)."""
    rng = np.random.default_rng((seed, index))
    blank = blank_every and index % blank_every == blank_every - 1
    rows = None if blank else scene_rows(glyphs, rng, mode)
    frame, rec = render_scene(rows, rng, opts)
    rec["writer"] = rows[0][0].source if rows else None
    return frame, rows, rec
