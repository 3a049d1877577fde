"""Camera frame -> MNIST-style model inputs.

MNIST digits are white on black, size-normalised into a 20x20 box (aspect kept) and centred by
centre of mass in 28x28.  A camera sees dark ink (black, blue or red) on lit paper, under
uneven light, hard shadows, beside the paper's edge and the desk, on ruled or squared paper,
next to other marks, at any size and position.  The steps, each a function a test can call:

1. ``ink_map``: a small grayscale working copy (halved until near ``work_size``); "ink" = how
   much darker a pixel is than the paper around it, as a fraction of that paper's brightness.
   The paper level is a morphological closing wider than a stroke: it fills strokes but keeps
   a step (a shadow's or the paper's edge) where it is, so a hard shadow edge is not ink, and
   the ratio makes ink in a shadow as strong as ink in the light.
2. ``find_blobs``: threshold, outer contours, and for each blob large enough to be a digit its
   shape: height, aspect, stroke width, contrast, whether it touches the frame's border.
   ``digit_like`` says which blobs can be digits: not a long strip, not a solid patch (a
   shadow's corner, a blot), not a ruled line, not a fragment of a larger shadow.
3. ``find_digit`` (one digit: the tallest digit-like blob and the pieces that belong to it) or
   ``find_digits`` (every digit, grouped into lines in reading order).
4. ``to_mnist``: crop, scale the ink into [0, 1], fit the longer side into 20 px, and place
   the centre of mass at the centre of 28x28.

Everything runs at the working size, so a 640x480 frame costs about the same as a 160x120 one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import cv2  # OpenCV is a device dependency; only the preprocessing and the sources need it

# The images here are tiny (<= 192 px): OpenCV's worker threads cost more in hand-offs than they
# save, and on a Pi the cores belong to the interpreter.
cv2.setNumThreads(1)


@dataclass(frozen=True)
class PreprocessOptions:
    work_size: int = 128        # target longest side of the working copy, pixels
    min_contrast: int = 40      # ink must be this much darker than its paper (0-255 of the paper)
    min_height: float = 0.07    # smallest digit, as a fraction of the frame height
    thick_contrast: int = 110   # thick strokes (seen at level 1 only) must be this dark
    max_height: float = 0.95
    box: int = 20               # MNIST's size-normalisation box
    size: int = 28              # model input side


@dataclass
class Prepared:
    """The model input (float32 28x28 in [0, 1]) or None when no digit was found, the digit's
    region in frame coordinates (x, y, w, h), why there is none, and (for several digits) the
    digit's line, 0 = top."""
    image: np.ndarray | None
    region: tuple[int, int, int, int] | None
    reason: str = ""
    line: int = 0


DEFAULT = PreprocessOptions()
_K3 = np.ones((3, 3), np.uint8)
_K5 = np.ones((5, 5), np.uint8)


@dataclass
class InkMap:
    """One level of the ink pyramid."""
    ink: np.ndarray      # uint8, 255 = black ink on its paper
    gray: np.ndarray     # the working copy at this level
    paper: np.ndarray    # its paper level
    scale: float         # this level's size / frame size


