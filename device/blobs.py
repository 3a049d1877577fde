"""Which blobs of ink are digits, and which blobs make up one digit.

A threshold of the ink map (``device.preprocess``) gives blobs: strokes, and also things that
are not ink at all.  The closing that estimates the paper fills every dark feature narrower
than its kernel, so the finger of a hand's shadow, the thin shadow along a sheet's edge, a
ruling, a grid line, a stray mark and a desk's grain all come out as blobs beside the digit.
A blob is judged by what it looks like, not by its size alone:

* its extent: not touching the frame's border (a desk, a padded border strip), not wider than
  a digit (an underline, a ruling), tall enough to read, not a hairline;
* its strokes: mean stroke width from area and perimeter, not a solid patch (a blot, a
  shadow's corner);
* where it ends (:func:`continues`): a piece of a longer line goes on along its axis; a finger
  of a shadow goes on into the palm as dark as itself;
* where it lies (:func:`on_step`): a blob on a step of the paper level and no darker than the
  shadowed side of it is the step (a shadow's or the sheet's edge), not ink.

A large blob that fails only for its extent may be a digit joined to a faint ruling or the
sheet's edge: it is cut again at half its own ink level, where paler lines fall away; and
where rulings as pale as the digit run through it (a hairline pen's), without the rulings
(:func:`unruled`: thin, straight and long).  A digit is then a digit-like blob plus the pieces
that share its columns (a 4's second stroke, a 5's flag, a stroke cut by a ruling), and, for a
pale seed, the pieces paler ink joins to it (:class:`_Bridges`: a hairline 0 whose top and
bottom fell under the threshold).

Blobs are judged lazily, tallest first, so a frame with one digit judges one or two of them;
plain Python on a handful of tuples beats numpy's per-call overhead at these sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import cv2

K3 = np.ones((3, 3), np.uint8)


@dataclass(eq=False, slots=True)
class Blob:
    """A connected ink region of one level (coordinates in that level's pixels)."""
    x: int
    y: int
    w: int
    h: int
    contour: np.ndarray
    thr: int                      # the ink threshold it was cut at
    im: object                    # the level's InkMap
    holes: list = field(default_factory=list)
    area: int = 0                 # ink pixels            } filled in by measure()
    stroke: float = 0.0           # mean stroke width, px }
    contrast: float = -1.0        # mean ink (0-255)      }
    why: str | None = None        # None: not judged; "": digit-like; else the reason not
    later: bool = False           # measured, its shape not judged yet (assess's ``seed``)
    _mask: np.ndarray | None = None
    cut: np.ndarray | None = None  # the whole level's ink above ``thr``, when it was cut from that

    def mask(self) -> np.ndarray:
        """0/255 over the box: the filled contour where the ink reaches the threshold."""
        if self._mask is None:
            filled = np.zeros((self.h, self.w), np.uint8)
            # fillPoly fills one outline exactly as drawContours(..., cv2.FILLED) does (the same
            # edge collection and scan), with less set-up; positional: keywords cost.
            cv2.fillPoly(filled, (self.contour,), 255, cv2.LINE_8, 0, (-self.x, -self.y))
            if self.cut is not None:
                cut = self.cut[self.y:self.y + self.h, self.x:self.x + self.w]
            else:
                _, cut = cv2.threshold(self.im.ink[self.y:self.y + self.h, self.x:self.x + self.w],
                                       self.thr, 255, cv2.THRESH_BINARY)
            self._mask = cv2.bitwise_and(filled, cut)
        return self._mask

    def measure(self) -> None:
        if self.contrast >= 0:
            return
        mask = self.mask()
        self.area = cv2.countNonZero(mask)
        # A stroke of width s and length l has an area of s*l and a perimeter (outline and
        # holes) of about 2*l.
        perim = cv2.arcLength(self.contour, True)
        if self.holes:   # (most blobs have none: no generator to set up)
            perim += sum(cv2.arcLength(c, True) for c in self.holes)
        self.stroke = 2.0 * self.area / max(perim, 1.0)
        self.contrast = cv2.mean(self.im.ink[self.y:self.y + self.h, self.x:self.x + self.w], mask)[0]

    def frame_box(self) -> tuple[float, float, float, float]:
        s = self.im.scale
        return self.x / s, self.y / s, (self.x + self.w) / s, (self.y + self.h) / s


def blobs_of(im, thr: int, binary: np.ndarray | None = None, ox: int = 0, oy: int = 0) -> list[Blob]:
    """The outer contours of ``binary`` (default: the level's ink >= ``thr``) as unjudged
    blobs, their holes attached."""
    cut = None
    if binary is None:
        _, binary = cv2.threshold(im.ink, thr, 255, cv2.THRESH_BINARY)
        cut = binary   # findContours leaves it as it is: the blobs' masks start from it
    contours, hier = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, None, None, (ox, oy))
    if not contours:
        return []
    out: dict[int, Blob] = {}
    holes = []
    for i, (c, parent) in enumerate(zip(contours, hier[0][:, 3].tolist())):
        if parent >= 0:
            holes.append((parent, c))
        elif len(c) > 2:   # one or two points: a speck of noise, never part of a digit
            x, y, w, h = cv2.boundingRect(c)
            if w > 2 or h > 2:
                out[i] = Blob(x, y, w, h, c, thr, im, cut=cut)
    for parent, c in holes:
        if parent in out:
            out[parent].holes.append(c)
    return list(out.values())


