import platform
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.preprocess import prepare, prepare_all
from device.synth import render_frame
from tests.conftest import gray_frame


def test_blank_paper_is_no_digit():
    assert prepare(gray_frame()).image is None
    # Uneven light and noise alone are not a digit either.
    rng = np.random.default_rng(0)
    for _ in range(10):
        assert prepare(render_frame(None, rng)).image is None


def test_empty_frame():
    assert prepare(np.zeros((0, 0), np.uint8)).image is None


def test_drawn_digit_is_found_centred_and_white_on_black():
    frame = np.full((480, 640, 3), 225, np.uint8)
    cv2.line(frame, (400, 100), (400, 300), (40, 40, 40), 14)  # a "1" at x 393..407, y 93..307
    p = prepare(frame)
    assert p.image is not None and p.image.shape == (28, 28) and p.image.dtype == np.float32
    x, y, w, h = p.region
    assert abs(x - 393) <= 6 and abs(y - 93) <= 6 and abs(h - 214) <= 12
    img = p.image
    assert img.max() == pytest.approx(1.0) and img[0].max() == 0 and img[:, 0].max() == 0
    # Fitted into the 20-px box and centred by mass: rows 4..23 hold the stroke.
    rows = np.nonzero(img.max(axis=1) > 0.3)[0]
    assert 3 <= rows[0] <= 5 and 22 <= rows[-1] <= 24
    cols = np.nonzero(img.max(axis=0) > 0.3)[0]
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1


def test_uneven_light_and_coloured_ink(mnist):
    rng = np.random.default_rng(3)
    found = 0
    for i in range(30):
        p = prepare(render_frame(mnist.x_test[i], rng))
        found += p.image is not None
    assert found >= 29