def working_copy(frame: np.ndarray, opts: PreprocessOptions = DEFAULT) -> tuple[np.ndarray, float]:
    """(gray uint8 near ``work_size``, scale working/frame).  ``frame``: gray or BGR(A)."""
    small, scale = frame, 1.0
    if small.ndim == 3:
        if max(small.shape[:2]) > opts.work_size * 3:
            # A large colour frame: take every other pixel of the green channel in one strided
            # copy.  Every full-frame pass costs ~150 us on a 640x480 frame here (memory
            # bound), and this one pass replaces a colour conversion plus a halving.  Green
            # carries most of the luma; black, blue and red ink are all dark in it, and
            # strokes are several pixels wide at this size, so the decimation loses none.
            small = np.ascontiguousarray(small[::2, ::2, 1])
            scale = 0.5
        else:
            small = cv2.cvtColor(small, cv2.COLOR_BGRA2GRAY if small.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    # Halve with area averaging until the longer side is at most 1.5x work_size: OpenCV's area
    # resize is several times faster for an exact factor of 2 than for 4 or an odd ratio, and
    # the region maps back to the frame by a power of two.
    while max(small.shape[:2]) > opts.work_size * 1.5:
        small = cv2.resize(small, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        scale *= 0.5
    return small, scale


def ink_map(gray: np.ndarray, k: int, scale: float = 1.0) -> InkMap:
    """Ink of ``gray`` against a paper level estimated by a ``k``x``k`` closing."""
    # The paper's brightness: a closing (max then min filter) wider than the strokes.  It fills
    # strokes and keeps steps in place, unlike a max filter alone, which would spread the lit
    # side of a shadow's edge over the dark side and make a band of false ink there.
    paper = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    # Ink as a fraction of the paper's level: a stroke in a shadow is as strong as in the light.
    # The floor keeps a dark desk's texture (paper level near 0) from being amplified to ink.
    ink = cv2.divide(cv2.subtract(paper, gray), cv2.max(paper, 40), scale=255)
    return InkMap(ink, gray, paper, scale)


def ink_levels(frame: np.ndarray, opts: PreprocessOptions = DEFAULT) -> list[InkMap]:
    """The two levels digits are looked for at.  A closing fills every dark feature narrower
    than its kernel, the finger of a hand's shadow as well as a stroke, so one kernel wide
    enough for a large digit's marker strokes would turn the fingers beside a small digit into
    ink.  Level 0 (the working copy, a kernel for strokes up to ~8 px) sees small and thin
    digits and not the fingers around them; level 1 (half size, a kernel for strokes up to ~20
    working pixels) sees large, thick digits, whose hands' fingers are wider still."""
    small, scale = working_copy(frame, opts)
    side = max(small.shape)
    half = cv2.resize(small, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    return [ink_map(small, max(5, (side // 18) | 1), scale),
            ink_map(half, max(5, (side // 14) | 1), scale * 0.5)]


@dataclass(eq=False)
class Blob:
    """A connected ink region of one level, what it looks like and whether it can be (part
    of) a digit.  Coordinates are the level's pixels."""
    x: int
    y: int
    w: int
    h: int
    contour: np.ndarray    # its outer contour
    thr: int               # the ink threshold it was cut at
    im: InkMap             # the level it was found at
    holes: float = 0.0     # perimeter of its holes, px
    area: int = 0          # ink pixels
    stroke: float = 0.0    # mean stroke width, px
    contrast: float = 0.0  # mean ink on its pixels (0-255)
    why: str = ""          # why it is not digit-like ("" when it is)

    def frame_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in frame pixels."""
        s = self.im.scale
        return self.x / s, self.y / s, (self.x + self.w) / s, (self.y + self.h) / s


def find_blobs(im: InkMap, opts: PreprocessOptions = DEFAULT) -> list[Blob]:
    """Every ink blob of one level; those large enough to be a digit are measured and judged
    (``why``).  A large blob that fails only for its extent (too wide, touching the border)
    may be a digit joined to a faint ruled line or a paper edge: it is cut again at half its
    own ink level, where the fainter lines fall away."""
    _, binary = cv2.threshold(im.ink, opts.min_contrast, 255, cv2.THRESH_BINARY)
    blobs: list[Blob] = []
    _blobs_in(binary, 0, 0, opts.min_contrast, im, opts, blobs, refine=True)
    return blobs


_RECUT = ("touches the border", "wide", "too tall")


def _blobs_in(binary, ox, oy, thr, im: InkMap, opts, out: list[Blob], refine: bool) -> None:
    contours, hier = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE, offset=(ox, oy))
    if not contours:
        return
    H, W = im.ink.shape
    min_h = opts.min_height * H
    hier = hier[0]
    # There are a handful of large blobs per frame, so plain Python on tuples beats numpy's
    # per-call overhead here.
    for i, c in enumerate(contours):
        if hier[i][3] >= 0:
            continue   # a hole
        x, y, w, h = cv2.boundingRect(c)
        b = Blob(x, y, w, h, c, thr, im)
        if h < min_h and w < min_h:
            b.why = "small"
            out.append(b)
            continue
        child = hier[i][2]
        while child >= 0:
            b.holes += cv2.arcLength(contours[child], True)
            child = hier[child][0]
        mask = measure(b)
        b.why = judge(b, W, H, opts)
        if refine and b.why in _RECUT:
            peak = cv2.minMaxLoc(im.ink[y:y + h, x:x + w], mask)[1]
            if peak >= 2 * thr:
                sub = int(max(thr + 12, 0.5 * peak))
                _, roi = cv2.threshold(im.ink[y:y + h, x:x + w], sub, 255, cv2.THRESH_BINARY)
                _blobs_in(cv2.bitwise_and(roi, mask), x, y, sub, im, opts, out, False)
                continue
        if not b.why:
            b.why = continues(b)
        out.append(b)


def own_mask(b: Blob) -> np.ndarray:
    """0/255 over b's box: its filled contour, where the ink reaches its threshold."""
    filled = np.zeros((b.h, b.w), np.uint8)
    cv2.drawContours(filled, [b.contour], -1, 255, cv2.FILLED, offset=(-b.x, -b.y))
    _, cut = cv2.threshold(b.im.ink[b.y:b.y + b.h, b.x:b.x + b.w], b.thr, 255, cv2.THRESH_BINARY)
    return cv2.bitwise_and(filled, cut)


def measure(b: Blob) -> np.ndarray:
    """Fill in area, stroke width and contrast; returns the blob's own mask."""
    mask = own_mask(b)
    b.area = cv2.countNonZero(mask)
    # A stroke of width s and length l has area s*l and a perimeter (outline plus holes) of
    # about 2*l.
    b.stroke = 2.0 * b.area / max(cv2.arcLength(b.contour, True) + b.holes, 1.0)
    b.contrast = cv2.mean(b.im.ink[b.y:b.y + b.h, b.x:b.x + b.w], mask)[0]
    return mask


def judge(b: Blob, W: int, H: int, opts: PreprocessOptions) -> str:
    """"" when ``b`` can be a digit, else the reason it cannot."""
    if b.x == 0 or b.y == 0 or b.x + b.w == W or b.y + b.h == H:
        return "touches the border"
    if b.h > opts.max_height * H:
        return "too tall"
    if b.w > 1.6 * b.h:
        return "wide"
    if b.h < opts.min_height * H:
        return "too low"
    if b.h > 14 * max(b.w, 1):
        return "thin"
    if b.stroke > 0.32 * b.h:
        return "solid"
    return ""


_BEYOND = (0.62, 0.72, 0.82, 0.92)   # sample points past a blob's ends, in lengths from its centre


def continues(b: Blob) -> str:
    """"" when ``b`` ends where it seems to, else what it is a part of.

    The closing fills every dark feature narrower than its kernel, so two things that are not
    ink pass for strokes.  A long thin piece of a paper edge, a ruling or a grid line: it goes
    on as ink along its axis, where a stroke's end meets paper.  The finger of a hand's shadow:
    it is as dark as the palm it grows from, so the region of the blob's darkest gray level,
    flooded from its darkest pixel, spreads far beyond the blob into the shadow; ink is darker
    than any paper around it, lit or shadowed, and its flood stays inside the stroke."""
    (cx, cy), (rw, rh), ang = cv2.minAreaRect(b.contour)
    im = b.im
    H, W = im.ink.shape
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
                    hits += int(im.ink[max(0, py - 1):py + 2, max(0, px - 1):px + 2].max()) >= 0.4 * b.contrast
            if n >= 3 and hits >= n - 1:
                return "part of a line"
    # The flood follows gentle changes (a shadow's light gradient) but does not climb to the
    # paper: pixels much brighter than the seed are walls.
    lo, _, (mx, my), _ = cv2.minMaxLoc(im.gray[b.y:b.y + b.h, b.x:b.x + b.w], own_mask(b))
    _, walls = cv2.threshold(im.gray, 1.6 * lo + 6, 255, cv2.THRESH_BINARY)
    flood = np.zeros((H + 2, W + 2), np.uint8)
    area = cv2.floodFill(cv2.max(im.gray, walls), flood, (b.x + mx, b.y + my), 0, 3, 3,
                         4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8))[0]
    if area > 2.0 * b.area + 10:
        return "part of a shadow"
    return ""


@dataclass(eq=False)
class Digit:
    """One digit: its blobs (a digit drawn in two strokes, or broken by a ruling or a
    threshold, has several) at one level, and their box in that level's pixels."""
    parts: list[Blob]
    x0: int
    y0: int
    x1: int
    y1: int
    line: int = 0

    @property
    def im(self) -> InkMap:
        return self.parts[0].im

    def frame_box(self) -> tuple[float, float, float, float]:
        s = self.im.scale
        return self.x0 / s, self.y0 / s, self.x1 / s, self.y1 / s


_NEVER_PART = ("touches the border", "too tall", "part of a shadow")


def _joins(d: Digit, b: Blob, ref: float, ref_h: int) -> bool:
    """Does blob ``b`` belong to digit ``d``: sharing its columns (a 4's second stroke, a 5's
    flag, the loop of a 6 cut off by a ruling), close above or below, as dark as the digit's
    ink (a ruling or a grid line is paler), and the two together still digit-shaped (not an
    underline, not the digit beside it)."""
    dw, dh = d.x1 - d.x0, d.y1 - d.y0
    overlap = min(b.x + b.w, d.x1) - max(b.x, d.x0)
    if overlap < max(1, 0.5 * min(b.w, dw)):
        return False
    gap = max(b.y - d.y1, d.y0 - (b.y + b.h))
    if gap > 0.25 * max(b.h, dh):
        return False
    uw = max(b.x + b.w, d.x1) - min(b.x, d.x0)
    uh = max(b.y + b.h, d.y1) - min(b.y, d.y0)
    if uw > 1.25 * uh or uh > 1.4 * ref_h:
        return False
    if not b.contrast:
        measure(b)
    return b.contrast >= 0.45 * ref


def _digits_at(blobs: list[Blob]) -> list[Digit]:
    """Digit-like blobs of one level, each with the pieces that belong to it (the tallest
    first claim theirs)."""
    seeds = sorted((b for b in blobs if not b.why and b.contrast >= 1.5 * b.thr), key=lambda b: -b.h)
    free = [b for b in blobs if b.why not in _NEVER_PART and max(b.w, b.h) >= 2]
    taken: set[int] = set()
    out = []
    for seed in seeds:
        if id(seed) in taken:
            continue
        d = Digit([seed], seed.x, seed.y, seed.x + seed.w, seed.y + seed.h)
        taken.add(id(seed))
        grown = True
        while grown:
            grown = False
            for b in free:
                if id(b) in taken or max(b.w, b.h) < 0.12 * (d.y1 - d.y0) or not _joins(d, b, seed.contrast, seed.h):
                    continue
                d.parts.append(b)
                d.x0, d.y0 = min(d.x0, b.x), min(d.y0, b.y)
                d.x1, d.y1 = max(d.x1, b.x + b.w), max(d.y1, b.y + b.h)
                taken.add(id(b))
                grown = True
        out.append(d)
    return out


def find_digits(levels: list[InkMap], opts: PreprocessOptions = DEFAULT) -> tuple[list[Digit], str]:
    """Every digit in view, unordered, and a reason when there is none.  A digit seen at both
    levels is kept once: at level 0 (finer), unless level 0 saw only fragments of it (a
    stroke wider than level 0's kernel shows there only where it is thinner)."""
    per_level = [find_blobs(im, opts) if int(im.ink.max()) >= opts.min_contrast else [] for im in levels]
    if not any(per_level):
        return [], "no ink"
    fine = _digits_at(per_level[0])
    # Level 1 is there for thick strokes, which are dark (a marker); a thin or pale blob there
    # is better seen at level 0, or is a shadow's finger.
    coarse = _digits_at([b for b in per_level[1]
                         if b.why or (b.stroke >= 2.5 and b.contrast >= opts.thick_contrast)])
    coarse = [c for c in coarse if not c.parts[0].why]
    for c in coarse:
        box = c.frame_box()
        inside = [f for f in fine if _overlaps(f.frame_box(), box)]
        if inside:
            covered = _area(_union([f.frame_box() for f in inside]))
            if covered >= 0.8 * _area(box):
                continue
            fine = [f for f in fine if f not in inside]
        fine.append(c)
    return fine, "" if fine else "nothing digit-like"


def _area(b) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _union(boxes):
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _overlaps(a, b) -> bool:
    """Boxes (x0, y0, x1, y1) overlapping by half the smaller one's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return False
    return w * h >= 0.5 * min(_area(a), _area(b))


def find_digit(levels: list[InkMap], opts: PreprocessOptions = DEFAULT) -> tuple[Digit | None, str]:
    """The digit of a one-digit frame (the tallest found) or (None, reason)."""
    digits, why = find_digits(levels, opts)
    if not digits:
        return None, why
    return max(digits, key=lambda d: (d.y1 - d.y0) / d.im.scale), ""


def digit_mask(d: Digit) -> np.ndarray:
    """0/255 over the digit's box: the strokes of its parts."""
    mask = np.zeros((d.y1 - d.y0, d.x1 - d.x0), np.uint8)
    for b in d.parts:
        sub = mask[b.y - d.y0:b.y - d.y0 + b.h, b.x - d.x0:b.x - d.x0 + b.w]
        cv2.bitwise_or(sub, own_mask(b), dst=sub)
    return mask


def to_mnist(ink: np.ndarray, mask: np.ndarray, bbox, opts: PreprocessOptions = DEFAULT) -> np.ndarray:
    """Crop the digit (``mask`` covers the bbox), scale its ink to [0, 1], fit it into a
    ``box``x``box`` square keeping the aspect ratio, and centre it by centre of mass in
    ``size``x``size``."""
    x, y, w, h = bbox
    crop = ink[y:y + h, x:x + w]
    # Stroke level = mean ink on the thresholded strokes; it maps to white (MNIST strokes are
    # saturated).  The mask grown by a pixel keeps the strokes' anti-aliased edges.  All in
    # uint8 with OpenCV calls: each numpy call on arrays this small costs more than its work.
    level = cv2.mean(crop, mask)[0]
    crop = cv2.bitwise_and(crop, cv2.dilate(mask, _K3))
    s = opts.box / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    digit = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    # Thin strokes lose intensity when shrunk into the box: level them up to the brightest
    # pixel of the shrunk digit, so a fine pen looks like MNIST's pen too.  The scaling
    # saturates at 255, which is the clip to [0, 1].
    peak = cv2.minMaxLoc(digit)[1]
    ref = min(level, 0.9 * peak) if level > 1.0 else peak
    digit = cv2.convertScaleAbs(digit, alpha=255.0 / max(ref, 1.0))
    m = cv2.moments(digit)
    if m["m00"] > 0:
        cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
    else:
        cx, cy = (nw - 1) / 2, (nh - 1) / 2
    # Shift so the centre of mass lands on the centre of the 28x28 frame (MNIST's rule).
    ox = min(max(int(round((opts.size - 1) / 2 - cx)), 0), opts.size - nw)
    oy = min(max(int(round((opts.size - 1) / 2 - cy)), 0), opts.size - nh)
    out = np.zeros((opts.size, opts.size), np.uint8)
    out[oy:oy + nh, ox:ox + nw] = digit
    return out.astype(np.float32) * np.float32(1 / 255)


def _checked(frame):
    if frame is None or frame.size == 0 or frame.ndim not in (2, 3):
        return None
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return frame


def _prepared(d: Digit, opts: PreprocessOptions) -> Prepared:
    box = (d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0)
    s = d.im.scale
    region = (int(d.x0 / s), int(d.y0 / s), int(round(box[2] / s)), int(round(box[3] / s)))
    return Prepared(to_mnist(d.im.ink, digit_mask(d), box, opts), region, line=d.line)


def prepare(frame: np.ndarray, opts: PreprocessOptions = DEFAULT) -> Prepared:
    """The whole chain for one digit: frame (gray or BGR) -> :class:`Prepared`."""
    frame = _checked(frame)
    if frame is None:
        return Prepared(None, None, "empty frame")
    digit, why = find_digit(ink_levels(frame, opts), opts)
    if digit is None:
        return Prepared(None, None, why)
    return _prepared(digit, opts)