def joined(im, thr: int, parts: list[Blob], canvas: np.ndarray, outline: np.ndarray, ox: int, oy: int,
           least: float) -> list[Blob]:
    """Blobs of pieces bridged into one: ``outline`` (the pieces' masks dilated, on a canvas at
    ``ox, oy`` of the level) gives each its outline; its ink is the pieces' pixels inside it
    (``canvas``), boxed tightly, kept when at least ``least`` high.  Its contour (for the shape
    tests: its axis) is the hull of that ink, not the dilated outline; its stroke width is the
    pieces' own (the dilated outline is longer)."""
    perim = {id(b): cv2.arcLength(b.contour, True) + sum(cv2.arcLength(c, True) for c in b.holes) for b in parts}
    out = []
    for n in blobs_of(im, thr, outline, ox, oy):
        inside = np.zeros((n.h, n.w), np.uint8)
        cv2.fillPoly(inside, (n.contour,), 255, cv2.LINE_8, 0, (-n.x, -n.y))
        ink = cv2.bitwise_and(canvas[n.y - oy:n.y - oy + n.h, n.x - ox:n.x - ox + n.w], inside)
        bx, by, bw, bh = cv2.boundingRect(ink)
        if bh < least:
            continue
        n.x, n.y, n.w, n.h = n.x + bx, n.y + by, bw, bh
        n._mask = ink[by:by + bh, bx:bx + bw]
        n.contour = cv2.convexHull(cv2.findNonZero(n._mask) + np.array([n.x, n.y], np.int32))
        n.measure()
        pieces = [b for b in parts if n.x <= b.x and b.x + b.w <= n.x + n.w and n.y <= b.y and b.y + b.h <= n.y + n.h]
        n.stroke = 2.0 * n.area / max(sum(perim[id(b)] for b in pieces), 1.0)
        out.append(n)
    return out


_RECUT = ("touches the border", "wide", "too tall")


# A ruling through a blob: ink under RULE_RUN px thick (along the level's columns) across at
# least RULE_LONG of the level's width (a digit's bar is far shorter).  Its cut replaces the
# level's recut when the tallest digit-like piece it leaves is RULE_TALLER x the recut's.
RULE_LONG = 0.4
RULE_RUN = 4
RULE_TALLER = 1.5
_RULE_K = np.ones((RULE_RUN, 1), np.uint8)


