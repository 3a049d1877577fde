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

from device.blobs import Digit, digits_at

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


@dataclass
class InkMap:
    """One level of the ink pyramid."""
    ink: np.ndarray      # uint8, 255 = black ink on its paper
    gray: np.ndarray     # the working copy at this level
    paper: np.ndarray    # its paper level
    scale: float         # this level's size / frame size
    k: int = 0           # the closing's kernel


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
    return InkMap(ink, gray, paper, scale, k)


def find_digits(frame: np.ndarray, opts: PreprocessOptions = DEFAULT, every: bool = True) -> list[Digit]:
    """The digits in view (``every``), or the tallest one, unordered.

    A closing fills every dark feature narrower than its kernel, the finger of a hand's shadow
    as well as a stroke, so one kernel wide enough for a large digit's marker strokes would
    turn the fingers beside a small digit into ink.  Two levels: level 0 (the working copy,
    strokes up to ~8 px) sees small and thin digits and not the fingers around them; level 1
    (half size, strokes up to ~20 working pixels) is looked at only when level 0 found nothing
    or found thick strokes, and keeps only thick dark ones (a marker's; a shadow's finger is
    pale).  A digit seen at both is kept at level 0 unless level 0 saw only fragments of it:
    pieces not covering level 1's box, or paler than level 1 saw (the edges of a stroke too
    wide for level 0's kernel)."""
    small, scale = working_copy(frame, opts)
    side = max(small.shape)
    k0 = max(5, (side // 18) | 1)
    fine, dark_refused = digits_at(ink_map(small, k0, scale), opts, every)
    look = fine if every else fine[:1]
    if fine and not dark_refused and not any(_maybe_thick(d, k0) for d in look):
        return fine
    half = cv2.resize(small, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    for c in digits_at(ink_map(half, max(5, (side // 14) | 1), scale * 0.5), opts, every, thick=True)[0]:
        box = c.frame_box()
        inside = [f for f in fine if _overlaps(f.frame_box(), box)]
        if every and _side_by_side(inside):
            continue   # at half size, neighbouring digits of a number run together
        if inside:
            # Level 0 saw it whole (its pieces cover the box, as dark, with no unfilled stroke
            # under it): keep level 0.
            whole = _area(_intersection(_union([f.frame_box() for f in inside]), box)) >= 0.8 * _area(box)
            if whole and c.seed.contrast <= 1.25 * max(f.seed.contrast for f in inside) \
                    and not any(_maybe_thick(f, k0) for f in inside):
                continue
            if _paler_around(c, inside):
                continue
            fine = [f for f in fine if f not in inside]
        fine.append(c)
    return fine


def _paler_around(c: Digit, inside: list[Digit]) -> bool:
    """Is what level 1 adds around level 0's digits nearer the paper around their ink than the
    ink itself?  The interior of a stroke too wide for level 0's kernel is as dark as the ink
    level 0 saw at its edges and bends; the finger of a shadow that level 1 joins to a digit
    (or a digit inside it) is as bright as the shadowed paper the ink lies on."""
    im0 = inside[0].im
    x0, y0 = int(c.x0 * 2), int(c.y0 * 2)
    x1, y1 = min(int(c.x1 * 2), im0.gray.shape[1]), min(int(c.y1 * 2), im0.gray.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return False
    big = cv2.resize(c.mask(), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)[:y1 - y0, :x1 - x0]
    fine = np.zeros_like(big)
    for d in inside:
        if d.im is not im0:
            return False
        ax0, ay0, ax1, ay1 = max(d.x0, x0), max(d.y0, y0), min(d.x1, x1), min(d.y1, y1)
        if ax1 > ax0 and ay1 > ay0:
            sub = fine[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
            cv2.bitwise_or(sub, d.mask()[ay0 - d.y0:ay1 - d.y0, ax0 - d.x0:ax1 - d.x0], dst=sub)
    extra = cv2.bitwise_and(big, cv2.bitwise_not(cv2.dilate(fine, _K3, iterations=2)))
    if cv2.countNonZero(extra) < 0.15 * cv2.countNonZero(big) or not cv2.countNonZero(fine):
        return False
    # Darkest points (of a 3x3 mean: not a noisy pixel): the middle of a wide stroke is its
    # darkest part; a shadow's darkest point is still the shadowed paper.
    gray = cv2.blur(im0.gray[y0:y1, x0:x1], (3, 3))
    ink = cv2.minMaxLoc(gray, fine)[0]
    paper = cv2.mean(im0.paper[y0:y1, x0:x1], fine)[0]
    return cv2.minMaxLoc(gray, extra)[0] - ink > 0.25 * max(paper - ink, 1.0)


def _side_by_side(digits: list[Digit]) -> bool:
    """Two of these digits share no column: neighbours on a line, not pieces of one digit."""
    boxes = sorted(d.frame_box() for d in digits)
    return any(b[0] >= a[2] for a, b in zip(boxes, boxes[1:]))


def _maybe_thick(d: Digit, k: int) -> bool:
    """Could level 0 have seen only part of this digit?  Its strokes are near the kernel's
    width, or the paper level under it dips (a stroke the closing could not fill stays dark in
    the paper estimate)."""
    if max(p.stroke for p in d.parts) >= 0.6 * k:
        return True
    paper = d.im.paper[d.y0:d.y1, d.x0:d.x1]
    return cv2.minMaxLoc(paper)[0] < 0.65 * cv2.mean(paper)[0]


def _area(b) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _intersection(a, b):
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def _union(boxes):
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _overlaps(a, b) -> bool:
    """Boxes (x0, y0, x1, y1) overlapping by half the smaller one's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w > 0 and h > 0 and w * h >= 0.5 * min(_area(a), _area(b))


def reading_order(digits: list[Digit]) -> list[list[Digit]]:
    """Lines of digits, top to bottom, each left to right.  A line is chained from left to
    right, each digit overlapping the previous one's rows, so a tilted line stays one line.
    Marks much smaller than the digits around them (a dot, a dash) are dropped."""
    if not digits:
        return []
    heights = sorted(d.frame_box()[3] - d.frame_box()[1] for d in digits)
    floor = 0.5 * heights[len(heights) // 2]
    lines: list[list[Digit]] = []
    for d in sorted(digits, key=lambda d: d.frame_box()[0]):
        x0, y0, x1, y1 = d.frame_box()
        if y1 - y0 < floor:
            continue
        best, score = None, 0.0
        for line in lines:
            lx0, ly0, lx1, ly1 = line[-1].frame_box()
            shared = min(y1, ly1) - max(y0, ly0)
            frac = shared / min(y1 - y0, ly1 - ly0)
            if frac >= 0.4 and x0 - lx1 <= 2.5 * max(y1 - y0, ly1 - ly0) and frac > score:
                best, score = line, frac
        if best is None:
            lines.append([d])
        else:
            best.append(d)
    lines.sort(key=lambda line: sum(d.frame_box()[1] + d.frame_box()[3] for d in line) / len(line))
    return lines


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
    return to_unit(out)


def to_unit(image: np.ndarray) -> np.ndarray:
    """uint8 0-255 -> float32 [0, 1], the one conversion every model input goes through (the
    golden set stores uint8 inputs and must feed them bit for bit as a frame is fed)."""
    return image.astype(np.float32) * np.float32(1 / 255)


def _checked(frame):
    if frame is None or frame.size == 0 or frame.ndim not in (2, 3):
        return None
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return frame


def _prepared(d: Digit, opts: PreprocessOptions, line: int = 0) -> Prepared:
    box = (d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0)
    s = d.im.scale
    region = (int(d.x0 / s), int(d.y0 / s), int(round(box[2] / s)), int(round(box[3] / s)))
    return Prepared(to_mnist(d.im.ink, d.mask(), box, opts), region, line=line)


def prepare(frame: np.ndarray, opts: PreprocessOptions = DEFAULT) -> Prepared:
    """One digit (the tallest in view): frame (gray or BGR) -> :class:`Prepared`, with
    ``image`` None and a ``reason`` when nothing in view is digit-like."""
    frame = _checked(frame)
    if frame is None:
        return Prepared(None, None, "empty frame")
    digits = find_digits(frame, opts, every=False)
    if not digits:
        return Prepared(None, None, "no digit")
    return _prepared(max(digits, key=lambda d: (d.y1 - d.y0) / d.im.scale), opts)


def prepare_all(frame: np.ndarray, opts: PreprocessOptions = DEFAULT) -> list[Prepared]:
    """Every digit in view, in reading order (lines top to bottom, each left to right), each
    with its 28x28 input, its region and its ``line``; empty when there is none."""
    frame = _checked(frame)
    if frame is None:
        return []
    return [_prepared(d, opts, i) for i, line in enumerate(reading_order(find_digits(frame, opts)))
            for d in line]
