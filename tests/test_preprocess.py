import cv2
import numpy as np
import pytest

from device.preprocess import prepare
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