def unruled(b: Blob) -> np.ndarray | None:
    """``b``'s mask without the rulings through it, or None when none runs through it.  A
    hairline pen's digit is as pale as the ruling it touches, so no threshold parts them; but
    a ruling is straight, thin and long.  Each thin piece at least RULE_LONG of the level wide
    is fitted by a line (least squares of its rows on its columns, in integers and IEEE
    divisions: the same pixels on every CPU), and the thin ink within a pixel of that line goes
    across the whole blob, also where digits cut the ruling into shorter pieces.  A stroke
    crossing the ruling keeps its pixels there (it is thicker than RULE_RUN along the columns).
    (A squared sheet's upright lines, taken out the same way, cost more digits than they gave.)"""
    W = b.im.ink.shape[1]
    m = b.mask()
    thin = cv2.subtract(m, cv2.morphologyEx(m, cv2.MORPH_OPEN, _RULE_K))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(thin, None, 8)
    # A line: long (two columns at least, for a slope), about as many pixels as columns (a
    # ruling is 1-3 px thick) and no taller than a sheet's tilt allows; grain's thin pieces
    # branch and wander (and are many: they are picked in one numpy pass).
    w, h, area = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
    long = (w >= max(2, RULE_LONG * W)) & (area <= 3 * w) & (h <= 0.3 * w + RULE_RUN)
    long[0] = False   # (the background)
    lines = None
    for i in np.flatnonzero(long).tolist():
        xy = cv2.findNonZero(cv2.compare(labels, i, cv2.CMP_EQ)).reshape(-1, 2).astype(np.int64)
        k = len(xy)
        sx, sy = int(xy[:, 0].sum()), int(xy[:, 1].sum())
        sxx, sxy = int((xy[:, 0] * xy[:, 0]).sum()), int((xy[:, 0] * xy[:, 1]).sum())
        slope = (k * sxy - sx * sy) / (k * sxx - sx * sx)   # (the divisor > 0: two columns or more)
        ends = [(x, int(round(sy / k + slope * (x - sx / k)))) for x in (0, b.w - 1)]
        if lines is None:
            lines = np.zeros_like(m)
        cv2.line(lines, ends[0], ends[1], 255, 3)
    if lines is None:
        return None
    return cv2.subtract(m, cv2.bitwise_and(lines, thin))


def extent(b: Blob, W: int, H: int, opts) -> str:
    """What the box alone rules out ("" when nothing)."""
    if b.x == 0 or b.y == 0 or b.x + b.w == W or b.y + b.h == H:
        return "touches the border"
    if b.h > opts.max_height * H:
        return "too tall"
    if b.w > 2.0 * b.h:
        return "wide"
    if b.h < opts.min_height * H:
        return "too low"
    if b.h > 14 * max(b.w, 1):
        return "thin"
    return ""


def _judged(b: Blob, thr: float, binary: np.ndarray, pool: list[Blob], opts) -> list[Blob]:
    """The digit-like blobs of ``binary`` (over ``b``'s box, cut at ``thr``), tallest first;
    every blob of it joins ``pool`` as a possible piece."""
    parts = blobs_of(b.im, thr, binary, b.x, b.y)
    pool.extend(parts)
    return [d for p in sorted(parts, key=lambda p: -p.h) for d in assess(p, pool, opts, False)]


def assess(b: Blob, pool: list[Blob], opts, recut: bool = True, seed=None) -> list[Blob]:
    """The digit-like blobs ``b`` yields: [b], none, or (for a large blob joined to fainter
    lines) the digit-like blobs of its recut, which also join ``pool`` as possible pieces.
    ``seed``: what the caller keeps of them (a test of a measured blob); a blob itself (not
    recut) that fails it is not judged further here (``later``: :func:`grow` judges it if it
    ever could join a digit), which spares the shape tests of level 1's thin digits."""
    H, W = b.im.ink.shape
    b.why = extent(b, W, H, opts)
    # Broader than a digit (but not a strip): perhaps a digit joined to a ruling, an underline
    # or a shadow's fringe; recut, and judged whole unless the recut leaves a digit about as
    # tall (not a fragment of a broad digit, nor a sliver of a shadow).
    broad = not b.why and b.w > 1.25 * b.h
    if (b.why in _RECUT or broad) and recut and b.h >= opts.min_height * H:
        b.measure()
        peak = cv2.minMaxLoc(b.im.ink[b.y:b.y + b.h, b.x:b.x + b.w], b.mask())[1]
        found = None
        if peak >= 2 * b.thr:
            sub = int(max(b.thr + 12, 0.5 * peak))
            _, roi = cv2.threshold(b.im.ink[b.y:b.y + b.h, b.x:b.x + b.w], sub, 255, cv2.THRESH_BINARY)
            cut = _judged(b, sub, cv2.bitwise_and(roi, b.mask()), pool, opts)
            if not broad or (cut and cut[0].h >= 0.7 * b.h):
                found = cut
        if b.w >= RULE_LONG * W:
            keep = unruled(b)
            if keep is not None:
                cut = _judged(b, b.thr, keep, pool, opts)
                if cut and (not found or cut[0].h >= RULE_TALLER * found[0].h):
                    b.why = b.why or "ruled"
                    return cut
        if found is not None:
            b.why = b.why or "recut"
            return found
    if b.why:
        return []
    b.measure()
    if b.stroke > 0.42 * b.h:
        b.why = "solid"
    elif seed is not None and not seed(b):
        b.why, b.later = None, True
        return []
    else:
        b.why = continues(b) or on_step(b)
    return [] if b.why else [b]


