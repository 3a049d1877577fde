"""Camera frame -> MNIST-style model input.

MNIST digits are white on black, size-normalised into a 20x20 box (aspect kept) and centred by
centre of mass in 28x28.  A camera sees dark ink (black, blue or red) on lit paper, under
uneven light, at any size and position.  The steps, each a function a test can call:

1. ``ink_map``: a small grayscale working copy (halved until near ``work_size``); "ink" = how
   much darker a pixel is than the paper around it.  The paper level is a local maximum filter
   (a closing), which removes uneven light and shadows wider than a stroke.
2. ``find_digit``: Otsu threshold on the ink map, connected components, the largest stroke
   blob plus the blobs near it (a 4 or 5 drawn in two strokes); "no digit" when the contrast
   or the blob is too small.
3. ``to_mnist``: crop, scale the ink into [0, 1], fit the longer side into 20 px, and place
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
    min_contrast: int = 40      # ink must be this much darker than the paper (0-255)
    min_area: float = 0.002     # smallest digit blob, as a fraction of the working frame
    box: int = 20               # MNIST's size-normalisation box
    size: int = 28              # model input side


@dataclass
class Prepared:
    """The model input (float32 28x28 in [0, 1]) or None when no digit was found, and the
    digit's region in frame coordinates (x, y, w, h)."""
    image: np.ndarray | None
    region: tuple[int, int, int, int] | None
    reason: str = ""


DEFAULT = PreprocessOptions()


def ink_map(frame: np.ndarray, opts: PreprocessOptions = DEFAULT) -> tuple[np.ndarray, float]:
    """(ink uint8 at working size, scale working/frame).  ``frame``: gray (H, W) or BGR(A)."""
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
    # The paper's brightness around each pixel: a maximum filter wider than a stroke, computed
    # on a quarter-size copy (16x cheaper) and smoothed back up.  Ink = paper - pixel, so
    # uneven light and soft shadows cancel out.
    h, w = small.shape
    tiny = cv2.resize(small, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_LINEAR)
    k = max(3, (max(tiny.shape) // 8) | 1)
    paper = cv2.blur(cv2.dilate(tiny, np.ones((k, k), np.uint8)), (k, k))
    paper = cv2.resize(paper, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.subtract(paper, small), scale


def find_digit(ink: np.ndarray, opts: PreprocessOptions = DEFAULT):
    """Return (mask uint8 0/255 of the digit's strokes, bbox (x, y, w, h) at working size)
    or (None, reason)."""
    if int(ink.max()) < opts.min_contrast:
        return None, "no ink"
    thr, binary = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    if thr < opts.min_contrast / 2:
        # Otsu on paper texture alone finds a tiny split; raise it to the contrast floor.
        _, binary = cv2.threshold(ink, opts.min_contrast / 2, 255, cv2.THRESH_BINARY)
    # Outer contours, not connected-component labelling: 4x cheaper here, and a filled outer
    # contour is the blob (its holes are paper, whose ink is ~0 anyway).  There are a handful
    # of blobs per frame, so plain Python on tuples beats numpy's per-call overhead.
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None, "no ink"
    H, W = ink.shape
    boxes = [cv2.boundingRect(c) for c in contours]
    sizes = [w * h for _, _, w, h in boxes]
    main = max(range(len(boxes)), key=sizes.__getitem__)
    mx, my, mw, mh = boxes[main]
    if cv2.contourArea(contours[main]) + mw + mh < opts.min_area * H * W:
        return None, "too small"
    # Blobs near the main one and not negligible belong to the same digit (a 4 or a 5 drawn
    # in two strokes); specks and far-away marks do not.
    mgx, mgy = max(2, mw // 2), max(2, mh // 3)
    floor = 0.08 * sizes[main]
    keep = [i for i, (x, y, w, h) in enumerate(boxes)
            if i == main or (sizes[i] >= floor and x <= mx + mw + mgx and x + w >= mx - mgx
                             and y <= my + mh + mgy and y + h >= my - mgy)]
    x0 = min(boxes[i][0] for i in keep)
    y0 = min(boxes[i][1] for i in keep)
    x1 = max(boxes[i][0] + boxes[i][2] for i in keep)
    y1 = max(boxes[i][1] + boxes[i][3] for i in keep)
    mask = binary[y0:y1, x0:x1]
    if len(keep) < len(contours):
        # Other marks reach into the digit's box: keep only the digit's own strokes.
        filled = np.zeros_like(mask)
        cv2.drawContours(filled, [contours[i] for i in keep], -1, 255, cv2.FILLED, offset=(-x0, -y0))
        mask = cv2.bitwise_and(filled, mask)
    return mask, (x0, y0, x1 - x0, y1 - y0)


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


_K3 = np.ones((3, 3), np.uint8)


def prepare(frame: np.ndarray, opts: PreprocessOptions = DEFAULT) -> Prepared:
    """The whole chain: frame (gray or BGR) -> :class:`Prepared`."""
    if frame is None or frame.size == 0 or frame.ndim not in (2, 3):
        return Prepared(None, None, "empty frame")
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    ink, scale = ink_map(frame, opts)
    mask, found = find_digit(ink, opts)
    if mask is None:
        return Prepared(None, None, found)
    image = to_mnist(ink, mask, found, opts)
    x, y, w, h = found
    region = (int(x / scale), int(y / scale), int(round(w / scale)), int(round(h / scale)))
    return Prepared(image, region)
