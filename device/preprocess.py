"""Camera frame -> MNIST-style model inputs.

MNIST digits are white on black, size-normalised into a 20x20 box (aspect kept) and centred by
centre of mass in 28x28.  A camera sees dark ink (black, blue or red) on lit paper, under
uneven light, hard shadows, beside the paper's edge and the desk, on ruled or squared paper,
next to other marks, at any size and position.  The steps, each a function a test can call:

1. The ink pyramid (``device.levels``): a small grayscale working copy (halved until near
   ``work_size``) and its ink levels; "ink" = how much darker a pixel is than the paper around
   it, as a fraction of that paper's brightness.  The paper level is a morphological closing
   wider than a stroke: it fills strokes but keeps a step (a shadow's or the paper's edge)
   where it is, so a hard shadow edge is not ink, and the ratio makes ink in a shadow as strong
   as ink in the light.
2. Blobs judged by how digit-like they are (``device.blobs``): not a long strip, not a solid
   patch (a shadow's corner, a blot), not a ruled line, not a fragment of a larger shadow; a
   digit is a digit-like blob and the pieces that belong to it.
3. One digit (:func:`prepare`): the cheap tier (``levels.quick_digit``: a plain frame read from
   the half-size level alone, about the cost of this project's first preprocessing), else the
   full two-level analysis (``levels.find_digits``); when its strokes look like a fine pen's
   (or it found none but thin pieces), a closer look at the copy of twice the working size
   (``levels.fine_digits``; with nothing found there, that copy smoothed and cut just above
   its grain: a pale pen, dim light); with still nothing, a digit level 0 saw whole but paler than a
   seed, on even, lit paper (``levels.pale_digit``).  Every digit (:func:`prepare_all`): the
   same without the cheap tier and the pale fallback, then :func:`reading_order`, and where a
   line holds pieces level 0 made no digit of, the finer copy's digits there
   (``levels.line_pieces``); where a line has a gap as wide as most of a digit, the smoothed
   copy's digits in its band (``levels.gap_digits``); and at a line's ends and in its gaps,
   the digits level 0 shows cut at a fraction of the line's own ink (``levels.faint_line_digits``).
4. ``to_mnist``: crop, scale the ink into [0, 1], fit the longer side into 20 px, and place
   the centre of mass at the centre of 28x28.

Everything runs at the working size, so a 640x480 frame costs about the same as a 160x120 one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

import cv2  # OpenCV is a device dependency; only the preprocessing and the sources need it

from device.blobs import Digit
from device.levels import (LINE_PALE_LOOKS, MIN_SIDE, Pyramid, faint_line_digits, find_digits, fine_digits, floor_div,
                           gap_digits, line_pieces, pale_digit, quick_digit)

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
    quick: bool = True          # single digits: try the cheap tier first (device.levels)


@dataclass
class Prepared:
    """The model input (float32 28x28 in [0, 1]) or None when no digit was found, the digit's
    region in frame coordinates (x, y, w, h), why there is none, and (for several digits) the
    digit's line, 0 = top, and which analysis found it ("quick": the cheap tier; "full"; "fine": the
    closer look at twice the working size, ``levels.fine_digits``)."""
    image: np.ndarray | None
    region: tuple[int, int, int, int] | None
    reason: str = ""
    line: int = 0
    path: str = ""


DEFAULT = PreprocessOptions()


# A line of one digit under this fraction of the tallest digit's height, beside other lines, is a
# mark (a tick or a cross by a number, a blot), not a digit of the number: up to 40 % of a
# digit's height plus its stroke is as tall as a small digit, too tall for the floor of half
# the median height.  On the scene clips read as numbers (5,090 frames with the single-digit
# and fine-pen clips): 25 frames right that were not, none the other way.
LONE_FLOOR = 0.6


def reading_order(digits: list[Digit]) -> list[list[Digit]]:
    """Lines of digits, top to bottom, each left to right.  A line is chained from left to
    right, each digit overlapping the previous one's rows, so a tilted line stays one line.
    Marks much smaller than the digits around them (a dot, a dash) are dropped, and so is a
    line of one mark well under the tallest digit's height (:data:`LONE_FLOOR`)."""
    if not digits:
        return []
    box = {id(d): d.frame_box() for d in digits}
    heights = sorted(b[3] - b[1] for b in box.values())
    floor = 0.5 * heights[len(heights) // 2]
    lines: list[list[Digit]] = []
    for d in sorted(digits, key=lambda d: box[id(d)][0]):
        x0, y0, x1, y1 = box[id(d)]
        if y1 - y0 < floor:
            continue
        best, score = None, 0.0
        for line in lines:
            lx0, ly0, lx1, ly1 = box[id(line[-1])]
            shared = min(y1, ly1) - max(y0, ly0)
            frac = shared / min(y1 - y0, ly1 - ly0)
            if frac >= 0.4 and x0 - lx1 <= 2.5 * max(y1 - y0, ly1 - ly0) and frac > score:
                best, score = line, frac
        if best is None:
            lines.append([d])
        else:
            best.append(d)
    if len(lines) > 1:
        tallest = max(b[3] - b[1] for b in box.values())
        lines = [line for line in lines
                 if len(line) > 1 or box[id(line[0])][3] - box[id(line[0])][1] >= LONE_FLOOR * tallest]
    lines.sort(key=lambda line: sum(box[id(d)][1] + box[id(d)][3] for d in line) / len(line))
    return lines


def to_mnist(ink: np.ndarray, mask: np.ndarray, bbox, opts: PreprocessOptions = DEFAULT,
             level: float | None = None) -> np.ndarray:
    """Crop the digit (``mask`` covers the bbox), scale its ink to [0, 1], fit it into a
    ``box``x``box`` square keeping the aspect ratio, and centre it by centre of mass in
    ``size``x``size``.  ``level``: the mean ink under ``mask``, when the caller has it."""
    out = np.zeros((opts.size, opts.size), np.uint8)
    _fit(ink, mask, bbox, opts, level, out)
    return cv2.LUT(out, _UNIT)


def _fit(ink: np.ndarray, mask: np.ndarray, bbox, opts: PreprocessOptions, level: float | None,
         out: np.ndarray) -> None:
    """:func:`to_mnist` as uint8 (0-255) into ``out`` (``size``x``size``, zeros): the digits of a
    number go into one array and to [0, 1] in one lookup."""
    x, y, w, h = bbox
    crop = ink[y:y + h, x:x + w]
    # Stroke level = mean ink on the thresholded strokes; it maps to white (MNIST strokes are
    # saturated).  The mask grown by a pixel keeps the strokes' anti-aliased edges.  All in
    # uint8 with OpenCV calls: each numpy call on arrays this small costs more than its work.
    if level is None:
        level = cv2.mean(crop, mask)[0]
    crop = cv2.bitwise_and(crop, cv2.dilate(mask, None))   # None: OpenCV's 3x3 square, set up faster
    s = opts.box / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    digit = resample(crop, nw, nh)
    # Thin strokes lose intensity when shrunk into the box: level them up to the brightest
    # pixel of the shrunk digit, so a fine pen looks like MNIST's pen too.  The scaling
    # saturates at 255, which is the clip to [0, 1].
    peak = cv2.minMaxLoc(digit)[1]
    ref = min(level, 0.9 * peak) if level > 1.0 else peak
    digit = cv2.convertScaleAbs(digit, None, 255.0 / max(ref, 1.0))   # (positional: keywords cost)
    # The centre of mass: [[m00, m10], [m01, m11]] as two products with the rows [1, i], which
    # cost less than cv2.moments' 24 moments and their dict.  Every sum is an integer below
    # 2**24 (the digit is at most 28 px a side: at most 255 x 28 x 378), so float32 holds it
    # exactly, as cv2.moments does.
    (m00, m10), (m01, _) = np.dot(np.dot(_ramp(nh), digit), _ramp(nw).T).tolist()
    if m00 > 0:
        cx, cy = m10 / m00, m01 / m00
    else:
        cx, cy = (nw - 1) / 2, (nh - 1) / 2
    # Shift so the centre of mass lands on the centre of the 28x28 frame (MNIST's rule).
    ox = min(max(int(round((opts.size - 1) / 2 - cx)), 0), opts.size - nw)
    oy = min(max(int(round((opts.size - 1) / 2 - cy)), 0), opts.size - nh)
    out[oy:oy + nh, ox:ox + nw] = digit


@functools.lru_cache(maxsize=64)
def _ramp(n: int) -> np.ndarray:
    """The rows [1, 1, ...] and [0, 1, ..., n - 1] (float32): the moments of order 0 and 1."""
    return np.array([np.ones(n), np.arange(n)], np.float32)


@functools.lru_cache(maxsize=256)
def _weights(n_in: int, n_out: int) -> tuple[np.ndarray, int]:
    """Integer resampling weights (``n_out`` x ``n_in``, held as float32: a few KB per size
    pair, 256 pairs kept) and their row sum.  Shrinking: area averaging, the overlap of output
    pixel j ([j n_in, (j+1) n_in)) with input pixel i ([i n_out, (i+1) n_out)) in units of
    1/(n_in n_out) of a pixel.  Enlarging: bilinear with
    pixel centres aligned (src = (j + 0.5) n_in / n_out - 0.5, clamped at the ends, as OpenCV's
    ``INTER_LINEAR``), weights in 1/128ths."""
    if n_out <= n_in:
        a_in, a_out = np.arange(n_in + 1) * n_out, np.arange(n_out + 1) * n_in
        w = np.minimum(a_out[1:, None], a_in[None, 1:]) - np.maximum(a_out[:-1, None], a_in[None, :-1])
        return np.maximum(w, 0).astype(np.float32), n_in
    den = 2 * n_out
    src = (2 * np.arange(n_out) + 1) * n_in - n_out          # the source position, times den
    i0 = np.clip(src // den, 0, n_in - 1)
    frac = np.where((src < 0) | (i0 >= n_in - 1), 0, src - i0 * den)
    w1 = (frac * 128 + den // 2) // den
    w = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    w[rows, i0] = 128 - w1
    w[rows, np.minimum(i0 + 1, n_in - 1)] += w1     # one cell per row in each statement
    return w, 128


def resample(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``img`` (uint8) resized to ``width`` x ``height`` with the same bytes on every CPU: the
    weights are integers and every partial sum is an integer the float type holds exactly, so
    the two products are exact whatever order a BLAS sums in, and the one rounding (half up)
    is an exact floor division.  OpenCV's resize is not that: its ARM builds (KleidiCV,
    carotene) round ``INTER_LINEAR`` and some ``INTER_AREA`` ratios differently from x86, and
    this image is what the model sees."""
    wy, dy = _weights(img.shape[0], height)
    wx, dx = _weights(img.shape[1], width)
    den = dy * dx
    if 256 * den < 2 ** 24:
        # float32 holds every partial sum exactly while 256 x den < 2**24 (any crop of a
        # working copy of <= 256 px).  Then the IEEE quotient of the rounded-up sum truncates
        # to the integer floor: it lands on k exactly when the sum is k den, and stays below
        # k + 1 otherwise (the gap, >= 1/den, is wider than half an ulp below 256; every den
        # checked).  numpy's floor division costs several times a whole product here.  (The
        # uint8 image goes in as it is: numpy converts it to float32 for the product itself.)
        return floor_div(np.dot(np.dot(wy, img), wx.T), den)
    acc = np.dot(np.dot(wy.astype(np.float64), img.astype(np.float64)), wx.T.astype(np.float64)).astype(np.int64)
    acc += den // 2
    acc //= den
    return acc.astype(np.uint8)


def to_unit(image: np.ndarray) -> np.ndarray:
    """uint8 0-255 -> float32 [0, 1], the one conversion every model input goes through (the
    golden set stores uint8 inputs and must feed them bit for bit as a frame is fed)."""
    return np.multiply(image, np.float32(1 / 255), dtype=np.float32)


_UNIT = to_unit(np.arange(256, dtype=np.uint8))   # to_unit as a table: one lookup per 28x28 input


def _checked(frame) -> tuple[np.ndarray | None, str]:
    """(the frame as 2-D gray or 3-D BGR(A) uint8, "") or (None, why it cannot hold a digit).
    Frames under ``MIN_SIDE`` are refused: no digit fits, and OpenCV's scalar operations
    misread arrays of 4 elements or fewer."""
    if frame is None or frame.size == 0 or frame.ndim not in (2, 3):
        return None, "empty frame"
    if frame.ndim == 3 and frame.shape[2] not in (3, 4):
        if frame.shape[2] != 1:
            return None, f"a frame of {frame.shape[2]} channels (gray, BGR or BGRA only)"
        frame = frame[:, :, 0]
    if min(frame.shape[:2]) < MIN_SIDE:
        return None, f"frame too small ({frame.shape[1]}x{frame.shape[0]})"
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return frame, ""


def _prepared(d: Digit, opts: PreprocessOptions, line: int = 0, path: str = "",
              out: np.ndarray | None = None) -> Prepared:
    """The digit's :class:`Prepared`; with ``out`` (uint8 zeros), its input is written there
    as uint8 (see :func:`_fit`) and ``image`` is left for the caller to set."""
    box = (d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0)
    s = d.im.scale
    region = (int(d.x0 / s), int(d.y0 / s), int(round(box[2] / s)), int(round(box[3] / s)))
    # A digit of one blob: its mean ink under its mask is the blob's contrast, measured already.
    level = d.seed.contrast if len(d.parts) == 1 and d.seed.contrast >= 0 else None
    if out is None:
        return Prepared(to_mnist(d.im.ink, d.mask(), box, opts, level), region, line=line, path=path)
    _fit(d.im.ink, d.mask(), box, opts, level, out)
    return Prepared(None, region, line=line, path=path)


def prepare(frame: np.ndarray, opts: PreprocessOptions = DEFAULT) -> Prepared:
    """One digit (the tallest in view): frame (gray or BGR) -> :class:`Prepared`, with
    ``image`` None and a ``reason`` when nothing in view is digit-like.  The cheap tier first
    (``opts.quick``), the full analysis when it is not sure (``Prepared.path`` says which)."""
    frame, why = _checked(frame)
    if frame is None:
        return Prepared(None, None, why)
    with Pyramid(frame, opts) as pyr:
        # A frame smaller than the working size has no pixels to spare for the half-size tier.
        if opts.quick and max(pyr.small.shape) >= opts.work_size:
            d = quick_digit(pyr, opts)
            if d is not None:
                return _prepared(d, opts, path="quick")
        digits = find_digits(pyr, opts, every=False)
        path = "full"
        fine = fine_digits(pyr, digits, opts, every=False)
        if fine:
            digits, path = fine, "fine"
        if not digits:
            pale = pale_digit(pyr, opts)
            if pale is None:
                return Prepared(None, None, "no digit", path=path)
            digits = [pale]
        return _prepared(max(digits, key=lambda d: (d.y1 - d.y0) / d.im.scale), opts, path=path)


def prepare_all(frame: np.ndarray, opts: PreprocessOptions = DEFAULT) -> list[Prepared]:
    """Every digit in view, in reading order (lines top to bottom, each left to right), each
    with its 28x28 input, its region and its ``line``; empty when there is none."""
    frame, _ = _checked(frame)
    if frame is None:
        return []
    with Pyramid(frame, opts) as pyr:
        digits, path = find_digits(pyr, opts), "full"
        fine = fine_digits(pyr, digits, opts)
        if fine and len(fine) >= len(digits):
            digits, path = fine, "fine"
        lines = reading_order(digits)
        if path == "full":
            more = line_pieces(pyr, lines, opts)
            if more:
                digits = digits + more
                lines = reading_order(digits)
        more = gap_digits(pyr, lines, opts)
        if more:
            digits = digits + more
            lines = reading_order(digits)
        for _ in range(LINE_PALE_LOOKS):   # (again while it adds digits: read on to a line's end)
            more = faint_line_digits(pyr, lines, opts)
            if not more:
                break
            digits = digits + more
            lines = reading_order(digits)
        order = [(i, d) for i, line in enumerate(lines) for d in line]
        if not order:
            return []
        # Every digit's input as uint8 in one array, then to [0, 1] in one lookup (a lookup
        # per digit costs more in calls than in work); each image a view of it.
        u8 = np.zeros((len(order), opts.size, opts.size), np.uint8)
        found = [_prepared(d, opts, i, path, out) for (i, d), out in zip(order, u8)]
        unit = cv2.LUT(u8.reshape(-1, opts.size), _UNIT).reshape(u8.shape)
        for p, image in zip(found, unit):
            p.image = image
        return found