# A hard shadow's or the sheet's edge changes the paper level by STEEP_EDGE (0-255 of the
# level) or more per pixel (its morphological gradient); spots, gradients and vignetting by a
# few percent.
STEEP_EDGE = 40


def _edge_floor(edge: int) -> np.ndarray:
    """Per paper level p, the steepest gradient g that is not an edge: round(255 g / p) (ties
    to even, as x86's ``cv2.divide``, 0 where p is 0) at most ``edge``.  The test is then a
    lookup and an integer comparison, the same on every CPU (``cv2.divide`` rounds differently
    on aarch64)."""
    g, p = np.arange(256)[:, None], np.arange(1, 256)[None, :]
    q, r = np.divmod(255 * g, p)
    rounded = q + ((2 * r > p) | ((2 * r == p) & (q % 2 == 1)))
    return np.concatenate([[255], (rounded <= edge).sum(axis=0) - 1]).astype(np.uint8)


_EDGE_FLOOR = _edge_floor(STEEP_EDGE)


def steep(paper: np.ndarray) -> np.ndarray:
    """0/255: where the paper level ``paper`` steps by an edge's gradient or more."""
    return cv2.compare(cv2.morphologyEx(paper, cv2.MORPH_GRADIENT, K3), cv2.LUT(paper, _EDGE_FLOOR), cv2.CMP_GT)


# A blob with at least STEP_SHARE of its ink on (or a pixel from) a steep step of the paper
# level, and no pixel darker than STEP_DARK x the darkest paper beside it, is that step: the
# thin dark line along a sheet's edge, a shadow's penumbra where a finger's tip crosses the
# sheet's edge or a ruling.  Ink is darker than the paper on either side of a step it crosses,
# and a digit that a shadow's edge crosses has most of its ink away from the edge.  (Chosen on
# generated blank and digit scenes with most frames shadowed, and on the scene clips: 44 -> 22
# of 300 hostile blank frames read a digit, the benchmark's blank scenes 388 -> 393 of 400.)
STEP_SHARE = 0.6
STEP_DARK = 0.5


def on_step(b: Blob) -> str:
    """"on a step" when ``b`` is an edge of the paper level rather than ink, else ""."""
    im = b.im
    H, W = im.paper.shape
    x0, y0, x1, y1 = max(0, b.x - 2), max(0, b.y - 2), min(W, b.x + b.w + 2), min(H, b.y + b.h + 2)
    paper = im.paper[y0:y1, x0:x1]
    lo, hi = cv2.minMaxLoc(paper)[:2]
    if 255 * (hi - lo) <= STEEP_EDGE * lo:
        return ""   # no step anywhere near (half the digits: no steepness map of the level)
    near = im.near_step()[b.y:b.y + b.h, b.x:b.x + b.w]
    # (The box's count bounds the ink's: most blobs are decided without the masking.)
    if cv2.countNonZero(near) < STEP_SHARE * b.area or \
            cv2.countNonZero(cv2.bitwise_and(b.mask(), near)) < STEP_SHARE * b.area:
        return ""
    darkest = cv2.minMaxLoc(im.gray[b.y:b.y + b.h, b.x:b.x + b.w], b.mask())[0]
    return "on a step" if darkest >= STEP_DARK * lo else ""


_BEYOND = (0.62, 0.72, 0.82, 0.92)   # sample points past a blob's ends, in lengths from its centre


