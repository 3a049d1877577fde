"""Sample collections: the folder format (the contract with host finetune), atomic appends,
the size cap, concurrent writers, and the verbs that fill them (device collect, run
--collect-uncertain) on a real replay clip with the shipped model."""

import csv
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.cli import main
from device.collection import HEADER, OWN_NAME, Collection, Sample, sample_of
from device.errors import UsageError
from device.step import Digit
from device.synth import load_sample, make_clip


def _sample(i=0, label="7", size=40, rng=None):
    rng = rng or np.random.default_rng(i)
    crop = rng.integers(0, 255, (size, size), dtype=np.uint8)   # noise: PNG cannot shrink it
    inp = np.zeros((28, 28), np.uint8)
    inp[4 + i % 10, 4:24] = 255
    return Sample(crop, inp, label, i % 10, 0.5 + (i % 5) / 10, f"test#{i}")


def _rows(folder):
    with open(folder / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    x, y = load_sample()
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    make_clip(x, y, path, n_digits=20, hold=2, seed=3)
    return path


def test_sample_keeps_the_exact_model_input_and_a_crop_with_margin():
    frame = np.full((120, 160, 3), 200, np.uint8)
    x = np.round(np.random.default_rng(0).random((28, 28)) * 255).astype(np.float32) / 255
    s = sample_of(frame, Digit((50, 40, 20, 30), 4, 0.9, x), "4", "cam")
    assert s.model_input.dtype == np.uint8 and s.model_input.shape == (28, 28)
    assert np.array_equal(s.model_input, np.round(x * 255).astype(np.uint8))
    assert s.crop.shape == (30 + 2 * 8, 20 + 2 * 8, 3)   # margin: 25 % of the longer side
    edge = sample_of(frame, Digit((0, 0, 20, 20), 1, 0.9, x), "", "cam")
    assert edge.crop.shape[:2] == (25, 25)                 # clipped to the frame


def test_add_writes_images_then_labels_csv_in_the_contract_format(tmp_path):
    c = Collection(tmp_path / "col")
    names = c.add([_sample(0), _sample(1, label="none"), _sample(2, label="")])
    folder = tmp_path / "col"
    assert list(_rows(folder)[0]) == list(HEADER)
    rows = _rows(folder)
    assert [r["file"] for r in rows] == names and [r["label"] for r in rows] == ["7", "none", ""]
    assert rows[0]["prediction"] == "0" and rows[0]["confidence"] == "0.5000" and rows[0]["source"] == "test#0"
    for name in names:
        assert OWN_NAME.match(name)
        inp = cv2.imread(str(folder / name.replace(".png", ".input.png")), cv2.IMREAD_UNCHANGED)
        assert inp.shape == (28, 28) and inp.dtype == np.uint8
    back = cv2.imread(str(folder / names[0].replace(".png", ".input.png")), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(back, _sample(0).model_input)                 # lossless, exact
    # Reopening appends to the same labels.csv.
    Collection(folder).add([_sample(3)])
    assert len(_rows(folder)) == 4


def test_cap_evicts_the_oldest_own_samples_and_keeps_foreign_rows(tmp_path):
    folder = tmp_path / "col"
    folder.mkdir()
    (folder / "mine.png").write_bytes(b"x" * 100)
    (folder / "labels.csv").write_text("file,label,extra\nmine.png,3,keep me\n")
    c = Collection(folder, max_mb=0.02)          # 20 kB; each sample is ~1.7 kB of noise
    names = []
    for i in range(30):
        names += c.add([_sample(i)])
    rows = _rows(folder)
    assert rows[0] == {"file": "mine.png", "label": "3", "extra": "keep me", "prediction": "",
                       "confidence": "", "source": "", "created": ""}
    kept = [r["file"] for r in rows[1:]]
    assert kept == names[-len(kept):] and 5 < len(kept) < 30          # the newest survive, in order
    used = sum(f.stat().st_size for f in folder.iterdir() if f.name != ".labels.lock")
    assert used <= 20_000 + 2_000, used
    on_disk = {f.name for f in folder.iterdir() if OWN_NAME.match(f.name)}
    assert on_disk == {n for k in kept for n in (k, k.replace(".png", ".input.png"))}
    assert (folder / "mine.png").exists() and c.evicted == 30 - len(kept)


def test_concurrent_writers_are_serialised(tmp_path):
    folder = tmp_path / "col"
    a, b = Collection(folder), Collection(folder)   # two handles: flock between them, lock within
    errors = []

    def write(col, k):
        try:
            for i in range(10):
                col.add([_sample(100 * k + i)])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(col, k)) for k, col in enumerate((a, a, b, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = _rows(folder)
    assert len(rows) == 40 and len({r["file"] for r in rows}) == 40
    assert all((folder / r["file"]).is_file() for r in rows)


def test_orphans_of_an_interrupted_write_are_removed_on_open(tmp_path):
    folder = tmp_path / "col"
    Collection(folder).add([_sample(0)])
    (folder / "20250101T000000.000Z-0009.png").write_bytes(b"half")   # images written, no row yet
    (folder / "20250101T000000.000Z-0009.input.png").write_bytes(b"half")
    (folder / "holiday.png").write_bytes(b"a user's file")
    Collection(folder)
    assert not (folder / "20250101T000000.000Z-0009.png").exists()
    assert (folder / "holiday.png").exists() and len(_rows(folder)) == 1


def test_a_folder_that_cannot_be_a_collection_is_a_usage_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        Collection(f)
    with pytest.raises(UsageError, match="does not exist"):
        Collection(tmp_path / "no" / "such")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "labels.csv").write_text("name,digit\na.png,3\n")
    with pytest.raises(UsageError, match="file,label"):
        Collection(bad)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write, root included: a read-only bind mount where this machine
    allows mounting (CI and the dev VM do), else sysfs."""
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], capture_output=True).returncode == 0:
        yield ro
        subprocess.run(["umount", str(ro)], check=True)
    else:
        yield Path("/sys/kernel")


def test_unwritable_folder_exits_2_before_capture(read_only_dir, clip, capsys):
    for argv in (["run", "--collect-uncertain", str(read_only_dir), "--quiet"],
                 ["collect", "--label", "3", "--collection", str(read_only_dir)],
                 ["run", "--preview", "0", "--collection", str(read_only_dir), "--quiet"]):
        assert main([*argv, "--source", str(clip), "--no-output"] if argv[0] == "run" else
                    [*argv, "--source", str(clip)]) == 2
        out, err = capsys.readouterr()
        flag = "--collect-uncertain" if "--collect-uncertain" in argv else "--collection"
        assert err.splitlines() == [f"device: error: {flag} {read_only_dir} is not writable "
                                    "(Read-only file system); choose another folder"] or \
            (str(read_only_dir) == "/sys/kernel" and len(err.splitlines()) == 1), err
        assert "frame" not in out and "preview:" not in out    # nothing started


def test_unwritable_collection_paths_exit_2(tmp_path, clip, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for argv in (["run", "--collect-uncertain", str(f / "sub")], ["run", "--preview", "0", "--collection", str(f)],
                 ["collect", "--label", "3", "--collection", str(f)]):
        assert main([*argv, "--source", str(clip), "--quiet"] if argv[0] == "run" else
                    [*argv, "--source", str(clip)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("device: error: --co"), err


def test_device_collect_saves_the_next_n_digit_frames(tmp_path, clip, capsys):
    folder = tmp_path / "col"
    assert main(["collect", "--label", "7", "--count", "5", "--source", str(clip), "--collection", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "saved 5/5" in out and "5 sample(s) saved" in out
    rows = _rows(folder)
    assert len(rows) == 5 and {r["label"] for r in rows} == {"7"}
    assert all(r["prediction"] in tuple("0123456789") and r["source"].startswith("video:") for r in rows)
    assert main(["collect", "--label", "none", "--count", "2", "--source", str(clip), "--collection", str(folder)]) == 0
    assert [r["label"] for r in _rows(folder)] == ["7"] * 5 + ["none"] * 2
    # More than the clip holds: everything found is kept, and the shortfall is exit 1.
    assert main(["collect", "--label", "1", "--count", "1000", "--source", str(clip),
                 "--collection", str(tmp_path / "big")]) == 1
    assert "of 1000 samples saved" in capsys.readouterr().err
    assert 20 < len(_rows(tmp_path / "big")) < 1000


def test_run_collect_uncertain_saves_low_confidence_digits_unlabelled(tmp_path, clip, capsys):
    folder = tmp_path / "unsure"
    assert main(["run", "--source", str(clip), "--no-output", "--quiet", "--collect-uncertain", str(folder),
                 "--below", "0.999"]) == 0
    assert "collection" in capsys.readouterr().out
    rows = _rows(folder)
    assert rows and all(r["label"] == "" and float(r["confidence"]) < 0.999 for r in rows)
    assert main(["run", "--source", str(clip), "--no-output", "--quiet", "--below", "0.5"]) == 2
    assert "--below P needs --collect-uncertain" in capsys.readouterr().err


def test_classify_scores_a_collection_with_its_own_labels_csv(tmp_path, clip, capsys):
    folder = tmp_path / "col"
    assert main(["collect", "--label", "3", "--count", "4", "--source", str(clip), "--collection", str(folder)]) == 0
    Collection(folder).add([_sample(50, label=""), _sample(51, label="none")])
    capsys.readouterr()
    assert main(["classify", str(folder), "--labels", str(folder / "labels.csv"), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert not any(".input.png" in l for l in lines)       # the model inputs are not camera images
    import json

    summary = json.loads(lines[-1])
    assert summary["images"] == 6 and summary["labelled"] == 4
