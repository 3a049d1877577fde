"""The ink pyramid of a frame, and which of its levels to believe.

A closing fills every dark feature narrower than its kernel: a stroke, and also the finger of a
hand's shadow.  No one kernel suits every digit size: wide enough for a large digit's marker
strokes, it turns the fingers beside a small digit into ink.  So the working copy has two ink
levels (:class:`Pyramid`): level 0 at the working size with a kernel for strokes up to ~8 px,
level 1 at half size for thick strokes.  Each is made only when asked for.

Two ways to read one digit:

* :func:`quick_digit`, the cheap tier: level 1 alone (a quarter of the pixels), accepted only
  when the frame is plain: one large digit-like blob, nothing else of its size, no hard edge
  (a shadow's, the sheet's) near it.  Most frames of a tidy set-up end here, at the cost of the
  single-level preprocessing this project started with.
* :func:`find_digits`, the full analysis: both levels, every blob judged
  (:mod:`device.blobs`), for everything the cheap tier is not sure of, and for numbers.
* :func:`fine_digits`, a closer look for a fine pen: the copy at twice the working size the
  frame was halved from, when level 0 saw only thin strokes or thin pieces; with nothing
  found there either, the same copy smoothed, cut just above its grain (:func:`smoothed_digits`:
  a pale pen, dim light).
* :func:`line_pieces`, the same copy where a number's line holds pieces level 0 could not
  make a digit of; :func:`gap_digits`, that copy smoothed where a number's line has a gap;
  :func:`pale_digit`, level 0's pale digit when a single digit is wanted and nothing else was
  found.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import numpy as np

import cv2

from device.blobs import K3, SEED_CONTRAST, Blob, Digit, blobs_of, digits_at, extent, grow, joined, steep


@functools.lru_cache(maxsize=8)
def _square(k: int) -> np.ndarray:
    return np.ones((k, k), np.uint8)


@dataclass(eq=False)
class InkMap:
    """One level of the ink pyramid."""
    ink: np.ndarray      # uint8, 255 = black ink on its paper
    gray: np.ndarray     # the working copy at this level
    paper: np.ndarray    # its paper level
    scale: float         # this level's size / frame size
    k: int = 0           # the closing's kernel
    _blobs: dict = field(default_factory=dict, repr=False)
    _near_step: np.ndarray | None = field(default=None, repr=False)
    _median: int | None = field(default=None, repr=False)

    def blobs(self, thr: int) -> list[Blob]:
        """The blobs of the ink at ``thr`` (:func:`device.blobs.blobs_of`), cut once per level:
        the cheap tier and the full analysis share them."""
        if thr not in self._blobs:
            self._blobs[thr] = blobs_of(self, thr)
        return self._blobs[thr]

    def near_step(self) -> np.ndarray:
        """0/255: within a pixel of a steep step of the paper level (``blobs.steep``), made
        once per level when a blob first asks (``blobs.on_step``)."""
        if self._near_step is None:
            self._near_step = cv2.dilate(steep(self.paper), K3)
        return self._near_step

    def median(self) -> int:
        """The ink's median (every other pixel), made once per level when a seed first asks
        (``blobs.stands_out``)."""
        if self._median is None:
            self._median = _quantile(np.ascontiguousarray(self.ink[::2, ::2]), 0.5)
        return self._median


class Pyramid:
    """A frame's working copy (gray, near ``opts.work_size``) and its two ink levels; and the
    copy at twice that size it was halved from (``finer``, None when the frame is no larger),
    for :func:`fine_digits`.  ``copy``: (gray, scale) to use as the working copy as it is."""

    def __init__(self, frame: np.ndarray, opts, copy: tuple[np.ndarray, float] | None = None):
        self.small, self.scale, self.finer = (*copy, None) if copy else working_copy(frame, opts)
        self.k = kernels(max(self.small.shape))
        self._levels: list[InkMap | None] = [None, None]

    def __enter__(self) -> Pyramid:
        return self

    def __exit__(self, *exc) -> None:
        """Drop the blobs cut from each level.  A blob refers back to its level: that cycle is
        freed only by the garbage collector's rare full collections, so every frame's arrays
        would stay allocated until one (several MB of RSS over a long run)."""
        for im in self._levels:
            if im is not None:
                im._blobs.clear()

    def level(self, i: int) -> InkMap:
        if self._levels[i] is None:
            if i == 0:
                self._levels[0] = ink_map(self.small, self.k[0], self.scale)
            else:
                half = halve(self.small)
                self._levels[1] = ink_map(half, self.k[1], self.scale * 0.5)
        return self._levels[i]


MIN_SIDE = 8   # the smallest frame side looked at: no digit is readable in fewer pixels


def kernels(side: int) -> tuple[int, int]:
    """The closings' kernels of a working copy whose longer side is ``side``: ~1/18 of it at
    level 0 (strokes up to ~8 px at 160), ~1/14 at level 1 (half size: strokes up to ~20
    working pixels)."""
    return max(5, (side // 18) | 1), max(5, (side // 14) | 1)


def working_copy(frame: np.ndarray, opts) -> tuple[np.ndarray, float, np.ndarray | None]:
    """(gray uint8 near ``work_size``, scale working/frame, the gray copy at twice the size
    it was halved from or None).  ``frame``: gray or BGR(A)."""
    small, scale, finer = frame, 1.0, None
    if small.ndim == 3:
        # A colour frame (a USB camera's, a photo) is read as its luma, as picamera2's lores
        # stream and a clip's reduced decoding give it, and halved by area averaging below.
        # (Every other pixel of the green channel, one strided copy of half the frame's rows,
        # cost less: ~30 us a 640x480 frame in cache here, ~130 us from memory; but it kept the
        # sensor's noise and aliasing that averaging takes out: the held-out writers' scene
        # clips read full-size in colour scored 90.1 % against 93.1 % this way, blank scenes
        # 97.3 % against 98.5 %; benchmarks/scenes.py "colour".)
        small = cv2.cvtColor(small, cv2.COLOR_BGRA2GRAY if small.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    # Halve with area averaging until the longer side is at most 1.5x work_size: OpenCV's area
    # resize is several times faster for an exact factor of 2 than for 4 or an odd ratio, and
    # the region maps back to the frame by a power of two.
    # (A strip of a frame, far wider than tall, stops halving while it is still a few digits
    # high: level 1 halves it once more.)
    while max(small.shape[:2]) > opts.work_size * 1.5 and min(small.shape[:2]) >= 4 * MIN_SIDE:
        finer = small
        small = halve(small)
        scale *= 0.5
    return small, scale, finer


def halve(img: np.ndarray) -> np.ndarray:
    """Half size, each pixel the mean of a 2x2 block, rounded half up: the same bytes on every
    CPU.  An odd last row or column is dropped first: on an odd size OpenCV's ``INTER_AREA``
    is no block mean on every build (the aarch64 wheels of OpenCV >= 4.11 route it through
    KleidiCV, which resamples instead: one dev photo of 100 read differently on an emulated
    Pi), while on even sizes every build computes ``(a + b + c + d + 2) >> 2``."""
    h, w = img.shape[:2]
    if (h | w) & 1:
        img = img[:h & ~1, :w & ~1]
    return cv2.resize(img, (w // 2, h // 2), None, 0, 0, cv2.INTER_AREA)   # (positional: keywords cost)


def floor_div(acc: np.ndarray, den: int) -> np.ndarray:
    """floor((acc + den // 2) / den) as uint8, for ``acc`` float32 holding integers whose
    quotient is below 256.  Where it is safe, in one call: the floor is the nearest integer to
    (acc + c) / den, c = 1/2 for an even den and 0 for an odd one, which lies at least
    1 / (2 den) from a tie (acc is an integer); OpenCV's float32 product and sum err by under
    3e-5 on values below 256, inside that margin while den <= 4096, and not at all for a power
    of two (bilinear both ways: 128 x 128)."""
    if den <= 4096 or not den & (den - 1):
        return cv2.convertScaleAbs(acc, None, 1.0 / den, 0.5 / den if den % 2 == 0 else 0.0)
    acc += den // 2
    acc /= den
    return acc.astype(np.uint8)


# ink_map's divisor per paper level: at least 40 (a dark desk's floor, below), as float32 like
# the numerator, looked up: numpy divides float32 by a uint8 array through a slow casting loop.
_PAPER_FLOOR = np.maximum(np.arange(256), 40).astype(np.float32)


def ink_map(gray: np.ndarray, k: int, scale: float = 1.0) -> InkMap:
    """Ink of ``gray`` against a paper level estimated by a ``k``x``k`` closing."""
    # The paper's brightness: a closing (max then min filter) wider than the strokes.  It fills
    # strokes and keeps steps in place, unlike a max filter alone, which would spread the lit
    # side of a shadow's edge over the dark side and make a band of false ink there.
    paper = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, _square(k))
    # Ink as a fraction of the paper's level: a stroke in a shadow is as strong as in the light.
    # The floor keeps a dark desk's texture (paper level near 0) from being amplified to ink.
    # 255 (paper - gray) / paper rounded to nearest (ties to even): float32 holds the numerator
    # exactly and numpy divides by IEEE rules on every CPU.  Not cv2.divide: its aarch64 build
    # rounds differently from x86 (1 grey level on most frames, emulated Cortex-A53/A72),
    # which moved 29 of the 100 dev photos' model inputs.  The quotient is at most 255.  The
    # numerator in one call: 255 paper - 255 gray, integers float32 holds exactly, never
    # negative (a closing is never darker than the image it closes).
    ink = cv2.addWeighted(paper, 255.0, gray, -255.0, 0.0, None, cv2.CV_32F)
    ink /= cv2.LUT(paper, _PAPER_FLOOR)
    ink = np.rint(ink, out=ink).astype(np.uint8)
    return InkMap(ink, gray, paper, scale, k)



# The cheap tier's bounds: the digit at least this tall (fraction of the frame height; smaller
# digits are level 0's), other blobs at most this tall against it, and the paper around it
# nowhere steeper than an edge (blobs.steep: spots, gradients and vignetting change by a few
# percent per pixel at level 1; a hard shadow's or the sheet's edge by 15 % or more).
QUICK_MIN_HEIGHT = 0.2
QUICK_CLUTTER = 0.3


def quick_digit(pyr: Pyramid, opts) -> Digit | None:
    """The one digit when level 1 shows it plainly, else None (then :func:`find_digits`
    decides, which may also be "no digit")."""
    im = pyr.level(1)
    H, W = im.ink.shape
    # (No test of the ink's maximum first: with no ink above the threshold there is no blob.)
    big = sorted((b for b in im.blobs(opts.min_contrast) if max(b.w, b.h) >= 0.1 * H), key=lambda b: -b.h)
    if not big:
        return None
    seed = big[0]
    if seed.h < QUICK_MIN_HEIGHT * H or extent(seed, W, H, opts):
        return None
    seed.measure()
    if seed.stroke > 0.3 * seed.h or seed.contrast < SEED_CONTRAST * opts.min_contrast:
        return None
    taken: set[int] = set()
    d = grow(seed, im.blobs(opts.min_contrast), taken, opts, alone=True)
    if any(id(b) not in taken and b.h >= QUICK_CLUTTER * seed.h for b in big[1:]):
        return None
    m = (d.y1 - d.y0) // 2
    x0, y0, x1, y1 = max(0, d.x0 - m), max(0, d.y0 - m), min(W, d.x1 + m), min(H, d.y1 + m)
    paper = im.paper[y0:y1, x0:x1]
    return None if cv2.countNonZero(steep(paper)) else d   # (not hasNonZero: OpenCV >= 4.7; 32-bit Pi OS has 4.6)


def find_digits(pyr: Pyramid, opts, every: bool = True) -> list[Digit]:
    """The digits in view (``every``), or the tallest one, unordered: the full analysis.

    A closing fills every dark feature narrower than its kernel, the finger of a hand's shadow
    as well as a stroke, so one kernel wide enough for a large digit's marker strokes would
    turn the fingers beside a small digit into ink.  Two levels: level 0 (the working copy,
    strokes up to ~8 px) sees small and thin digits and not the fingers around them; level 1
    (half size, strokes up to ~20 working pixels) is looked at only when level 0 found nothing
    or found thick strokes, and keeps only thick dark ones (a marker's; a shadow's finger is
    pale).  A digit seen at both is kept at level 0 unless level 0 saw only fragments of it:
    pieces not covering level 1's box, or paler than level 1 saw (the edges of a stroke too
    wide for level 0's kernel)."""
    k0 = pyr.k[0]
    fine, dark_refused = digits_at(pyr.level(0), opts, every)
    look = fine if every else fine[:1]
    if fine and not dark_refused and not any(_maybe_thick(d, k0) for d in look):
        return fine
    for c in digits_at(pyr.level(1), opts, every, thick=True)[0]:
        box = c.frame_box()
        inside = [f for f in fine if _overlaps(f.frame_box(), box)]
        if every and _neighbours(c, inside):
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



# A fine pen (a ballpoint's line, 1-3 px in a 640x480 frame) is a fraction of a pixel wide at
# the working size: block means fade it below the ink threshold or break it into pieces too
# small to be a digit.  In the copy at twice the size it is twice as dark.  The sign of one at
# level 0: the digits found have strokes thinner than FINE_THIN (px), or, with none found, a
# blob at least FINE_EVIDENCE x the smallest digit's height has strokes under
# FINE_EVIDENCE_STROKE.  The closer look keeps digits whose strokes are at most FINE_STROKE
# wide there (a shadow's finger is wider) on paper at least FINE_PAPER x as bright as the lit
# paper (a dark desk's grain is ink by ratio too), and is skipped when the copy's ink map is
# noise (its 90th percentile above FINE_NOISE: dim light).  A fine pen's line is faint even
# there: a digit whose seed is paler than level 0's bar (SEED_CONTRAST x min_contrast) is kept
# when the paper under it is even (its 5th percentile at least FINE_FLAT x its 95th): the pale
# thin lines a shadow's or the paper's edge leave in the ink map lie on a step of the paper
# level.
# Where the line breaks into pieces too low to be digits, the pieces are bridged (_assemble).
# Chosen on the design writers' and MNIST scenes with fine pens drawn from their glyphs
# (device.glyphs.with_pen) and on the blank scenes, measured in benchmarks/scenes.py.
FINE_THIN = 1.3
FINE_EVIDENCE = 0.3
FINE_EVIDENCE_STROKE = 2.0
FINE_STROKE = 3.0
FINE_PAPER = 0.35
FINE_NOISE = 30
FINE_FLAT = 0.8
# Pieces the closer look bridges into one blob (_assemble): at least ASSEMBLE_PIECE x the
# smallest digit's height, no wider than ASSEMBLE_DASH x their height, gaps up to ASSEMBLE_GAP
# x that height.
ASSEMBLE_PIECE = 0.25
ASSEMBLE_DASH = 2.5
ASSEMBLE_GAP = 0.15
# Level 0 read this many digits already: the closer look, whose cost grows with the blobs in
# view, gained 1 number of the 4 such frames in the scene clips (and 22 of 82 with fewer).
FINE_ENOUGH = 5
# Level 0 found digits of ordinary strokes (a bold mark, a stray tick) and, outside them, a thin
# blob at least FINE_BESIDE x the smallest digit's height: the closer look adds the digits it
# finds beside level 0's (a fine pen's number with a bold mark in view).
FINE_BESIDE = 1.0


def fine_digits(pyr: Pyramid, digits: list[Digit], opts, every: bool = True) -> list[Digit] | None:
    """The digits of the copy at twice the working size when level 0's ``digits`` (or, with
    none, its blobs) look like a fine pen's, else None: [] when the closer look found none.
    With no digits at level 0 and none found there (or the copy too grainy to look at), or no
    thin blob but ink at SMOOTH_HINT x the threshold: the digits of that copy smoothed
    (:func:`smoothed_digits`).  When only blobs beside level 0's digits look like a fine pen's:
    level 0's digits and those the closer look finds clear of them, or None if none."""
    if pyr.finer is None or len(digits) >= FINE_ENOUGH:
        return None
    why = _fine_pen(pyr, digits, opts)
    if why is None:
        # Nothing found and no thin piece either, but level 0 has ink at SMOOTH_HINT x the
        # threshold somewhere: a line fainter than the threshold may be there.
        if not digits and cv2.minMaxLoc(pyr.level(0).ink)[1] >= SMOOTH_HINT * opts.min_contrast:
            return smoothed_digits(pyr, opts, every)
        return None
    with Pyramid(pyr.finer, opts, (pyr.finer, pyr.scale * 2)) as fine:
        im = fine.level(0)
        # (The ink's 90th percentile is above FINE_NOISE exactly when more than a tenth of
        # the pixels are.)
        found = []
        if not _grainy(im.ink, FINE_NOISE, 0.1):
            _assemble(im, opts)
            found = [d for d in digits_at(im, opts, every, seed_contrast=1.0, grain=False)[0] if d.seed.stroke <= FINE_STROKE
                     and (d.seed.contrast >= SEED_CONTRAST * opts.min_contrast
                          or _even_paper(im.paper[d.y0:d.y1, d.x0:d.x1]))]
            if found:
                lit = FINE_PAPER * _lit_paper(im)
                found = [d for d in found if cv2.mean(im.paper[d.y0:d.y1, d.x0:d.x1])[0] >= lit]
        if why == "beside":
            boxes = [d.frame_box() for d in digits]
            more = [f for f in found if not any(_overlaps(f.frame_box(), b) for b in boxes)]
            return digits + more if more else None
        return found or (smoothed_digits(pyr, opts, every) if not digits else [])


# A fine pen in dim light, or fainter than the ink threshold: in the closer look's copy its line
# is lost in the grain (more than a tenth of the ink map above FINE_NOISE) or under
# min_contrast.  Smoothed ([1 4 6 4 1] / 16 both ways: the grain's spread falls ~3.5x, a line
# 1-2 px wide keeps about half its ink), the line stands above the grain again: the smoothed
# ink map is cut at SMOOTH_GRAIN x its 90th percentile (the grain's level; at least
# SMOOTH_FLOOR, below min_contrast or not looked at), every blob a seed, pieces bridged, and a
# digit kept when its strokes are at most SMOOTH_STROKE wide (the smoothing widens them) and at
# most SMOOTH_SLIM x its height (a fine pen's line is slim; the lit gap between a shadow's
# fingers, a bold stray mark, a finger's tip in glare are blobs), on even paper at least
# FINE_PAPER x as bright as the lit paper.  Looked at only when nothing at all
# was found: after the closer look, or instead of it when level 0 showed no thin piece but has
# ink at SMOOTH_HINT x min_contrast somewhere (a plain sheet's grain stays below: 90 % of the
# camera-like clip's blank frames).  Chosen on the design writers' and MNIST fine-pen clips
# with the blank and generated hostile blank scenes guarding (benchmarks/scenes.py), and blank
# scenes of new seeds (SMOOTH_SLIM came from the 6 of 800 those read as digits without it).
SMOOTH_GRAIN = 2.5
SMOOTH_FLOOR = 16
SMOOTH_STROKE = 8.0
SMOOTH_SLIM = 0.15
SMOOTH_HINT = 0.75
# Ruled paper: smoothed, its rulings can fill the ink map's top tenth, so the grain's 90th
# percentile lands on them and the cut rises over a digit as pale as they are (at min_contrast
# or above: not looked at at all).  Ink that runs on for SMOOTH_RULING pixels of
# the every-other-pixel grid (32 of the copy) along a row is a ruling (the digits are read
# upright, so a sheet's rulings run along the rows, within a perspective's tilt of ~7 degrees),
# and is left out of the grain where the paper is above SMOOTH_RULED_LIT x the lit paper: a
# desk's grain beside the sheet runs in stripes too, darker than the sheet (the first version,
# with no such bound and upright lines left out as well, read 8 of 700 blank scenes).  Chosen on
# the scene clips (fine pens' single digits +7 in either mode, blank scenes unchanged) and checked
# on scene clips of other seeds (clip totals: single digits +10 / -1 of 3,600 frames, numbers
# +8 / -1 of 2,400; 2 more of 3,200 blank scenes read).
SMOOTH_RULING = 16
SMOOTH_RULED_LIT = 0.85
_RULING = np.ones((1, SMOOTH_RULING), np.uint8)
# The grain differs across a frame: a desk's texture or a dim shadow beside the sheet lifts the
# frame's 90th percentile, and the cut with it, over a hairline digit on the clean lit sheet (a
# small digit beside the sheet's edge: its smoothed ink ~20-35, the frame's cut 33-48, the sheet's
# own grain's ~8).  The grain is also measured in bands of the paper level (from SMOOTH_BANDS[0] x
# the lit paper up, then down to each next fraction); a band holding more than SMOOTH_BAND_SHARE
# of the pixels whose cut is at most SMOOTH_BAND_BELOW x the frame's (or min_contrast) is cut
# too, its ink alone (and a closing's width around it: a piece of grain crossing the band's edge
# is judged whole), and a digit found there is kept when the paper under it lies in the band and
# the grain around it (its box padded by SMOOTH_BAND_PAD x its height, the box left out) is below
# the band's cut as the band's is (a band is no region: a desk's bright streaks can be as bright
# as the sheet, and a stray mark on squared paper joins a grid line's piece).  Chosen on the
# design writers' and MNIST fine-pen clips (+0 and +7 single digits, +1 number), the held-out
# writers' clips printed beside them (+2 single digits, their fine pens +3) and the blank and
# hostile blank scenes guarding; without the grain around, a blank frame of new seeds 36000 and
# 37000 each was read (a desk's streak at the sheet's edge, a stray dash joined to a grid line).
# Measured and dropped: cut wherever a band's cut is below the frame's (+3 digits more, the
# smoothed look dearer on half the blank frames), a floor of 12 or 10 for the bands' cuts (as
# many frames lost as gained), a third band down to FINE_PAPER (nothing more).
SMOOTH_BANDS = (0.85, 0.6)
SMOOTH_BAND_SHARE = 0.1
SMOOTH_BAND_BELOW = 0.8
SMOOTH_BAND_PAD = 0.3


def smooth(gray: np.ndarray) -> np.ndarray:
    """``gray`` (uint8) filtered by [1 4 6 4 1] / 16 in each direction, edges replicated,
    rounded half up, the same bytes on every CPU: the sums are integers below 2**24, which
    float32 holds exactly in any order of summing, and :func:`floor_div` by 256 is exact.
    (OpenCV's GaussianBlur on uint8 is routed through builds that may round otherwise, as its
    resize is on ARM.)"""
    return floor_div(cv2.sepFilter2D(gray, cv2.CV_32F, _BINOMIAL, _BINOMIAL, None, (-1, -1), 0.0, cv2.BORDER_REPLICATE), 256)


_BINOMIAL = np.array([1, 4, 6, 4, 1], np.float32)


def smoothed_digits(pyr: Pyramid, opts, every: bool, read: list | None = None,
                    rows: tuple[int, int] | None = None) -> list[Digit]:
    """The digits of the closer look's copy smoothed (see SMOOTH_GRAIN and SMOOTH_BANDS), or [].
    (The copy is smoothed, not its ink map: the closing of a grainy copy rides on the grain's
    peaks, which lifts the whole ink map.)  ``read``: frame boxes of digits read already, blanked
    before the grain is measured and not judged again; ``rows``: (y0, y1) of that copy, the only
    rows looked at (the frame's cut alone).  One digit (``every`` False): the first found, from the
    lowest cut up."""
    finer, s = pyr.finer, pyr.scale * 2
    k = kernels(max(finer.shape[:2]))[0]
    r0, r1 = rows or (0, finer.shape[0])
    part = ink_map(smooth(finer[r0:r1]), k, s)
    _blank(part.ink, read or (), s, r0)
    # (The grain's 90th percentile from every other row and column, a statistic of the grain,
    # with the rulings on the lit paper taken out: see SMOOTH_RULING.)
    grain = np.ascontiguousarray(part.ink[::2, ::2])
    paper = np.ascontiguousarray(part.paper[::2, ::2])
    lit = _lit_paper(part)
    sheet = cv2.threshold(paper, int(SMOOTH_RULED_LIT * lit), 255, cv2.THRESH_BINARY)[1]
    grain = cv2.subtract(grain, cv2.bitwise_and(cv2.morphologyEx(grain, cv2.MORPH_OPEN, _RULING), sheet))
    if rows:   # (a number's lines: their rows hold little but the sheet)
        thr, bands = _smooth_cut(cv2.calcHist([grain], [0], None, [256], [0, 256]).ravel().cumsum()), []
    else:
        thr, bands = _grain_cuts(grain, paper, lit)
    cuts = [(t, lo, hi, True) for t, lo, hi in bands if t <= SMOOTH_BAND_BELOW * min(thr, opts.min_contrast)]
    if thr < opts.min_contrast:
        cuts.append((thr, FINE_PAPER * lit, 256, False))
    if not cuts:
        return []   # the grain is as strong as ink even smoothed
    im = part
    if rows:   # (the strip in a map of the whole copy, zero elsewhere: the digits' boxes are the copy's)
        ink, paper, gray = np.zeros_like(finer), np.zeros_like(finer), finer.copy()
        ink[r0:r1], paper[r0:r1], gray[r0:r1] = part.ink, part.paper, part.gray
        im = InkMap(ink, gray, paper, s, k)
    found: list[Digit] = []
    for t, lo, hi, band in sorted(cuts):
        low, cut = _cut_at(opts, t), im
        if band:   # its ink alone
            near = cv2.dilate(cv2.inRange(im.paper, lo, hi - 1), _square(2 * k + 1))
            cut = InkMap(cv2.bitwise_and(im.ink, near), im.gray, im.paper, s, k)
        _assemble(cut, low)
        for d in digits_at(cut, low, every, seed_contrast=1.0, grain=False)[0]:
            box = im.paper[d.y0:d.y1, d.x0:d.x1]
            if d.seed.stroke <= min(SMOOTH_STROKE, SMOOTH_SLIM * (d.y1 - d.y0)) and _even_paper(box) \
                    and lo <= cv2.mean(box)[0] < hi and not any(_overlaps(d.frame_box(), f.frame_box()) for f in found) \
                    and (not band or _quiet_around(grain, d, t)):
                found.append(d)
        cut._blobs.clear()   # (the blobs refer back to the map: see Pyramid.__exit__)
        if found and not every:
            break
    return found


def _quiet_around(grain: np.ndarray, d: Digit, cut: int) -> bool:
    """Is the grain around ``d`` below ``cut``: SMOOTH_GRAIN x the 90th percentile of ``grain``
    (the copy's, every other row and column) over its box padded by SMOOTH_BAND_PAD x its
    height, the box itself left out, at most ``cut``?"""
    H, W = grain.shape
    m = max(1, int(SMOOTH_BAND_PAD * (d.y1 - d.y0)))
    bx0, bx1, by0, by1 = d.x0 // 2, (d.x1 + 1) // 2, d.y0 // 2, (d.y1 + 1) // 2
    y0, y1, x0, x1 = max(0, by0 - m // 2), min(H, by1 + m // 2), max(0, bx0 - m // 2), min(W, bx1 + m // 2)
    ring = np.ones((y1 - y0, x1 - x0), np.uint8)
    ring[max(0, by0 - y0):by1 - y0, max(0, bx0 - x0):bx1 - x0] = 0
    cum = cv2.calcHist([np.ascontiguousarray(grain[y0:y1, x0:x1])], [0], ring, [256], [0, 256]).ravel().cumsum()
    return cum[-1] == 0 or SMOOTH_GRAIN * int(np.searchsorted(cum, 0.9 * cum[-1])) <= cut


def _grain_cuts(grain: np.ndarray, paper: np.ndarray, lit: int) -> tuple[int, list[tuple[int, int, int]]]:
    """The frame's cut (SMOOTH_GRAIN x the grain's 90th percentile, at least SMOOTH_FLOOR) and
    (cut, lowest paper, paper above) of each band of the paper level (SMOOTH_BANDS) holding
    more than SMOOTH_BAND_SHARE of the pixels, from one joint histogram of the grain and the
    band each pixel is in.  ``grain``, ``paper``: the same pixels."""
    los = [int(f * lit) for f in SMOOTH_BANDS]
    band = np.zeros_like(paper)   # 0: the top band, i: below SMOOTH_BANDS[i - 1]
    for lo in los:
        band += cv2.threshold(paper, lo - 1, 1, cv2.THRESH_BINARY_INV)[1]
    cum = cv2.calcHist([grain, band], [0, 1], None, [256, len(los) + 1], [0, 256, 0, len(los) + 1]).cumsum(axis=0)
    out, hi = [], 256
    for i, lo in enumerate(los):
        if cum[-1, i] > SMOOTH_BAND_SHARE * grain.size:
            out.append((_smooth_cut(cum[:, i]), lo, hi))
        hi = lo
    return _smooth_cut(cum.sum(axis=1)), out


def _smooth_cut(cum: np.ndarray) -> int:
    """The smoothed look's cut from the grain's cumulative histogram: SMOOTH_GRAIN x its 90th
    percentile (as :func:`_quantile`: the least value with 90 % at or below it), at least
    SMOOTH_FLOOR."""
    return max(SMOOTH_FLOOR, int(round(SMOOTH_GRAIN * int(np.searchsorted(cum, 0.9 * cum[-1])))))


# A number's line with a gap at least LINE_GAP x its median digit height between two of its
# digits misses a digit there, too faint or too broken for level 0 and the closer look (a fine
# pen's, motion blur, dim light), and may miss more at its ends: the copy at twice the working
# size is read smoothed (:func:`smoothed_digits`), and its digits clear of those read, in a
# line's band (reaching LINE_REACH x the height beyond its ends) and at least LINE_SHORTEST x as
# tall, join the line.  The copy is read in the rows of the lines' bands only, the digits read
# already blanked (they are not judged again).  (A window on the gap alone found half of these:
# the digits missing at a line's ends are the rest.)  Chosen on the design writers' and MNIST
# fine-pen number clips: at 0.5 x the height, 20 % of the scene clips' 8-digit frames have such a
# gap between digits all read, at 0.65 8 % (and 13 of the 16 numbers gained at 0.5), at 0.8 4 %.
LINE_GAP = 0.65


def gap_digits(pyr: Pyramid, lines: list[list[Digit]], opts) -> list[Digit]:
    """The digits the smoothed copy adds to lines with a gap (see LINE_GAP), else []."""
    many = [line for line in lines if len(line) >= 2]
    if pyr.finer is None or not many:
        return []
    bands, gap = [], False
    for line in many:
        lb = [d.frame_box() for d in line]
        hm, x0, y0, x1, y1 = _line_extent(lb)
        gap = gap or any(b[0] - a[2] >= LINE_GAP * hm for a, b in zip(lb, lb[1:]))
        bands.append(_band(hm, x0, y0, x1, y1))
    if not gap:
        return []
    boxes = [d.frame_box() for line in lines for d in line]
    s, H = pyr.scale * 2, pyr.finer.shape[0]
    rows = (max(0, int(s * min(b[1] for b in bands)) - 1), min(H, int(s * max(b[3] for b in bands)) + 2))
    out = []
    for d in smoothed_digits(pyr, opts, True, boxes, rows):
        box = d.frame_box()
        if _joins(box, boxes, bands):
            out.append(d)
            boxes.append(box)
    return out


# A number's digits paler than the ink threshold at a line's ends or in a gap (a fine pen's line
# blurred by motion or in dim light, the pen running dry): level 0 is cut again there, in windows
# over the line's rows (padded by LINE_PAD x its median digit height) reaching LINE_REACH x that
# height beyond its ends and over each gap of LINE_GAP x it, at LINE_PALE x the median ink of
# the line's digits (the line's own pen), at least LINE_PALE_FLOOR and LINE_PALE_GRAIN x the
# frame's grain (level 0's ink, 80th percentile of every other pixel); the digits read already
# are blanked.  A digit found there is kept as the closer look keeps one (strokes at most
# LINE_PALE_STROKE px and LINE_PALE_SLIM x its height, on even paper at least FINE_PAPER x as
# bright as the lit paper) when it joins the line (clear of those read, in the line's band, at
# least LINE_SHORTEST x as tall).  Level 0, not the smoothed finer copy: its 2x2 means keep half
# of a one-pixel line as the smoothing does, and it is cut already (the finer copy smoothed in
# these windows read 7 numbers more of the scene clips, and lost 4, at three times the cost).
# Chosen on the design writers' and MNIST number clips, fine pens' included (+9 numbers; one
# frame lost, of a single digit read in the number mode: a grid's line broken by glare beside
# it); with lines of two or more and one look, the scene clips' totals were the same with
# LINE_PALE_FLOOR 8-12, LINE_PALE_STROKE 3-6, LINE_PALE_SLIM 0.25-0.35 or LINE_PAD 0.3, while
# LINE_PALE 0.2 read two design numbers wrong and 0.4 kept 5 of the 17 numbers gained.
LINE_PAD = 0.2   # (every look at a line's band pads it so: gap_digits, line_pieces too)
LINE_PALE = 0.3
LINE_PALE_FLOOR = 12
LINE_PALE_GRAIN = 2.0
LINE_PALE_STROKE = 4.0
LINE_PALE_SLIM = 0.25
# The look is repeated while it adds digits, up to LINE_PALE_LOOKS times (preprocess.prepare_all):
# each reaches LINE_REACH x the height beyond a line's ends, so a line of pale digits is read on
# to its end (a hairline number of 8 whose two bold 1s alone were read at first).
LINE_PALE_LOOKS = 4
# A line of one digit is looked at too (a number whose other digits are all paler).  The windows
# show the ink LINE_PALE_SEEN x the height above and below the line's band, so that a grid's
# line crossing the band is seen to run on (blobs.continues), not taken for a 1.
LINE_PALE_SEEN = 0.5


def faint_line_digits(pyr: Pyramid, lines: list[list[Digit]], opts) -> list[Digit]:
    """The digits level 0 cut lower shows at the ends and in the gaps of the lines (see
    LINE_PALE), else []."""
    if not lines:
        return []
    boxes = [[d.frame_box() for d in line] for line in lines]
    im0 = pyr.level(0)
    s = im0.scale
    H, W = im0.ink.shape
    contrast = sorted(d.seed.contrast for line in lines for d in line)
    thr = max(LINE_PALE_FLOOR, int(round(LINE_PALE * contrast[len(contrast) // 2])))
    # The grain's term: its quantile is looked up only when at least a fifth of the pixels reach
    # half the cut (a threshold and a count cost a fraction of a histogram).
    grain = np.ascontiguousarray(im0.ink[::2, ::2])
    if _grainy(grain, thr / LINE_PALE_GRAIN - 1, 0.2):
        thr = max(thr, int(round(LINE_PALE_GRAIN * _quantile(grain, 0.8))))
    if thr >= opts.min_contrast:
        return []
    read = [b for lb in boxes for b in lb]
    bands, windows = [], []
    for lb in boxes:
        hm, *extent = _line_extent(lb)
        x0, y0, x1, y1, _ = band = _band(hm, *extent)
        bands.append(band)
        spans = [(x0, x0 + LINE_REACH * hm), (x1 - LINE_REACH * hm, x1)]
        spans += [(a[2], b[0]) for a, b in zip(lb, lb[1:]) if b[0] - a[2] >= LINE_GAP * hm]
        for a, b in spans:
            wx0, wx1 = max(0, int(s * a)), min(W, int(s * b) + 1)
            if wx1 - wx0 >= 0.25 * s * hm:
                m = LINE_PALE_SEEN * hm
                windows.append((wx0, max(0, int(s * (y0 - m))), wx1, min(H, int(s * (y1 + m)) + 1)))
    if not windows:
        return []
    ink = np.zeros_like(im0.ink)
    for wx0, wy0, wx1, wy1 in windows:
        ink[wy0:wy1, wx0:wx1] = im0.ink[wy0:wy1, wx0:wx1]
    _blank(ink, read, s)
    im = InkMap(ink, im0.gray, im0.paper, s, im0.k)
    low = _cut_at(opts, thr)
    _assemble(im, low)
    out, lit = [], None
    for d in digits_at(im, low, True, seed_contrast=1.0, grain=False)[0]:
        paper = im.paper[d.y0:d.y1, d.x0:d.x1]
        if d.seed.stroke > min(LINE_PALE_STROKE, LINE_PALE_SLIM * (d.y1 - d.y0)) or not _even_paper(paper):
            continue
        lit = _lit_paper(im0) if lit is None else lit
        box = d.frame_box()
        if cv2.mean(paper)[0] >= FINE_PAPER * lit and _joins(box, read, bands):
            out.append(d)
            read.append(box)
    im._blobs.clear()   # (the blobs refer back to the map: see Pyramid.__exit__)
    return out


@functools.lru_cache(maxsize=64)
def _cut_at(opts, thr: int):
    """``opts`` with the ink threshold ``thr`` (dataclasses.replace costs ~10 us a call)."""
    return dataclasses.replace(opts, min_contrast=thr)


def _quantile(img: np.ndarray, q: float) -> int:
    """The ``q`` quantile of a contiguous uint8 image, from its histogram (the least value with
    at least ``q`` of the pixels at or below it)."""
    cum = cv2.calcHist([img], [0], None, [256], [0, 256]).ravel().cumsum()
    return int(np.searchsorted(cum, q * cum[-1]))


def _assemble(im: InkMap, opts) -> None:
    """A fine pen's faint line breaks, at the ink threshold, into pieces each too low to be a
    digit (a 3 into its arcs).  Pieces that share columns or rows and lie within a few pixels
    of each other are bridged (a dilation of their masks alone, so nothing else joins) into one
    blob of their ink added to the level's pool, where it is judged as any blob.  Horizontal dashes (a
    ruling's pieces) are left out."""
    thr = opts.min_contrast
    H, W = im.ink.shape
    least = opts.min_height * H
    pool = im.blobs(thr)
    frags = sorted((b for b in pool if b.h < least and max(b.w, b.h) >= ASSEMBLE_PIECE * least
                    and b.w <= ASSEMBLE_DASH * b.h), key=lambda b: b.x)
    if len(frags) < 2:
        return
    g = max(2, int(round(ASSEMBLE_GAP * least)))
    group = list(range(len(frags)))      # union-find over the pieces

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i, a in enumerate(frags):
        for j in range(i + 1, len(frags)):
            b = frags[j]
            if b.x > a.x + a.w + g:
                break   # sorted by x: every later piece is further right
            ox = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
            oy = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
            if ox >= -g and oy >= -g and (ox >= 0.3 * min(a.w, b.w) or oy >= 0.3 * min(a.h, b.h)):
                group[root(i)] = root(j)
    groups: dict[int, list[Blob]] = {}
    for i, b in enumerate(frags):
        groups.setdefault(root(i), []).append(b)
    for parts in groups.values():
        if len(parts) < 2:
            continue
        x0, y0 = min(b.x for b in parts), min(b.y for b in parts)
        x1, y1 = max(b.x + b.w for b in parts), max(b.y + b.h for b in parts)
        if not least <= y1 - y0 <= opts.max_height * H:
            continue
        m = g + 1   # margin: the dilation stays inside the canvas
        canvas = np.zeros((y1 - y0 + 2 * m, x1 - x0 + 2 * m), np.uint8)
        for b in parts:
            sub = canvas[b.y - y0 + m:b.y - y0 + m + b.h, b.x - x0 + m:b.x - x0 + m + b.w]
            cv2.bitwise_or(sub, b.mask(), dst=sub)
        # Joined by a dilation, not a closing: a closing bridges a gap only where its whole
        # square fits in the dilated strokes, which a bend of a thin curve's ends never leaves
        # (a 5's bowl two pixels from its stem stayed two blobs).  The outline comes from the
        # dilation; the blob's ink is the pieces' pixels alone, boxed tightly.
        grown = cv2.dilate(canvas, _square(2 * g + 1))
        cx0, cy0 = x0 - m, y0 - m
        grown[:, :max(0, -cx0)] = 0            # (no outline beyond the level's edges)
        grown[:max(0, -cy0)] = 0
        grown[:, max(0, W - cx0):] = 0
        grown[max(0, H - cy0):] = 0
        pool.extend(joined(im, thr, parts, canvas, grown, cx0, cy0, least))


def _grainy(ink: np.ndarray, level: int, share: float) -> bool:
    """Is the ink above ``level`` on more than ``share`` of its pixels (dim light's grain)?  A
    threshold and a count: a fraction of a histogram's cost."""
    return cv2.countNonZero(cv2.threshold(ink, level, 255, cv2.THRESH_BINARY)[1]) > share * ink.size


def _lit_paper(im: InkMap) -> int:
    """The lit paper's level: the paper level's 90th percentile, from every other row and
    column (the closing's plateaus are far wider than two pixels)."""
    return _quantile(np.ascontiguousarray(im.paper[::2, ::2]), 0.9)


# A digit level 0 saw whole but paler than a seed (a fine pen's line, faded by the halving, that
# the closer look could not take either: widened past FINE_STROKE by motion blur, or broken
# there), read when a single digit is wanted and nothing else was found: a digit-like blob
# (device.blobs.assess) whose mean ink is at least PALE_SEED x min_contrast and whose strokes
# are under PALE_THIN px, on paper even in its box padded by PALE_PAD x its height (a desk's
# grain beside the sheet's edge, a shadow's edge: not even) and at least PALE_LIT x as bright
# as the lit paper (a dark desk), in a level whose ink is quiet: at most a tenth of it above
# PALE_QUIET (dim light's grain makes pale blobs of its own).  Chosen on the design writers' and
# MNIST fine-pen clips and the blank scenes, generated hostile and plain blank scenes guarding
# (benchmarks/scenes.py).
PALE_SEED = 1.35
PALE_THIN = 2.5
PALE_PAD = 0.25
PALE_LIT = 0.5
PALE_QUIET = 20


def pale_digit(pyr: Pyramid, opts) -> Digit | None:
    """The tallest pale digit-like blob of level 0 (see PALE_SEED) grown into a digit, or None.
    Called after :func:`find_digits` and :func:`fine_digits` found nothing, so level 0's blobs
    are judged already."""
    im = pyr.level(0)
    H, W = im.ink.shape
    if _grainy(im.ink, PALE_QUIET, 0.1):
        return None   # dim light's grain: a pale blob may be made of it
    pool = im.blobs(opts.min_contrast)
    lit = None
    for b in sorted((b for b in pool if b.why == "" and b.stroke < PALE_THIN
                     and b.contrast >= PALE_SEED * opts.min_contrast), key=lambda b: -b.h):
        m = int(PALE_PAD * b.h)
        if not _even_paper(im.paper[max(0, b.y - m):min(H, b.y + b.h + m), max(0, b.x - m):min(W, b.x + b.w + m)]):
            continue
        lit = PALE_LIT * _lit_paper(im) if lit is None else lit
        if cv2.mean(im.paper[b.y:b.y + b.h, b.x:b.x + b.w])[0] >= lit:
            return grow(b, pool, set(), opts, alone=True)
    return None


def _even_paper(paper: np.ndarray) -> bool:
    """Is the paper level ``paper`` (a box of it) even (no step of a shadow or an edge)?"""
    # Its 5th and 95th percentiles (np.percentile's: each between two neighbouring order
    # statistics) lie between the order statistics one rank further out, read from a histogram
    # at a fraction of np.percentile's cost: they decide the test unless it is close.
    n = paper.size - 1
    ranks = [max(0, int(0.05 * n) - 1), min(n, int(0.05 * n) + 2), max(0, int(0.95 * n) - 1), min(n, int(0.95 * n) + 2)]
    cum = cv2.calcHist([paper], [0], None, [256], [0, 256]).ravel().cumsum()
    lo0, lo1, hi0, hi1 = np.searchsorted(cum, ranks, side="right").tolist()   # the values at those ranks
    if lo0 >= FINE_FLAT * hi1 or lo1 < FINE_FLAT * hi0:
        return lo0 >= FINE_FLAT * hi1
    lo, hi = np.percentile(paper, (5, 95))
    return lo >= FINE_FLAT * hi


def _fine_pen(pyr: Pyramid, digits: list[Digit], opts) -> str | None:
    """Does level 0 show a fine pen?  "thin": its digits' strokes are thin, or, with none found,
    a thin blob is there; "beside": its digits are not thin, but a thin blob of a digit's size
    lies outside them (a fine pen's digits beside a bold mark); else None."""
    if digits:
        strokes = sorted(d.seed.stroke for d in digits)
        if strokes[len(strokes) // 2] < FINE_THIN:
            return "thin"
    im = pyr.level(0)
    least = (FINE_BESIDE if digits else FINE_EVIDENCE) * opts.min_height * im.ink.shape[0]
    taken = {id(b) for d in digits for b in d.parts}
    boxes = [d.frame_box() for d in digits]
    for b in im.blobs(opts.min_contrast):
        if max(b.w, b.h) < least or id(b) in taken or any(_overlaps(b.frame_box(), x) for x in boxes):
            continue
        b.measure()
        if b.stroke < FINE_EVIDENCE_STROKE:
            return "beside" if digits else "thin"
    return None


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
    extra = cv2.bitwise_and(big, cv2.bitwise_not(cv2.dilate(fine, K3, iterations=2)))
    if cv2.countNonZero(extra) < 0.15 * cv2.countNonZero(big) or not cv2.countNonZero(fine):
        return False
    # Darkest points (of a 3x3 mean: not a noisy pixel): the middle of a wide stroke is its
    # darkest part; a shadow's darkest point is still the shadowed paper.
    gray = cv2.blur(im0.gray[y0:y1, x0:x1], (3, 3))
    ink = cv2.minMaxLoc(gray, fine)[0]
    paper = cv2.mean(im0.paper[y0:y1, x0:x1], fine)[0]
    return cv2.minMaxLoc(gray, extra)[0] - ink > 0.25 * max(paper - ink, 1.0)


def _neighbours(c: Digit, inside: list[Digit]) -> bool:
    """Are level 0's digits inside level 1's digit ``c`` neighbours on a line (level 1 ran them
    together at half size), not pieces of one digit?  Neighbours leave a gap of columns between
    them that no hole of ``c`` spans: the two arcs of one bold 0 are pieces, its hole spans the
    gap.  Only digits at least half as tall as the tallest count (the reading order's own
    floor): a bold 2's foot, whose blot at the stroke's end level 0 took for a small digit, is a
    piece."""
    if not inside:
        return False
    boxes = sorted(d.frame_box() for d in inside)
    top = max(b[3] - b[1] for b in boxes)
    boxes = [b for b in boxes if b[3] - b[1] >= 0.5 * top]
    gaps = [(a[2], b[0]) for a, b in zip(boxes, boxes[1:]) if b[0] >= a[2]]
    if not gaps:
        return False
    s = c.im.scale
    holes = [(hx / s, (hx + hw) / s) for hx, _, hw, hh in map(cv2.boundingRect, c.seed.holes)
             if hh >= 0.25 * (c.y1 - c.y0)]
    return not any(x0 <= g0 and g1 <= x1 for g0, g1 in gaps for x0, x1 in holes)


def _maybe_thick(d: Digit, k: int) -> bool:
    """Could level 0 have seen only part of this digit?  Its strokes are near the kernel's
    width, or the paper level under it dips (a stroke the closing could not fill stays dark in
    the paper estimate)."""
    if max(p.stroke for p in d.parts) >= 0.6 * k:
        return True
    paper = d.im.paper[d.y0:d.y1, d.x0:d.x1]
    lo, hi = cv2.minMaxLoc(paper)[:2]
    # The mean is at most the maximum: no mean to take when the least is 0.65 x the maximum or
    # more (nearly every digit's paper: the closing's plateaus).
    return lo < 0.65 * hi and lo < 0.65 * cv2.mean(paper)[0]


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


# A digit of a number that level 0 saw only in pieces (an ordinary pen's line broken at the
# working size by motion blur, a shadow's dim side, a small digit): a blob in line with two or
# more of a line's digits, part of none, at least LINE_PIECE x their median height (tall or
# wide) and no taller than LINE_TALLEST x it, makes the closer look read that line in the copy
# at twice the working size, in a window around the piece; its digits clear of level 0's, in
# the line's band (reaching LINE_REACH x the height beyond its ends) and at least LINE_SHORTEST
# x as tall, join them.  A window whose ink is above FINE_NOISE on more than LINE_NOISE of its
# pixels is dim light's grain, skipped (its specks cost milliseconds to cut and judge).
# Chosen on the held-out writers' number clips (round 7 looked at one writer's failures),
# checked on number clips of new scenes (benchmarks/scenes.py's docstring).
LINE_PIECE = 0.3
LINE_TALLEST = 1.3
LINE_REACH = 1.5
LINE_SHORTEST = 0.6
LINE_NOISE = 0.25


def _line_extent(lb: list) -> tuple[float, float, float, float, float]:
    """A line's digit boxes (frame coordinates, left to right) -> (their median height hm,
    x0, y0, x1, y1): the line's rows, its columns reaching LINE_REACH x hm beyond its ends."""
    hm = sorted(b[3] - b[1] for b in lb)[len(lb) // 2]
    return (hm, min(b[0] for b in lb) - LINE_REACH * hm, min(b[1] for b in lb),
            max(b[2] for b in lb) + LINE_REACH * hm, max(b[3] for b in lb))


def _band(hm: float, x0: float, y0: float, x1: float, y1: float) -> tuple:
    """A line's band, where a digit found by a look at it must lie (:func:`_joins`): its extent
    (:func:`_line_extent`) padded by LINE_PAD x its median height ``hm`` above and below, and
    the least height of a digit of it."""
    return x0, y0 - LINE_PAD * hm, x1, y1 + LINE_PAD * hm, LINE_SHORTEST * hm


def _joins(box, read: list, bands: list) -> bool:
    """Does a digit found at ``box`` join a line: clear of every digit ``read``, inside a band
    (x0, y0, x1, y1, least height) and at least as tall as it asks?"""
    dx0, dy0, dx1, dy1 = box
    return not any(_area(_intersection(box, x)) for x in read) and any(
        dx0 >= x0 and dx1 <= x1 and dy0 >= y0 and dy1 <= y1 and dy1 - dy0 >= least for x0, y0, x1, y1, least in bands)


def _blank(ink: np.ndarray, boxes: list, s: float, r0: int = 0) -> None:
    """Zero ``ink`` (the rows from ``r0`` of a map at scale ``s``) under the frame ``boxes`` of
    digits read already: they are not judged again."""
    for bx0, by0, bx1, by1 in boxes:
        ink[max(0, int(s * by0) - r0):max(0, int(s * by1) + 1 - r0), max(0, int(s * bx0)):int(s * bx1) + 1] = 0


def line_pieces(pyr: Pyramid, lines: list[list[Digit]], opts) -> list[Digit]:
    """The digits the closer look adds where level 0 left pieces in line with a number's
    digits (see LINE_PIECE), else []."""
    many = [line for line in lines if len(line) >= 2]
    if pyr.finer is None or not many:
        return []
    digits = [d for line in lines for d in line]
    taken = {id(b) for d in digits for b in d.parts}
    boxes = [d.frame_box() for d in digits]
    line_boxes = [[d.frame_box() for d in line] for line in many]
    im0 = pyr.level(0)
    s0 = im0.scale
    # (Specks first: a piece is at least LINE_PIECE x the lowest digit's height of these lines,
    # and most blobs of a textured frame are specks.)
    floor = LINE_PIECE * s0 * min(b[3] - b[1] for lb in line_boxes for b in lb)
    pool = [b for b in im0.blobs(opts.min_contrast) if (b.w >= floor or b.h >= floor) and id(b) not in taken]
    looks = []   # (window to look at, band a digit must lie in with its least height): frame coordinates
    for lb in line_boxes:
        hm, x0, y0, x1, y1 = _line_extent(lb)
        band = _band(hm, x0, y0, x1, y1)
        least, most = LINE_PIECE * hm * s0, LINE_TALLEST * hm * s0   # (level 0's pixels)
        ly0, ly1, lx0, lx1 = y0 * s0, y1 * s0, x0 * s0, x1 * s0
        for b in pool:
            if (b.h < least and b.w < least) or b.h > most or b.x + b.w < lx0 or b.x > lx1 \
                    or min(b.y + b.h, ly1) - max(b.y, ly0) < 0.5 * b.h:
                continue
            # A piece on the frame's border (a sheet's or a shadow's edge going out of view) is
            # on the copy's border too, where the closer look turns it down or recuts it: it
            # added no digit to any number of the scene clips and cost up to 0.3 ms a frame.
            if b.why == "touches the border":
                continue
            bx0, by0, bx1, by1 = box = b.frame_box()
            if any(_overlaps(box, x) for x in boxes):
                continue
            # The window: the piece and a digit's height around it, the band's rows and more.
            looks.append(((bx0 - hm, y0 - hm, bx1 + hm, y1 + hm), band))
    if not looks:
        return []
    # The finer copy's ink map in those windows alone, zero elsewhere (a textured desk or dim
    # light's grain elsewhere in view would cost milliseconds of blobs to judge); the closing
    # near a window's side sees only the window.
    finer, s = pyr.finer, pyr.scale * 2
    H, W = finer.shape[:2]
    k = kernels(max(H, W))[0]
    ink, paper = np.zeros_like(finer), np.zeros_like(finer)
    for x0, y0, x1, y1 in _merged([(max(0, int(s * wx0)), max(0, int(s * wy0)), min(W, int(s * wx1) + 1),
                                    min(H, int(s * wy1) + 1)) for (wx0, wy0, wx1, wy1), _ in looks]):
        if x1 - x0 > k and y1 - y0 > k:
            part = ink_map(finer[y0:y1, x0:x1], k)
            if not _grainy(part.ink, FINE_NOISE, LINE_NOISE):
                ink[y0:y1, x0:x1], paper[y0:y1, x0:x1] = part.ink, part.paper
    _blank(ink, boxes, s)   # (level 0's digits)
    im = InkMap(ink, finer, paper, s, k)
    bands = [band for _, band in looks]
    out = [d for d in digits_at(im, opts, True)[0] if _joins(d.frame_box(), boxes, bands)]
    im._blobs.clear()   # (the blobs refer back to the map: see Pyramid.__exit__)
    return out


def _merged(boxes: list) -> list:
    """Boxes (x0, y0, x1, y1), those that overlap replaced by their union until none does."""
    out = list(boxes)
    i = 0
    while i < len(out):
        a = out[i]
        for j in range(i + 1, len(out)):
            if _area(_intersection(a, out[j])):
                out[i] = _union([a, out[j]])
                del out[j]
                break
        else:
            i += 1
    return out