def continues(b: Blob) -> str:
    """"" when ``b`` ends where it seems to, else what it is a part of.

    A long thin piece of a paper edge, a ruling or a grid line goes on as ink along its axis,
    where a stroke's end meets paper.  The finger of a hand's shadow is as dark as the palm it
    grows from, so the region of the blob's darkest gray level, flooded from its darkest pixel,
    spreads far beyond the blob; ink is darker than the paper around it, lit or shadowed, and
    its flood stays inside the stroke."""
    im = b.im
    H, W = im.ink.shape
    (cx, cy), (rw, rh), ang = cv2.minAreaRect(b.contour)
    if max(rw, rh) >= 3.5 * max(min(rw, rh), 1.0):
        length = max(rw, rh)
        a = np.deg2rad(ang if rw >= rh else ang + 90.0)
        ux, uy = float(np.cos(a)), float(np.sin(a))
        for sign in (1.0, -1.0):
            n = hits = 0
            for t in _BEYOND:
                px, py = int(round(cx + sign * t * length * ux)), int(round(cy + sign * t * length * uy))
                if 0 <= px < W and 0 <= py < H:
                    n += 1
                    # (cv2.minMaxLoc: a third of numpy's max on so few pixels)
                    hits += cv2.minMaxLoc(im.ink[max(0, py - 1):py + 2, max(0, px - 1):px + 2])[1] >= 0.4 * b.contrast
            if n >= 3 and hits >= n - 1:
                return "part of a line"
    # The flood follows gentle changes (a shadow's light gradient) but does not climb to the
    # paper: pixels much brighter than the seed are walls.  It looks around the blob only as
    # far as a palm would be.
    x0, y0 = max(0, b.x - b.w - 2), max(0, b.y - b.h - 2)
    x1, y1 = min(W, b.x + 2 * b.w + 2), min(H, b.y + 2 * b.h + 2)
    gray = im.gray[y0:y1, x0:x1]
    lo, _, (mx, my), _ = cv2.minMaxLoc(im.gray[b.y:b.y + b.h, b.x:b.x + b.w], b.mask())
    paper = int(im.paper[b.y + my, b.x + mx])
    _, dark = cv2.threshold(gray, min(1.6 * lo + 6, 0.5 * (lo + paper)), 255, cv2.THRESH_BINARY_INV)
    # The flood covers some of the dark pixels: when all of them are too few for a shadow's,
    # there is nothing to flood (most blobs of a number: a count costs a fraction of a fill).
    # A hand whose palm is out of view leaves no palm to outweigh its fingers: by the frame's
    # border, a flood that reaches the border and is larger than the blob is a shadow's.
    by_border = x0 == 0 or y0 == 0 or x1 == W or y1 == H
    if cv2.countNonZero(dark) <= (1.0 if by_border else 2.0) * b.area + 10:
        return ""
    flood = np.zeros((y1 - y0 + 2, x1 - x0 + 2), np.uint8)
    area, _, _, (fx, fy, fw, fh) = cv2.floodFill(dark, flood, (b.x - x0 + mx, b.y - y0 + my), 128, 0, 0,
                                                 4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8))
    # A pale wide stroke floods its own interior (more than the ring level 0 saw of it) but
    # stays inside its box; a shadow goes on beyond it.
    m = max(2.0, 0.25 * max(b.w, b.h))
    fx, fy = fx + x0, fy + y0
    escapes = fx < b.x - m or fy < b.y - m or fx + fw > b.x + b.w + m or fy + fh > b.y + b.h + m
    if escapes and area > 2.0 * b.area + 10:
        return "part of a shadow"
    # (The blob itself never touches the border: extent() ruled that out.)
    out_of_view = fx == 0 or fy == 0 or fx + fw == W or fy + fh == H
    return "part of a shadow" if out_of_view and area > b.area + 10 else ""


@dataclass(eq=False)
class Digit:
    """One digit: its blobs at one level and their box in that level's pixels."""
    parts: list[Blob]
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def im(self):
        return self.parts[0].im

    @property
    def seed(self) -> Blob:
        return self.parts[0]

    def frame_box(self) -> tuple[float, float, float, float]:
        s = self.im.scale
        return self.x0 / s, self.y0 / s, self.x1 / s, self.y1 / s

    def mask(self) -> np.ndarray:
        """0/255 over the digit's box: the strokes of its parts."""
        if len(self.parts) == 1:
            return self.parts[0].mask()
        out = np.zeros((self.y1 - self.y0, self.x1 - self.x0), np.uint8)
        for b in self.parts:
            sub = out[b.y - self.y0:b.y - self.y0 + b.h, b.x - self.x0:b.x - self.x0 + b.w]
            cv2.bitwise_or(sub, b.mask(), dst=sub)
        return out


_NEVER_PART = ("touches the border", "too tall", "part of a shadow")


