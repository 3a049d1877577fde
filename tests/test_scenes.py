"""The scene generator: deterministic per seed, labels that match what is drawn, real photos
cut into glyphs."""

import json

import cv2
import numpy as np
import pytest

from device.glyphs import mnist_glyphs, photo_glyphs, writer_of
from device.scenes import TAGS, SceneOptions, label_of, make_scene_clip, scene
from device.synth import load_sample


@pytest.fixture(scope="module")
def glyphs():
    x, y = load_sample()
    return mnist_glyphs(x[:60], y[:60])


def test_same_seed_same_frame_other_seed_other_frame(glyphs):
    for mode in ("digit", "number"):
        a, rows_a, rec_a = scene(glyphs, 7, 3, mode)
        b, rows_b, rec_b = scene(glyphs, 7, 3, mode)
        assert np.array_equal(a, b) and rec_a == rec_b and label_of(rows_a, mode) == label_of(rows_b, mode)
        c, _, _ = scene(glyphs, 8, 3, mode)
        assert not np.array_equal(a, c)


def test_records_match_the_labels(glyphs):
    for i in range(6):
        frame, rows, rec = scene(glyphs, 1, i, "number", blank_every=5)
        assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
        assert set(rec["tags"]) <= set(TAGS)
        label = label_of(rows, "number")
        if rows is None:
            assert label is None and rec["digits"] == [] and rec["writer"] is None
            continue
        assert 2 <= len(label.replace(" ", "")) <= 8 and label.count(" ") == len(rows) - 1
        # Digits in reading order, with their line; boxes inside the frame.
        assert "".join(str(d["digit"]) for d in rec["digits"]) == label.replace(" ", "")
        assert [d["line"] for d in rec["digits"]] == sorted(d["line"] for d in rec["digits"])
        for d in rec["digits"]:
            x, y, w, h = d["box"]
            assert 0 <= x and 0 <= y and x + w <= 640 and y + h <= 480 and h >= 0.08 * 480


def test_forced_conditions_are_tagged(glyphs):
    only = dict(p_edge=0, p_shadow=0, p_ruled=0, p_squared=0, p_stray=0, p_spot=0, p_glare=0,
                p_motion=0, p_lowlight=0, p_border=0)
    for flag, tag in (("p_shadow", "shadow"), ("p_ruled", "ruled"), ("p_motion", "motion"),
                      ("p_lowlight", "lowlight"), ("p_border", "border"), ("p_glare", "glare")):
        opts = SceneOptions(**(only | {flag: 1.0}))
        for i in range(2):
            _, _, rec = scene(glyphs, 2, i, "digit", blank_every=0, opts=opts)
            assert tag in rec["tags"]
    plain = SceneOptions(**only)
    _, _, rec = scene(glyphs, 2, 0, "digit", blank_every=0, opts=plain)
    assert rec["tags"] in ([], ["small"])


def test_clip_and_labels_file(tmp_path, glyphs):
    out = tmp_path / "scenes.avi"
    doc = make_scene_clip(out, glyphs, frames=12, mode="digit", blank_every=4, seed=3)
    saved = json.loads((tmp_path / "scenes.avi.labels.json").read_text())
    assert saved == doc and saved["frames"] == 12 and saved["mode"] == "digit" and saved["writers"] == ["mnist"]
    assert [lab is None for lab in saved["labels"]] == [i % 4 == 3 for i in range(12)]
    assert all(isinstance(lab, int) for lab in saved["labels"] if lab is not None)
    assert [r["digits"][0]["digit"] for r in saved["records"] if r["digits"]] == [
        lab for lab in saved["labels"] if lab is not None]
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12


def test_photo_glyphs_cut_the_digit_from_each_photo(photos_dir):
    glyphs = photo_glyphs(photos_dir)
    assert len(glyphs) == 100 and len({g.source for g in glyphs}) == 10
    assert {writer_of(f.name) for f in photos_dir.glob("*.png")} == {g.source for g in glyphs}
    for g in glyphs:
        x, y, w, h = g.box
        t = g.t.min(axis=2)
        inside = t[y:y + h, x:x + w]
        # Ink inside the box, bare paper (transmittance ~1) well outside it.
        assert inside.min() < 0.6 and h >= 10
        outside = np.ones_like(t, bool)
        outside[max(0, y - 3):y + h + 3, max(0, x - 3):x + w + 3] = False
        assert not outside.any() or t[outside].min() > 0.5
    only_two = photo_glyphs(photos_dir, writers={glyphs[0].source, glyphs[-1].source})
    assert len(only_two) == 20


def test_with_pen_redraws_the_strokes_thinner(photos_dir):
    """A fine pen: the same digit's skeleton drawn ~1 % of its height wide, far less ink than
    the photo's marker, still one connected digit with its label and writer."""
    from device.glyphs import with_pen

    g = photo_glyphs(photos_dir, writers={"KrishnaKulkarni"})[3]
    p = with_pen(g, 0.01, ink=(0.55, 0.3, 0.2))
    assert (p.label, p.source) == (g.label, g.source)
    up = p.t.shape[0] / g.t.shape[0]
    assert p.box[3] == pytest.approx(g.box[3] * up, abs=up)
    ink_g = (1 - g.t.min(axis=2) > 0.5).sum()
    ink_p = (1 - p.t.min(axis=2) > 0.3).sum() / up ** 2
    assert 0.05 * ink_g < ink_p < 0.5 * ink_g
    n, _ = cv2.connectedComponents((1 - p.t.min(axis=2) > 0.3).astype(np.uint8))
    assert n - 1 <= 2