def test_gray_and_bgra_frames_agree():
    bgr = np.full((240, 320, 3), 220, np.uint8)
    cv2.circle(bgr, (160, 120), 60, (30, 30, 30), 10)
    a = prepare(bgr)
    b = prepare(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    c = prepare(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    assert a.region == b.region == c.region
    assert np.abs(a.image - b.image).max() < 0.05


# -- real scenes (issue 13) -------------------------------------------------------------------

# Scenes with a shadow and the sheet's edge in most frames (the round-6 and round-7 checks).
PLAIN = dict(p_edge=0, p_shadow=0, p_ruled=0, p_squared=0, p_stray=0, p_spot=0, p_glare=0, p_motion=0,
             p_lowlight=0, p_border=0)


def _lores(frame):
    """A 640x480 BGR scene as the Pi camera's lores stream (and a replay's reduced decode) gives
    it: gray, 320x240."""
    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (320, 240), interpolation=cv2.INTER_AREA)


def _scene_glyphs():
    from device.glyphs import mnist_glyphs
    from device.synth import load_sample

    x, y = load_sample()
    return mnist_glyphs(x[:100], y[:100])


def _on_digit(region, box) -> bool:
    """The found region is the digit: its centre inside the true box and its size close."""
    x, y, w, h = region
    bx, by, bw, bh = box
    return bx <= x + w / 2 <= bx + bw and by <= y + h / 2 <= by + bh and 0.6 * bh <= h <= 1.4 * bh


def _shadowed_paper(edge_x0=260, edge_x1=380, dark=0.45):
    """Lit paper with a hard shadow's straight edge crossing it (the right part in shadow)."""
    yy, xx = np.mgrid[0:480, 0:640]
    edge = edge_x0 + (edge_x1 - edge_x0) * yy / 480
    light = np.where(xx > edge, 1.0 - dark, 1.0)
    return cv2.GaussianBlur((215 * light).astype(np.float32), (0, 0), 0.8)


def _put_digit(img, text, org, scale, value, thick):
    """Draw a digit with cv2.putText; returns its box (x, y, w, h)."""
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.putText(mask, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick)
    img[mask > 0] = value
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def _close(region, box, tol=12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(region, box))


def test_hard_shadow_edge_is_not_a_digit():
    # The failure: a max-filter background spread the lit side over the shadow and
    # made a band of "ink" along the edge; the closing keeps the step where it is.
    frame = np.clip(_shadowed_paper(), 0, 255).astype(np.uint8)
    assert prepare(frame).image is None
    with_digit = frame.copy()
    box = _put_digit(with_digit, "3", (120, 330), 7, 30, 14)
    p = prepare(with_digit)
    assert p.image is not None and _close(p.region, box), (p.region, box)  # the 3, not the edge


def test_digit_inside_the_shadow_and_across_its_edge():
    frame = _shadowed_paper(300, 300)
    for x0 in (380, 250):   # wholly in the shadow, then across its edge
        img = frame.copy()
        mask = np.zeros(img.shape, np.uint8)
        box = _put_digit(mask, "7", (x0, 330), 7, 255, 14)
        img = np.where(mask > 0, img * 0.2, img).astype(np.uint8)   # ink darkens lit and shadowed paper alike
        p = prepare(img)
        assert p.image is not None and _close(p.region, box), (p.region, box)


def test_paper_edge_with_a_dark_desk():
    frame = np.full((480, 640), 205, np.uint8)
    rng = np.random.default_rng(0)
    grain = cv2.resize(rng.uniform(-1, 1, (48, 3)).astype(np.float32), (180, 480), interpolation=cv2.INTER_CUBIC)
    frame[:, 460:] = np.clip(55 + 18 * grain, 0, 255).astype(np.uint8)      # a wood desk, grain along y
    frame[:, 455:460] = 35                                                  # the sheet's thin shadow
    assert prepare(frame).image is None
    box = _put_digit(frame, "5", (200, 330), 6, 40, 12)
    p = prepare(frame)
    assert p.image is not None and _close(p.region, box), (p.region, box)


def test_padded_border_strip_is_not_a_digit():
    frame = np.full((480, 640), 200, np.uint8)
    cv2.line(frame, (0, 60), (640, 60), 60, 3)
    frame[:40] = frame[40]            # a camera replicating a row into its top border
    frame[:, :30] = 20                # and a black bar down the left
    assert prepare(frame).image is None


@pytest.mark.parametrize("condition", ["p_shadow", "p_edge", "p_ruled", "p_squared", "p_stray", "small"])
def test_hard_scenes_find_the_digit(condition):
    from device.scenes import SceneOptions, scene

    opts = SceneOptions(**PLAIN, min_height=0.10, max_height=0.12) if condition == "small" else \
        SceneOptions(**(PLAIN | {condition: 1.0}))
    glyphs = _scene_glyphs()
    found = 0
    for i in range(10):
        frame, _, rec = scene(glyphs, 11, i, "digit", blank_every=0, opts=opts)
        p = prepare(frame)
        found += p.image is not None and _on_digit(p.region, rec["digits"][0]["box"])
    assert found >= 9, (condition, found)


def test_a_fine_pen_is_found_in_the_finer_copy():
    """A ballpoint's line (1.2 % of the digit's height) fades at the working size; the copy
    at twice the size finds it.  The preprocessing before the finer copy found 12 of these 20
    at 640x480 and 7 of 20 at the 320x240 a replay or the Pi camera's lores stream gives."""
    from device.glyphs import with_pen
    from device.scenes import SceneOptions, scene

    glyphs = [with_pen(g, 0.012, strength=0.8) for g in _scene_glyphs()[:20]]
    opts = SceneOptions(**PLAIN, min_height=0.25, max_height=0.5)
    found = {"640": 0, "320": 0}
    paths = set()
    for i in range(20):
        frame, _, rec = scene(glyphs, 13, i, "digit", blank_every=0, opts=opts)
        small = _lores(frame)
        for key, f, k in (("640", frame, 1), ("320", small, 2)):
            p = prepare(f)
            found[key] += p.image is not None and _on_digit(p.region, [v / k for v in rec["digits"][0]["box"]])
            paths.add(p.path)
    assert found["640"] >= 16 and found["320"] >= 11 and "fine" in paths, found


def test_a_pale_fine_pen_digit_under_motion_blur_is_read():
    """A pale ballpoint digit (60 % opaque) in a moving camera's frame at 320x240: level 0 sees
    it whole but paler than a seed, and the closer look measures its blurred line wider than a
    fine pen's.  Read from level 0 when nothing else is in view (before: 9 of these 30)."""
    from device.glyphs import with_pen
    from device.scenes import SceneOptions, scene

    glyphs = [with_pen(g, 0.015, strength=0.6) for g in _scene_glyphs()[:30]]
    opts = SceneOptions(**{**PLAIN, "p_motion": 1.0}, min_height=0.25, max_height=0.5)
    found = 0
    for i in range(30):
        frame, _, rec = scene(glyphs, 21, i, "digit", blank_every=0, opts=opts)
        small = _lores(frame)
        p = prepare(small)
        found += p.image is not None and _on_digit(p.region, [v / 2 for v in rec["digits"][0]["box"]])
    assert found >= 12, found


def test_a_pale_fine_pen_in_dim_light_is_read_and_dim_blank_paper_is_not():
    """Dim light's grain fills the closer look's copy of a pale ballpoint digit (60 % opaque)
    at 320x240: the copy smoothed shows the line above the grain (``levels.smoothed_digits``).
    Round 8's code read 3 of these 30; the same scenes without a digit stay "no digit"."""
    found, blank = _pen_scenes(0.012, "p_lowlight", (31, 32))
    assert found >= 9 and blank == 30, (found, blank)


def _pen_scenes(width: float, condition: str | tuple[str, ...], seeds: tuple[int, int],
                strength: float = 0.6, heights: tuple[float, float] = (0.2, 0.5)) -> tuple[int, int]:
    """30 plain scenes of ``condition`` (one or several) with an MNIST digit redrawn with a pen
    ``width`` x its height wide at ``strength`` opacity (seeds[0]), ``heights`` of the frame
    high, and 30 without a digit (seeds[1]), at 320x240: (digits found where they are, blank
    scenes read "no digit")."""
    from device.glyphs import with_pen
    from device.scenes import SceneOptions, scene

    glyphs = [with_pen(g, width, strength=strength) for g in _scene_glyphs()[:30]]
    conditions = (condition,) if isinstance(condition, str) else condition
    opts = SceneOptions(**{**PLAIN, **dict.fromkeys(conditions, 1.0)}, min_height=heights[0], max_height=heights[1])
    found = blank = 0
    for i in range(30):
        for seed, every in zip(seeds, (0, 1)):
            frame, _, rec = scene(glyphs, seed, i, "digit", blank_every=every, opts=opts)
            p = prepare(_lores(frame))
            if every:
                blank += p.image is None
            else:
                found += p.image is not None and _on_digit(p.region, [v / 2 for v in rec["digits"][0]["box"]])
    return found, blank


def test_a_hairline_digit_on_ruled_paper_is_read_and_blank_ruled_paper_is_not():
    """A hairline pen's digit (0.8 % of its height wide, 60 % opaque) is as pale as the rulings
    it touches: one blob with them, which no threshold parts.  The rulings are taken out by
    their shape (``blobs.unruled``: thin, straight, across the frame).  The code before read 17
    of these 30 digits, now 24.  Ruled sheets without a digit stay "no digit" (one of these 30,
    where the margin line crosses a ruling, was read as a digit before as now: the smoothed look)."""
    found, blank = _pen_scenes(0.008, "p_ruled", (41, 43))
    assert found >= 22 and blank >= 29, (found, blank)


def test_a_fine_pens_digit_on_ruled_paper_in_dim_light():
    """In dim light a fine pen's digit (1 % of its height wide) is read only smoothed, cut just
    above the grain's 90th percentile; the rulings, smoothed, fill much of that top tenth and lift
    the cut over the digit.  Rulings on the lit sheet are left out of the grain (``levels.SMOOTH_RULING``).
    The code before found 6 of these 30 digits, now 14; the sheets without a digit stay "no digit"."""
    found, blank = _pen_scenes(0.01, ("p_ruled", "p_lowlight"), (41, 43))
    assert found >= 12 and blank == 30, (found, blank)


def test_a_fine_pens_small_digit_beside_the_sheets_edge_is_cut_at_the_sheets_grain():
    """A small digit in a fine pen at half strength (1 % of its height wide, 10-20 % of the
    frame high) on the lit sheet with the desk in view: smoothed, the desk's texture lifted the
    frame's cut over the digit; the lit sheet's own grain is cut too (``levels.SMOOTH_BANDS``).
    The code before found 9 of these 30 digits, now 14; the sheets without a digit, the desk
    beside them, stay "no digit"."""
    found, blank = _pen_scenes(0.01, "p_edge", (51, 53), strength=0.5, heights=(0.1, 0.2))
    assert found >= 12 and blank == 30, (found, blank)


@pytest.mark.parametrize("name", ["desk-streak-at-sheet-edge", "stray-dash-on-squared-shadow"])
def test_a_bands_cut_keeps_no_digit_where_the_grain_around_it_is_strong(name, monkeypatch):
    """Two blank frames of generated scenes (320x240 as ``device run`` decodes them, kept as
    PNG) that a paper band's lower cut read as a digit: a desk's streak at the sheet's edge (the
    desk's bright streaks are as bright as the sheet) and a stray dash joined to a grid line's
    piece in a shadow.  The grain around a digit must be below the band's cut too
    (``levels.SMOOTH_BAND_PAD``); without that test both are read."""
    from device import levels

    frame = cv2.imread(str(Path(__file__).parent / "data" / "frames" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    assert prepare(frame).image is None
    monkeypatch.setattr(levels, "_quiet_around", lambda *a: True)
    assert prepare(frame).image is not None


def _hairline_ring(seed: int, sides: float = 70, arcs: float = 35) -> np.ndarray:
    """A hairline 0 on lit paper at 320x240 whose top and bottom arcs are paler (``arcs``, 0-255
    of the paper) than its sides: under motion blur or a dim light a fine pen's strokes fade
    where they run along the motion or thin out."""
    rng = np.random.default_rng(seed)
    img = np.full((240, 320), 200.0, np.float32)
    for a0, a1, ink in ((135, 225, sides), (-45, 45, sides), (45, 135, arcs), (225, 315, arcs)):
        m = np.zeros((960, 1280), np.uint8)
        cv2.ellipse(m, (640, 480), (88, 120), 0, a0, a1, 255, 5)
        img -= cv2.resize(m, (320, 240), interpolation=cv2.INTER_AREA).astype(np.float32) / 255 * 200 * ink / 255
    img += rng.normal(0, 2, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_a_hairline_digit_falling_apart_at_the_threshold_is_read_whole():
    """The 0's paler arcs fall under the ink threshold, which leaves its two sides as two
    blobs a third of its width apart; paler ink joins them (``blobs._Bridges``).  The code
    before read one side (a 1) in each of these 6 frames."""
    from device.runtime import Model

    model = Model(None)
    for seed in range(6):
        p = prepare(_hairline_ring(seed))
        assert p.image is not None and p.region[2] >= 40, (seed, p.region)
        assert model.predict(p.image).argmax() == 0, seed
    # A bold digit's pieces are not joined by the paler ink around them (only a pale seed's are).
    assert prepare(_hairline_ring(0, sides=90, arcs=35)).region[2] < 20


def test_the_grain_cuts_are_the_90th_percentiles_of_the_frame_and_of_each_band():
    """``levels._grain_cuts`` reads the frame's and each paper band's grain from one joint
    histogram: the same as each percentile computed alone (the frame's cut as before the bands)."""
    from device.levels import SMOOTH_BAND_SHARE, SMOOTH_BANDS, SMOOTH_FLOOR, SMOOTH_GRAIN, _grain_cuts, _quantile

    def cut(values):
        v = np.sort(values.ravel())
        return max(SMOOTH_FLOOR, int(round(SMOOTH_GRAIN * v[int(np.ceil(0.9 * v.size)) - 1])))

    rng = np.random.default_rng(7)
    for lit in (40, 180, 255):
        paper = rng.integers(0, 256, (60, 80), dtype=np.uint8)
        grain = rng.integers(0, 30, (60, 80), dtype=np.uint8) + (paper < 0.6 * lit) * rng.integers(0, 40, (60, 80), dtype=np.uint8).astype(np.uint8)
        frame, bands = _grain_cuts(grain, paper, lit)
        assert frame == cut(grain) == max(SMOOTH_FLOOR, int(round(SMOOTH_GRAIN * _quantile(grain, 0.9))))
        want, hi = [], 256
        for f in SMOOTH_BANDS:
            lo = int(f * lit)
            inside = (paper >= lo) & (paper < hi)
            if inside.sum() > SMOOTH_BAND_SHARE * paper.size:
                want.append((cut(grain[inside]), lo, hi))
            hi = lo
        assert bands == want, (lit, bands, want)


def test_smoothing_is_the_binomial_filter_in_integers():
    """``levels.smooth``: [1 4 6 4 1] / 16 both ways, edges replicated, rounded half up, exact
    (it equals the integer computation on noise, on flat and on alternating images)."""
    from device.levels import smooth

    rng = np.random.default_rng(5)
    for g in (rng.integers(0, 256, (37, 53), dtype=np.uint8), np.full((9, 12), 255, np.uint8),
              np.tile(np.array([0, 255], np.uint8), (10, 8)), rng.integers(120, 136, (24, 31), dtype=np.uint8)):
        p = cv2.copyMakeBorder(g, 2, 2, 2, 2, cv2.BORDER_REPLICATE).astype(np.int64)
        r = p[:, :-4] + p[:, 4:] + 4 * (p[:, 1:-3] + p[:, 3:-1]) + 6 * p[:, 2:-2]
        want = (r[:-4] + r[4:] + 4 * (r[1:-3] + r[3:-1]) + 6 * r[2:-2] + 128) // 256
        assert np.array_equal(smooth(g), want.astype(np.uint8))


def test_a_fine_pens_number_beside_a_bold_mark():
    """A bold tick beside a number written with a ballpoint: level 0 sees the tick (strokes of
    an ordinary pen) and only fragments of the number, so the closer look must be taken for
    what lies beside the tick, and its digits added to it.  Before, 8 of these 26 digits were
    found (26 with the look beside)."""
    from device.glyphs import with_pen
    from device.preprocess import prepare_all
    from device.scenes import SceneOptions, scene

    glyphs = [with_pen(g, 0.02, strength=0.6) for g in _scene_glyphs()[:40]]
    opts = SceneOptions(**PLAIN, min_height=0.16, max_height=0.22)
    found = total = 0
    for i in range(8):
        frame, _, rec = scene(glyphs, 14, i, "number", blank_every=0, opts=opts)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        cv2.polylines(gray, [np.array([[560, 420], [580, 445], [615, 390]])], False, 40, 9)   # the tick
        small = cv2.resize(gray, (320, 240), interpolation=cv2.INTER_AREA)
        regions = [p.region for p in prepare_all(small)]
        for d in rec["digits"]:
            total += 1
            found += any(_on_digit(r, [v / 2 for v in d["box"]]) for r in regions)
    assert found >= 0.8 * total, (found, total)


def test_a_digit_level_0_saw_in_pieces_is_read_in_its_line(photos_dir):
    """Numbers of one writer's photos in a hand's shadow with the sheet's edge in view, at
    320x240: at the working size one digit's line breaks into pieces too low to be a digit, in
    line with its neighbours; the copy at twice the size reads it there (before: 4 of these 5
    digits and 5 of these 6)."""
    from device.glyphs import photo_glyphs
    from device.scenes import HOSTILE, SceneOptions, scene

    glyphs = [g for g in photo_glyphs(photos_dir) if g.source == "z-yoscovits"]
    hostile = SceneOptions(**HOSTILE)
    for i in (2, 35):
        frame, _, rec = scene(glyphs, 41, i, "number", blank_every=0, opts=hostile)
        small = _lores(frame)
        regions = [p.region for p in prepare_all(small)]
        assert len(regions) == len(rec["digits"]), (i, regions)
        assert all(any(_on_digit(r, [v / 2 for v in d["box"]]) for r in regions) for d in rec["digits"]), i


def test_level_1_judges_only_the_blobs_a_thick_digit_could_use(monkeypatch):
    """Level 1 keeps only thick dark digits, so a thin or pale blob's shape tests (the flood
    for a shadow, the steps) wait until it could join one of them: on hostile number scenes,
    the digits found are those of judging every blob, and the thin ones are left unjudged."""
    from device import blobs
    from device.levels import Pyramid, find_digits
    from device.preprocess import DEFAULT
    from device.scenes import HOSTILE, SceneOptions, scene

    glyphs = _scene_glyphs()
    hostile = SceneOptions(**HOSTILE)
    unjudged = 0
    for i in (4, 9, 12, 28, 52, 74, 96, 97):   # (thin blobs beside shadows and rulings)
        frame, _, _ = scene(glyphs, 13, i, "number", blank_every=0, opts=hostile)
        with Pyramid(frame, DEFAULT) as pyr:
            lazy = [(d.x0, d.y0, d.x1, d.y1, d.im.scale) for d in find_digits(pyr, DEFAULT)]
            unjudged += sum(b.later for b in pyr.level(1).blobs(DEFAULT.min_contrast))
        with monkeypatch.context() as m:
            judge = blobs.assess
            m.setattr(blobs, "assess", lambda b, pool, opts, recut=True, seed=None: judge(b, pool, opts, recut))
            with Pyramid(frame, DEFAULT) as pyr:
                every = [(d.x0, d.y0, d.x1, d.y1, d.im.scale) for d in find_digits(pyr, DEFAULT)]
        assert lazy == every, i
    assert unjudged > 0


def test_a_pale_digit_in_a_number_is_read():
    """One digit of a number paler than the rest (ink 20 % below the paper, as in a shadow's
    soft edge): too pale to start a digit alone, it is one beside the others in its line.
    Before, prepare_all gave the other three."""
    frame = np.full((480, 640), 200, np.uint8)
    boxes = [_put_digit(frame, t, (80 + 120 * j, 300), 4, 160 if j == 2 else 40, 8) for j, t in enumerate("5827")]
    frame = cv2.GaussianBlur(frame, (5, 5), 1.2)
    found = prepare_all(frame)
    assert len(found) == 4 and _close(found[2].region, boxes[2]), [p.region for p in found]
    # A pale blob alone on the page is still nothing.
    alone = np.full((480, 640), 200, np.uint8)
    _put_digit(alone, "2", (320, 300), 4, 160, 8)
    assert prepare_all(cv2.GaussianBlur(alone, (5, 5), 1.2)) == []


def test_a_fine_pens_broken_line_is_one_digit():
    """A faint ballpoint line breaks, at the ink threshold, into pieces each too low to be a
    digit: a 3 of six arcs with gaps between them.  The closer look bridges the pieces into the
    digit (before: no digit)."""
    m = np.zeros((480, 640), np.uint8)
    for ey, a0, a1 in ((-15, 190, 265), (-15, 290, 340), (-15, 365, 440), (15, 280, 335), (15, 360, 420), (15, 445, 530)):
        cv2.ellipse(m, (320, 240 + ey), (15, 15), 0, a0, a1, 255, 2, cv2.LINE_AA)
    noise = np.random.default_rng(0).normal(0, 2, m.shape)
    frame = np.clip(200 - (m / 255.0) * 50 + noise, 0, 255).astype(np.uint8)
    p = prepare(frame)
    assert p.image is not None and p.path == "fine" and _close(p.region, (304, 209, 34, 63), tol=4), p.region
    assert [q.region for q in prepare_all(frame)] == [p.region]


def test_assembly_bridges_a_thin_curves_bend():
    """A thin 5 broken where its stem bends into the bowl (a writer's hairline 5 on a sheet):
    the two pieces' nearest ends are 3 px apart across the bend.  A closing never bridged them
    (its square does not fit in the dilated strokes at a bend); they are one blob now, boxed
    by its ink, with the pieces' own stroke width."""
    from device.levels import InkMap, _assemble
    from device.preprocess import DEFAULT

    ink = np.zeros((240, 320), np.uint8)
    stem_and_top = np.array([(100, 100), (100, 113), (103, 111), (105, 110), (110, 109), (115, 109), (118, 111), (121, 114)])
    bowl = np.array([(122, 117), (122, 124), (119, 128), (114, 131), (108, 131), (105, 130)])
    cv2.polylines(ink, [stem_and_top, bowl], False, 80, 1)
    im = InkMap(ink, 255 - ink, np.full_like(ink, 255), 1.0)
    pieces = im.blobs(DEFAULT.min_contrast)[:]
    assert len(pieces) == 2 and all(b.h < DEFAULT.min_height * 240 for b in pieces)
    _assemble(im, DEFAULT)
    joined = im.blobs(DEFAULT.min_contrast)[2:]
    assert [(b.x, b.y, b.w, b.h) for b in joined] == [(100, 100, 23, 32)]
    assert 0.8 < joined[0].stroke < 1.5, joined[0].stroke


def test_a_streak_along_a_shadows_edge_is_not_a_digit():
    """A short dark streak along a shadow's edge (a penumbra where a finger's tip crosses the
    sheet's edge; the sheet's own thin shadow) has nearly all its "ink" on the step of the
    paper level and is no darker than the shadowed paper's half: the step, not ink (before:
    read as a 1).  The same streak in ink, and a digit written across the edge, are read."""
    def sheet(streak):
        g = np.full((480, 640), 200, np.uint8)
        g[:, 320:] = 90
        cv2.fillPoly(g, [np.array([(316, 200), (324, 200), (326, 280), (318, 280)])], streak)
        return g

    streak = cv2.GaussianBlur(sheet(55), (5, 5), 1.2)
    assert prepare(streak).image is None and prepare_all(streak) == []
    inked = cv2.GaussianBlur(sheet(20), (5, 5), 1.2)
    assert _close(prepare(inked).region, (316, 200, 12, 80), tol=3)
    across = np.full((480, 640), 200, np.uint8)
    across[:, 320:] = 90
    box = _put_digit(across, "7", (290, 300), 3, 30, 6)
    p = prepare(cv2.GaussianBlur(across, (5, 5), 1.2))
    assert p.image is not None and _close(p.region, box), (p.region, box)
    # A number whose 1 lies on the edge itself.
    number = np.full((480, 640), 200, np.uint8)
    number[:, 320:] = 90
    boxes = [_put_digit(number, t, (170 + 70 * j, 300), 3, 30, 6) for j, t in enumerate("3719")]
    found = [q.region for q in prepare_all(cv2.GaussianBlur(number, (5, 5), 1.2))]
    assert len(found) == 4 and all(_close(r, b) for r, b in zip(found, boxes)), (found, boxes)


def test_blank_scenes_are_no_digit():
    from device.scenes import HOSTILE, SceneOptions, scene

    glyphs = _scene_glyphs()
    hostile = SceneOptions(**HOSTILE)
    for i in range(12):
        frame, rows, _ = scene(glyphs, 12, i, "digit", blank_every=1, opts=hostile)
        assert rows is None and prepare(frame).image is None, i


def test_pure_noise_is_no_digit():
    """A frame of noise (a covered lens at a high gain, static, a hostile input) has no paper
    and no ink: the blobs a threshold cuts there are its grain, and a digit's seed must stand
    out of the grain (levels.GRAIN_SEED).  Round 13's code read a digit in most of these."""
    rng = np.random.default_rng(21)
    for shape in ((60, 80), (240, 320), (480, 640, 3)):
        for i in range(6):
            f = rng.integers(0, 256, shape, dtype=np.uint8)
            p = prepare(f)
            assert p.image is None and prepare_all(f) == [], (shape, i, p.region)


def test_digits_in_sensor_noise_are_read_and_noisy_blank_paper_is_not(mnist):
    """The camera-like frames at the lores size with Gaussian noise added: every digit is read
    right at sigma 16 (of 255), and blank paper at sigma 32 stays "no digit" in 27 of 30 frames
    (round 13's code: 17; the noise's blobs are no seeds when no darker than its grain)."""
    from device.runtime import Model
    from device.step import postprocess

    model = Model()
    rng, noise = np.random.default_rng(3), np.random.default_rng(16)
    right = blank = 0
    for i in range(30):
        f = _lores(render_frame(mnist.x_test[i], rng))
        b = _lores(render_frame(None, rng))
        f = np.clip(f + noise.normal(0, 16, f.shape), 0, 255).astype(np.uint8)
        b = np.clip(b + noise.normal(0, 32, b.shape), 0, 255).astype(np.uint8)
        p = prepare(f)
        right += p.image is not None and postprocess(model.predict(p.image))[0] == mnist.y_test[i]
        blank += prepare(b).image is None
    assert right == 30 and blank >= 25, (right, blank)


def test_a_hands_shadow_from_out_of_view_is_no_digit():
    """A hand's shadow whose palm lies out of the frame: its fingers, at half size, look like a
    thick digit, and with no palm in view the flood from them is not larger than twice their
    area (the test for a palm).  By the frame's border, a flood that runs to the border is a
    shadow coming from outside the view (before: read as 4)."""
    from device.scenes import HOSTILE, SceneOptions, scene

    glyphs = _scene_glyphs()
    hostile = SceneOptions(**HOSTILE)
    for i in (1188, 1236):
        frame, rows, _ = scene(glyphs, 12, i, "digit", blank_every=1, opts=hostile)
        assert rows is None and prepare(frame).image is None and prepare_all(frame) == [], i


# -- several digits --------------------------------------------------------------------------

class _Box:
    def __init__(self, x0, y0, x1, y1):
        self.box = (x0, y0, x1, y1)

    def frame_box(self):
        return self.box


def test_reading_order_lines_tilt_and_strays():
    from device.preprocess import reading_order

    # Two lines; the first tilts down by more than a digit's height from end to end.
    line1 = [_Box(20 + 40 * i, 50 + 9 * i, 50 + 40 * i, 90 + 9 * i) for i in range(7)]
    line2 = [_Box(30 + 45 * i, 170, 60 + 45 * i, 210) for i in range(3)]
    dot = _Box(400, 100, 405, 105)        # a mark far smaller than the digits
    shuffled = [line2[1], line1[4], dot, line1[0], line2[0], line1[6], line1[2], line2[2], line1[1],
                line1[5], line1[3]]
    lines = reading_order(shuffled)
    assert lines == [line1, line2]
    assert reading_order([]) == []
    # A tick on a line of its own, over half a digit's height (above the floor of half the
    # median) but well under it, is a mark; a whole digit alone on its line is a digit.
    tick = _Box(300, 250, 320, 272)
    lone = _Box(30, 300, 60, 340)
    assert reading_order([*line2, tick, *line1]) == [line1, line2]
    assert reading_order([tick, *line1, lone]) == [line1, [lone]]
    assert reading_order([tick]) == [[tick]]


def _read(model, frame):
    from device.preprocess import prepare_all

    found = prepare_all(frame)
    if not found:
        return "", []
    preds = model.predict_batch(np.stack([p.image for p in found])).argmax(axis=1)
    lines = {}
    for p, k in zip(found, preds):
        lines[p.line] = lines.get(p.line, "") + str(int(k))
    return " ".join(lines[k] for k in sorted(lines)), found


def test_two_lines_of_digits_read_in_order():
    from device.runtime import Model
    from device.scenes import SceneOptions, render_scene

    glyphs = _scene_glyphs()
    by = {}
    for g in glyphs:
        by.setdefault(g.label, g)
    rows = [[by[4], by[0], by[7]], [by[2], by[9]]]
    frame, rec = render_scene(rows, np.random.default_rng(5), SceneOptions(**PLAIN))
    text, found = _read(Model(), frame)
    assert [p.line for p in found] == [0, 0, 0, 1, 1]
    assert [p.region[0] for p in found[:3]] == sorted(p.region[0] for p in found[:3])
    assert text == "407 29"


def test_sheet_of_ten_photos_reads_as_its_rows(photos_dir):
    """Each writer's ten dev photos written as a 3-3-3-1 sheet on plain paper."""
    from device.runtime import Model
    from device.glyphs import photo_glyphs
    from device.scenes import SceneOptions, render_scene

    model = Model()
    glyphs = photo_glyphs(photos_dir)
    read = {}
    for i, who in enumerate(sorted({g.source for g in glyphs})):
        by = {g.label: g for g in glyphs if g.source == who}
        rows = [[by[d] for d in r] for r in ([0, 1, 2], [3, 4, 5], [6, 7, 8], [9])]
        frame, _ = render_scene(rows, np.random.default_rng(i), SceneOptions(size=(480, 640), **PLAIN))
        read[who] = _read(model, frame)[0]
    right = [w for w, t in read.items() if t == "012 345 678 9"]
    # Known short of 10/10: a hairline pen (Mogith-P-N) vanishes at the 120x160 working size.
    assert len(right) >= 8, read


@pytest.mark.parametrize("name,label", [("michael-erasmus-d47c21e-0.png", "0"), ("michael-erasmus-d47c21e-2.png", "2")])
def test_a_bold_digit_level_0_sees_in_pieces_is_one_digit_of_a_number(photos_dir, name, label):
    """A marker's 0 is two arcs at level 0 (the ring's hole spans the gap between them), a
    marker's 2 its body and, beside it, the blot where the foot's stroke ends: neither is two
    digits side by side, so level 1's whole digit is read, as in the digit mode."""
    from device.runtime import Model

    frame = cv2.imread(str(photos_dir / name))
    text, found = _read(Model(), frame)
    assert text == label and len(found) == 1, (text, [p.region for p in found])


def _block_sums(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Exact area sums along ``axis``: each pixel repeated ``n_out`` times, then ``n_out``
    equal runs of the repeated row summed (in units of 1/n_out of a pixel)."""
    rep = np.repeat(a.astype(np.int64), n_out, axis=axis)
    shape = list(rep.shape)
    shape[axis:axis + 1] = [n_out, rep.shape[axis] // n_out]
    return rep.reshape(shape).sum(axis=axis + 1)


@pytest.mark.parametrize("shape", [(241, 321), (120, 160), (27, 9), (481, 640)])
def test_downscales_are_exact_block_means_on_odd_sizes(shape):
    """Every halving of the working copy is a 2x2 block mean rounded half up, odd edges
    dropped (the same bytes on every CPU: OpenCV's INTER_AREA at fx=0.5 on an odd size is not a
    block mean on aarch64 builds with KleidiCV), and the fit into the 20 px box is an exact
    area mean: both checked against numpy on odd sizes."""
    from device.levels import halve, working_copy
    from device.preprocess import PreprocessOptions, resample

    a = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    e = a[:shape[0] // 2 * 2, :shape[1] // 2 * 2].astype(np.int64)
    ref = (e.reshape(shape[0] // 2, 2, shape[1] // 2, 2).sum(axis=(1, 3)) + 2) // 4
    assert np.array_equal(halve(a), ref)
    small, scale, _ = working_copy(a, PreprocessOptions(work_size=50))
    want, s = a, 1.0
    while max(want.shape) > 75:
        h, w = want.shape
        want = ((want[:h // 2 * 2, :w // 2 * 2].astype(np.int64).reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) + 2)
                // 4).astype(np.uint8)
        s /= 2
    assert scale == s and np.array_equal(small, want)
    # Shrinking by a non-integer ratio (e.g. 241 -> 20 rows): exact area sums, one rounding.
    crop = a[:min(shape[0], 61), :min(shape[1], 43)]
    h, w = crop.shape
    nh, nw = 20, max(1, round(w * 20 / h))
    acc = _block_sums(_block_sums(crop, nh, 0), nw, 1)
    assert np.array_equal(resample(crop, nw, nh), (acc + h * w // 2) // (h * w))


@pytest.mark.parametrize("shape", [(480, 640, 3), (1080, 1920, 3), (480, 640, 4), (200, 300, 3), (97, 131, 3)])
def test_a_colour_frame_is_read_as_its_luma_at_every_size(shape):
    """A USB camera's BGR frame (or BGRA, or a photo) gives the working copy and the finer copy
    its gray conversion gives, halved by 2x2 means: the pixels a lores Y plane or a clip's
    reduced gray decoding would give, not every other pixel of one channel (whose sensor noise
    no averaging took out: a few points of accuracy on the scene clips read in colour)."""
    from device.levels import working_copy
    from device.preprocess import DEFAULT

    rng = np.random.default_rng(sum(shape))
    frame = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 1.5)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    got, want = working_copy(frame, DEFAULT), working_copy(gray, DEFAULT)
    assert got[1] == want[1] and np.array_equal(got[0], want[0])
    assert (got[2] is None) == (want[2] is None) and (got[2] is None or np.array_equal(got[2], want[2]))


def test_the_resampling_rounding_is_an_exact_floor_at_every_step():
    """resample's one rounding, done by OpenCV's float scaling where that is safe, is
    floor((acc + den // 2) / den) exactly, checked at every step of the floor (the sums on
    either side of each multiple of den) for every divisor it meets: each den up to 4096
    (area means of crops up to 64x64) and the powers of two (bilinear: 128 x 128)."""
    from device.levels import floor_div

    for den in [*range(1, 4097), 8192, 16384, 32768]:
        k = np.arange(256, dtype=np.int64) * den - den // 2
        acc = np.concatenate([k + o for o in (-1, 0, 1, den - 1)])
        acc = acc[(acc >= 0) & (acc + den // 2 < 256 * den)]
        got = floor_div(acc.astype(np.float32)[None, :], den)[0]
        assert np.array_equal(got, (acc + den // 2) // den), den


def test_enlarging_is_bilinear_and_keeps_flat_ink_flat():
    """A small digit is enlarged into the box bilinearly (OpenCV's INTER_LINEAR formula, in
    integers): within one grey level of OpenCV on this machine, flat areas stay exactly flat,
    and the same size is the identity."""
    from device.preprocess import resample

    a = np.random.default_rng(1).integers(0, 256, (11, 7), dtype=np.uint8)
    got = resample(a, 13, 20)
    assert np.abs(got.astype(int) - cv2.resize(a, (13, 20), interpolation=cv2.INTER_LINEAR)).max() <= 1
    assert np.array_equal(resample(np.full((5, 3), 77, np.uint8), 12, 20), np.full((20, 12), 77, np.uint8))
    assert np.array_equal(resample(a, 7, 11), a)


def test_the_paper_steepness_test_is_an_exact_ratio():
    """The paper's steepness (blobs.steep: the cheap tier's edge test and the step test) is
    compared by a lookup (the same on every CPU): a gradient g over paper p is an edge exactly
    when 255 g / p, rounded to nearest (ties to even; 0 over black paper), is above
    STEEP_EDGE, as x86's cv2.divide computes it."""
    from fractions import Fraction

    from device.blobs import _EDGE_FLOOR
    from device.blobs import STEEP_EDGE as QUICK_EDGE

    for p in range(256):
        for g in range(256):
            q = 0 if p == 0 else round(Fraction(255 * g, p))   # Python rounds ties to even
            assert (g > _EDGE_FLOOR[p]) == (q > QUICK_EDGE), (g, p)
    if platform.machine() in ("x86_64", "AMD64"):   # what the test replaced (aarch64 rounds otherwise)
        g, p = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))
        assert np.array_equal(cv2.divide(g, p, scale=255) > QUICK_EDGE, g > _EDGE_FLOOR[p])


def test_a_frame_leaves_no_garbage_cycles(mnist):
    """A frame's arrays are freed when it is done, not at the garbage collector's next full
    collection (a blob refers to its ink level; a cycle would keep each frame's levels alive
    and grow the RSS of a long run by megabytes)."""
    import gc

    from device.preprocess import PreprocessOptions, prepare_all

    frame = render_frame(mnist.x_test[0], np.random.default_rng(0))
    gc.collect()
    gc.disable()
    try:
        assert prepare(frame).image is not None and prepare(frame, PreprocessOptions(quick=False)).image is not None
        assert prepare_all(frame)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_ink_is_an_exactly_rounded_ratio():
    """Ink = 255 (paper - gray) / max(paper, 40), rounded to nearest (ties to even), as numpy
    computes it on any CPU (cv2.divide rounds differently on aarch64: 29 of the 100 dev
    photos' model inputs moved by a grey level on an emulated Pi)."""
    from device.levels import ink_map

    gray = np.random.default_rng(3).integers(0, 256, (61, 83), dtype=np.uint8)
    im = ink_map(gray, 5)
    d = np.maximum(im.paper.astype(np.int64) - gray, 0)
    assert np.array_equal(im.ink, np.rint(255.0 * d / np.maximum(im.paper, 40)).astype(np.uint8))


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (7, 40), (8, 8), (30, 2000), (2000, 30), (9, 3000),
                                   (480, 640, 1), (33, 4000, 3), (50, 50, 4), (240, 320, 2)])
def test_odd_frames_are_read_or_refused_never_raise(shape):
    """Any frame a source or a file may hold: tiny, a strip far wider than tall (halving it to
    the working size would leave no rows), one channel in a third axis, float or 16-bit
    values: a digit, "no digit" or a reason, never an exception."""
    rng = np.random.default_rng(0)
    for f in (rng.integers(0, 256, shape, dtype=np.uint8), np.full(shape, 200, np.uint8)):
        f[..., ::9] = 20
        for frame in (f, f.astype(np.float32), f.astype(np.uint16) * 3):
            p = prepare(frame)
            assert p.image is None and p.reason or p.image.shape == (28, 28)
            assert isinstance(prepare_all(frame), list)
    if min(shape[:2]) < 8:
        assert prepare(np.zeros(shape, np.uint8)).reason.startswith("frame too small")
    if len(shape) == 3 and shape[2] == 2:
        assert "channels" in prepare(np.zeros(shape, np.uint8)).reason


def test_preprocess_bytes_names_what_moved_and_refuses_other_frames(photos_dir, tmp_path, monkeypatch):
    """The cross-CPU check (benchmarks/preprocess_bytes.py) must see a single moved value, say
    where, and never compare dumps of different frames."""
    from benchmarks import preprocess_bytes as pb

    (tmp_path / "photos").mkdir()
    names = sorted(p.name for p in photos_dir.glob("*.png"))[:2]
    for n in names:
        (tmp_path / "photos" / n).write_bytes((photos_dir / n).read_bytes())
    monkeypatch.setattr(pb, "PHOTOS", tmp_path / "photos")
    digit = cv2.resize(cv2.imread(str(photos_dir / names[0]), cv2.IMREAD_GRAYSCALE), (320, 240))
    frames = {"a.avi#0": digit, "a.avi#5": gray_frame()[:240, :320]}
    for name, fs in (("set", frames), ("other", {"a.avi#0": digit})):
        np.savez_compressed(tmp_path / f"{name}.npz", **fs)
    a, b, c = (str(tmp_path / f"{n}-dump.npz") for n in "abc")
    pb.dump(a, tmp_path / "set.npz")
    moved = dict(np.load(a))
    moved["frame:a.avi#0|all_regions"] = moved["frame:a.avi#0|all_regions"] + 1
    np.savez(b, **moved)
    r = pb.compare(a, b)
    # (noise: 6 frames of pure noise and the set's every 40th frame with noise added)
    assert r["items"] == {"photo": 2, "frame": 2, "noise": 7}
    assert r["identical"] == {"photo": 2, "frame": 1, "noise": 7}
    assert r["differing"] == {"photo": {}, "frame": {"all_regions": ["a.avi#0"]}, "noise": {}}
    assert pb.main(["compare", a, b]) == 1 and pb.main(["compare", a, a]) == 0
    pb.dump(c, tmp_path / "other.npz")
    assert pb.main(["compare", a, c]) == 2