def grow(seed: Blob, pool: list[Blob], taken: set[int], opts, alone: bool = False, tall: float = 0.0) -> Digit:
    """The digit around ``seed``: blobs of the pool sharing its columns (a 4's second stroke, a
    5's flag, the loop of a 6 cut off by a ruling), close above or below, about as dark as
    the seed's ink (a ruling or a grid line is paler), and all together still digit-shaped and
    not much taller than the seed (not an underline, not the digit beside or below).
    ``alone``: the frame holds one digit, so a stroke just beside the seed joins too (an open
    4 whose bar stops short of its stem); among several digits that would be the next one.
    ``tall``: the height of the digits around (a number's), which a digit of two pieces
    reaches when whole (an 8 in two halves, a 5 whose flag came off)."""
    d = Digit([seed], seed.x, seed.y, seed.x + seed.w, seed.y + seed.h)
    H, W = seed.im.ink.shape
    taken.add(id(seed))
    # Only blobs within reach can join: the union may not grow past 1.4x the seed's height,
    # nor past the digits' height around it.
    limit = max(1.4 * seed.h, 1.15 * tall)
    reach, least = limit - seed.h, max(2, 0.12 * seed.h)
    x0, y0, x1, y1 = seed.x - seed.h, seed.y - reach, seed.x + seed.w + seed.h, seed.y + seed.h + reach
    near = [b for b in pool if b.x < x1 and b.x + b.w > x0 and b.y < y1 and b.y + b.h > y0
            and (b.w >= least or b.h >= least) and id(b) not in taken]
    bridges = None
    grown = True
    while grown:
        grown = False
        for b in near:
            if id(b) in taken:
                continue
            if b.later:   # (extent and solidity passed in assess)
                b.why, b.later = continues(b) or on_step(b), False
            why = b.why if b.why is not None else extent(b, W, H, opts)
            if why in _NEVER_PART or (why == "wide" and b.w > 1.4 * seed.w):   # an underline
                continue
            dw, dh = d.x1 - d.x0, d.y1 - d.y0
            shared = min(b.x + b.w, d.x1) - max(b.x, d.x0)
            # A flat piece on top (a 5's flag, a 7's bar) may overhang more than half its width.
            flag = b.h <= 0.35 * dh and b.y + b.h <= d.y0 + 0.3 * dh
            # Beside the seed (alone): a stroke of the digit, not a speck and not taller than it.
            beside = min(b.y + b.h, d.y1) - max(b.y, d.y0) >= 0.5 * b.h
            part = b
            if (shared < max(1, (0.25 if flag else 0.5) * min(b.w, dw)) and not (
                    alone and shared > -0.25 * seed.h and beside and max(b.w, b.h) >= 0.4 * seed.h and b.h <= seed.h)
                    and not (not alone and _arm(b, seed))
                    or max(b.y - d.y1, d.y0 - (b.y + b.h)) > 0.25 * max(b.h, dh)):
                bridges = bridges or _Bridges(seed, (x0, y0, x1, y1))
                part = bridges.joining(b)
                if part is None:
                    continue
            uw = max(part.x + part.w, d.x1) - min(part.x, d.x0)
            uh = max(part.y + part.h, d.y1) - min(part.y, d.y0)
            if uw > 1.25 * uh or uh > limit:
                continue
            b.measure()
            if b.contrast < 0.35 * seed.contrast:
                continue
            d.parts.append(part)
            d.x0, d.y0 = min(d.x0, part.x), min(d.y0, part.y)
            d.x1, d.y1 = max(d.x1, part.x + part.w), max(d.y1, part.y + part.h)
            taken.add(id(b))
            grown = True
    return d


BRIDGE = 0.5
BRIDGE_HALF = 0.5
BRIDGE_FILL = 0.35
BRIDGE_PALE = 2.0


