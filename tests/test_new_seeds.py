"""benchmarks.new_seeds: a preprocessing change scored against a reference on clips of new seeds."""

from types import SimpleNamespace

import pytest

from benchmarks import new_seeds
from benchmarks.harness import PHOTOS
from benchmarks.scenes import read_clip, read_frame
from device.glyphs import photo_glyphs
from device.preprocess import Prepared, PreprocessOptions
from device.runtime import Model
from device.scenes import make_scene_clip


def test_a_reference_that_is_no_commit_is_one_line_and_exit_2(capsys, tmp_path):
    assert new_seeds.main(["--ref", "no-such-commit", "--seed", "1", "--work", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ref no-such-commit" in err[0]


@pytest.mark.parametrize("args,needle", [
    (["--seed", "-1"], "--seed: must be an integer from 0"),
    (["--seed", "x"], "--seed: must be an integer from 0"),
    (["--seed", "1", "--results", "{file}/results"], "new_seeds:"),
    (["--seed", "1", "--work", "{file}/work"], "new_seeds:"),
], ids=["negative seed", "seed not a number", "results under a file", "work under a file"])
def test_bad_values_are_one_line_and_exit_2_before_any_work(args, needle, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["--ref", "HEAD"] + [a.replace("{file}", str(blocker)) for a in args]
    if needle.startswith("--seed"):   # (argparse's refusal: usage, then the one line)
        with pytest.raises(SystemExit) as e:
            new_seeds.main(argv)
        assert e.value.code == 2
    else:
        assert new_seeds.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "work").exists()


def test_each_frame_is_scored_by_both_and_what_moved_is_listed(tmp_path):
    """Against a reference that never finds a digit, the reference scores exactly the blank
    frames, today's gains are the digit frames it reads right and its losses the blank frames
    it reads a digit in."""
    glyphs = photo_glyphs(PHOTOS)[:20]
    clips = []
    for name, mode, blank_every in (("digit", "digit", 3), ("number", "number", 3)):
        path = tmp_path / f"{name}.avi"
        make_scene_clip(path, glyphs, 9, mode, blank_every=blank_every, seed=5)
        clips.append((name, mode, path))
    nothing = SimpleNamespace(prepare=lambda f, opts=None: Prepared(None, None, "no digit"),
                              prepare_all=lambda f, opts=None: [])
    res = new_seeds.compare(nothing, clips)
    model, opts = Model(None, threads=1), PreprocessOptions()
    for name, mode, path in clips:
        frames, doc = read_clip(path)
        blank = [i for i, lab in enumerate(doc["labels"]) if lab is None]
        got = [read_frame(model, f, mode, opts) for f in frames]
        right = [i for i, (g, lab) in enumerate(zip(got, doc["labels"]))
                 if g == (lab if mode == "digit" else (lab or ""))]
        r = res[name]
        assert blank and r["frames"] == 9 and r["ref"] == len(blank)
        assert r["new"] == len(right)
        assert r["gained"] == [i for i in right if i not in blank]
        assert r["lost"] == [i for i in blank if i not in right]