class _Bridges:
    """The paler ink around a seed, which may join a piece to it: the 8-connected pieces of the
    ink at BRIDGE x the seed's mean ink (at least BRIDGE_HALF x the threshold) in ``window`` (the
    reach of :func:`grow`), cut once when a piece first asks.  A hairline digit under motion
    blur or in dim light falls apart at the threshold (a 0 into its two sides, a 4 into its
    stem and its arm); the piece of paler ink holding both is the digit whole.  Where that paler
    ink covers more than BRIDGE_FILL of the window it is grain, and joins nothing."""

    def __init__(self, seed: Blob, window):
        self.seed, self.window, self.labels = seed, window, None

    def joining(self, b: Blob) -> Blob | None:
        """The paler piece holding ``b`` and the seed, as a blob (cut at the paler level), or None."""
        seed, im = self.seed, self.seed.im
        if self.labels is None:
            seed.measure()
            if seed.contrast > BRIDGE_PALE * seed.thr:
                self.labels = False
                return None
            H, W = im.ink.shape
            x0, y0, x1, y1 = (int(v) for v in self.window)
            self.x0, self.y0 = x0, y0 = max(0, x0), max(0, y0)
            x1, y1 = min(W, x1), min(H, y1)
            self.thr = max(BRIDGE_HALF * seed.thr, BRIDGE * seed.contrast)
            low = cv2.threshold(im.ink[y0:y1, x0:x1], self.thr, 255, cv2.THRESH_BINARY)[1]
            if cv2.countNonZero(low) > BRIDGE_FILL * low.size:
                self.labels = False
            else:
                self.labels = cv2.connectedComponents(low, None, 8)[1]
                sx, sy = seed.contour[0][0]
                self.a = self.labels[sy - y0, sx - x0] if (0 <= sy - y0 < y1 - y0 and 0 <= sx - x0 < x1 - x0) else 0
        if self.labels is False or not self.a:
            return None
        bx, by = b.contour[0][0]
        h, w = self.labels.shape
        if not (0 <= by - self.y0 < h and 0 <= bx - self.x0 < w) or self.labels[by - self.y0, bx - self.x0] != self.a:
            return None
        found = blobs_of(im, self.thr, cv2.compare(self.labels, int(self.a), cv2.CMP_EQ), self.x0, self.y0)
        return max(found, key=lambda c: c.w * c.h) if found else None


def _arm(b: Blob, seed: Blob) -> bool:
    """Is ``b`` the arm of an open 4 whose stem is ``seed``: left of the stem and close to
    it, in its upper part, clear of the line's baseline, and the two together no wider than
    the stem is tall (a neighbouring digit reaches the baseline, or makes the pair wide)."""
    return (b.x < seed.x and b.x + b.w > seed.x - 0.15 * seed.h and b.y < seed.y + 0.5 * seed.h
            and b.y + b.h <= seed.y + 0.75 * seed.h and b.h <= 0.8 * seed.h and b.w >= 0.4 * b.h
            and max(b.w, b.h) >= 0.3 * seed.h and seed.x + seed.w - b.x <= 0.95 * seed.h)


# Part of a number in a shadow's soft edge or a dim corner is paler than the rest of it: with
# every digit wanted, a digit-like blob paler than the seed bar joins when it sits in line with
# one of two or more digits (sharing half its rows, at most a digit's height away, at least
# half as tall), unless the digits' median stroke is under PALE_STROKE px: a fine pen's digits
# go to the closer look (device.levels.fine_digits), which these would pre-empt.
PALE_STROKE = 1.6


def _in_line(p: Blob, s: Blob) -> bool:
    shared = min(p.y + p.h, s.y + s.h) - max(p.y, s.y)
    gap = max(p.x - (s.x + s.w), s.x - (p.x + p.w))
    return shared >= 0.5 * min(p.h, s.h) and gap <= max(p.h, s.h) and p.h >= 0.5 * s.h


# A digit's seed blob: its mean ink at least this many times opts.min_contrast (a faint blob
# joins a digit as a piece, but does not start one).
SEED_CONTRAST = 1.5
# ... and at least GRAIN_SEED times the median ink of the ring around it (its box padded by
# GRAIN_PAD x its height, the box left out) and of its whole level: a seed stands out of the
# grain around it and in the frame (a small seed's ring is a few dozen pixels).  Sensor
# noise is ink by ratio too, most of all on a dark desk and in shadows (the ink map divides by
# the paper's level), and a frame of noise (a covered lens at a high gain, static, a hostile
# input) is nothing else: a clump of it cut at the threshold passed for a digit in 56 of 60
# frames of uniform noise, and in 107 of 400 blank scene frames with Gaussian noise of sigma 6
# added to the decoded frames (benchmarks/scenes.py "noise"; now 0 and 60).  No digit of the scene clips
# (noise-free but for the generator's dim light) was read otherwise at 2.5; at 3, one number
# was lost.
GRAIN_SEED = 2.5
GRAIN_PAD = 0.5


def stands_out(s: Blob) -> bool:
    """Is ``s``'s mean ink at least GRAIN_SEED x the median ink of its level and of the ring
    around it?  The ring's exactly: fewer than half its pixels reach contrast / GRAIN_SEED,
    counted in the padded box, which bounds the ring's count (most seeds are decided there),
    then without the box."""
    if s.contrast < GRAIN_SEED * s.im.median():
        return False
    ink = s.im.ink
    H, W = ink.shape
    m = max(2, int(GRAIN_PAD * s.h))
    x0, y0, x1, y1 = max(0, s.x - m), max(0, s.y - m), min(W, s.x + s.w + m), min(H, s.y + s.h + m)
    ring = (x1 - x0) * (y1 - y0) - s.w * s.h
    level = math.ceil(s.contrast / GRAIN_SEED) - 1   # ink above it: ink >= contrast / GRAIN_SEED
    above = cv2.countNonZero(cv2.threshold(ink[y0:y1, x0:x1], level, 255, cv2.THRESH_BINARY)[1])
    if 2 * above < ring:
        return True
    inside = cv2.countNonZero(cv2.threshold(ink[s.y:s.y + s.h, s.x:s.x + s.w], level, 255, cv2.THRESH_BINARY)[1])
    return 2 * (above - inside) < ring


def digits_at(im, opts, every: bool, thick: bool = False,
              seed_contrast: float = SEED_CONTRAST, grain: bool = True) -> tuple[list[Digit], bool]:
    """(the digits of one level, whether a dark blob was turned down as solid or as a shadow).
    ``every``: all digits; else stop at the tallest.  ``thick``: only digits of thick dark
    strokes (what level 1 is for).  ``seed_contrast``: a digit's seed blob's mean ink must be at
    least this many times ``opts.min_contrast``, and (``grain``) stand out of the grain around
    it (:func:`stands_out`; the closer looks have grain gates of their own).  The flag tells the
    caller that a stroke too wide for this level's kernel may be there: its interior is not ink
    at this level, so its edges look like a blot or a shadow's fringe (with ``thick``, only blobs
    that could be seeds are looked at for shadows)."""
    H = im.ink.shape[0]
    if int(im.ink.max()) < opts.min_contrast:
        return [], False
    pool = im.blobs(opts.min_contrast)
    order = sorted((b for b in pool if max(b.w, b.h) >= opts.min_height * H), key=lambda b: -b.h)
    seeds: list[Blob] = []
    pale: list[Blob] = []   # digit-like but paler than a seed: kept if in line with digits
    dark_refused = False
    least = seed_contrast * opts.min_contrast

    def thick_seed(s: Blob) -> bool:
        return s.contrast >= max(least, opts.thick_contrast) and 2.5 <= s.stroke <= 0.3 * s.h and s.h >= 1.3 * im.k

    for b in order:
        if not every and seeds and b.h < seeds[0].h:
            break
        # (With ``thick``, a thin or pale blob is no seed whatever its shape: its shape is
        # judged only if it might join a thick digit.)
        for s in assess(b, pool, opts, seed=thick_seed if thick else None):
            if every and not thick and s.contrast < least:
                pale.append(s)
            if s.contrast < least or (thick and not thick_seed(s)) or (grain and not stands_out(s)):
                continue
            seeds.append(s)
        seeds.sort(key=lambda s: -s.h)
        dark_refused |= b.why in ("solid", "part of a shadow") and b.contrast >= opts.thick_contrast
    # (At seed_contrast 1, the closer look's, nothing is pale: a blob's mean ink is at least
    # the threshold it was cut at.)
    if pale and len(seeds) >= 2 and sorted(s.stroke for s in seeds)[len(seeds) // 2] >= PALE_STROKE:
        seeds += [p for p in pale if any(_in_line(p, s) for s in seeds)]
        seeds.sort(key=lambda s: -s.h)
    taken: set[int] = set()
    tall = seeds[len(seeds) // 2].h if every and len(seeds) >= 3 else 0.0
    return [grow(s, pool, taken, opts, alone=not every, tall=tall) for s in seeds if id(s) not in taken], dark_refused
