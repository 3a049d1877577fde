"""Hostile and careless inputs to the device CLI (issue 10): each gets one line on stderr
naming the fix and the right exit code, never a traceback, never a hang, and a results file
that existed before is byte-identical afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import struct
import zlib

import pytest

from tests.conftest import ROOT, SHIPPED

PREVIOUS = b'{"previous": "run, must survive"}\n'


def device(*args, cwd=ROOT, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "device.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def one_line(r, code, needle):
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    r = device("make-clip", path, "--digits", 12, "--hold", 1)
    assert r.returncode == 0, r.stderr
    return path


@pytest.fixture
def previous(tmp_path):
    p = tmp_path / "previous.json"
    p.write_bytes(PREVIOUS)
    return p


BAD_VALUES = [
    (["run", "--budget-ms", "nan"], "--budget-ms must be a finite number"),
    (["run", "--budget-ms", "inf"], "--budget-ms must be a finite number"),
    (["run", "--budget-ms", "0"], "--budget-ms must be > 0"),
    (["run", "--budget-ms", "-3"], "--budget-ms must be > 0"),
    (["run", "--duration", "0"], "--duration must be > 0"),
    (["run", "--duration", "abc"], "--duration takes a number"),
    (["run", "--frames", "0"], "--frames must be >= 1"),
    (["run", "--threads", "0"], "--threads must be >= 1"),
    (["run", "--threads", "100000"], "--threads must be <="),
    (["run", "--camera-index", "-1"], "--camera-index must be >= 0"),
    (["bench", "--warmup", "-1"], "--warmup must be >= 0"),
    (["bench", "--runs", "0"], "--runs must be >= 1"),
    (["make-clip", "x.avi", "--digits", "1000"], "--digits must be <= 300"),
    (["make-clip", "x.avi", "--digits", "0"], "--digits must be >= 1"),
    (["make-clip", "x.avi", "--hold", "0"], "--hold must be >= 1"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    # options of the scene, preview, collection and service features
    (["run", "--read", "words"], "invalid choice: 'words'"),
    (["run", "--labels", "/nonexistent/labels.csv"], "cannot read --labels /nonexistent/labels.csv"),
    (["run", "--checkpoint-s", "0"], "--checkpoint-s must be > 0"),
    (["run", "--preview", "0", "--preview-fps", "0"], "--preview-fps must be >= 0.5"),
    (["run", "--collect-uncertain", "unsure", "--below", "1.5"], "--below must be <= 1"),
    (["run", "--collect-uncertain", "unsure", "--collect-max-mb", "-1"], "--collect-max-mb must be > 0"),
    (["run", "--collect-uncertain", "/proc/no/such"], "--collect-uncertain /proc/no/such: "),
    (["collect", "--count", "0"], "--count must be >= 1"),
    (["collect", "--collect-every", "-1"], "--collect-every must be >= 0"),
    (["collect", "--collection", "/proc/no/such"], "--collection /proc/no/such: "),
]


@pytest.mark.parametrize("args,needle", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_are_refused_before_work(args, needle, previous, clip):
    extra = ["--source", str(clip), "--output", str(previous)] if args[0] == "run" and "--bogus" not in args else []
    if args[0] == "collect":
        extra = ["--source", str(clip), "--label", "3"] + ([] if "--collection" in args else
                                                         ["--collection", str(previous.parent / "col")])
    r = device(*args, *extra, cwd=previous.parent)
    one_line(r, 2, needle)
    assert previous.read_bytes() == PREVIOUS
    assert not (previous.parent / "col").exists() and not (previous.parent / "unsure").exists()


def test_output_paths_checked_before_the_run(tmp_path, clip, previous):
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo.json")
    cases = [
        (["--output", tmp_path / "adir"], "is a directory"),
        (["--output", tmp_path / "missing" / "r.json"], "does not exist"),
        (["--output", tmp_path / "fifo.json"], "is a FIFO"),
        (["--output", previous, "--frames-out", tmp_path / "adir"], "--frames-out"),
    ]
    if os.geteuid() == 0:
        cases.append((["--output", "/dev/full"], "is a character device"))
    # A folder where no file can be made, though os.access says yes to root (/proc; also a
    # read-only mount): refused before the run, not with a traceback at its end.
    cases += [(["--output", "/proc/r.json"], "--output /proc/r.json: "),
              (["--output", previous, "--frames-out", "/proc/f.jsonl"], "--frames-out /proc/f.jsonl: ")]
    for flags, needle in cases:
        one_line(device("run", "--source", clip, *flags, timeout=30), 2, needle)
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")
    assert previous.read_bytes() == PREVIOUS
    one_line(device("bench", "--runs", 5, "--json", tmp_path / "adir"), 2, "is a directory")
    one_line(device("bench", "--runs", 5, "--json", "/proc/b.json"), 2, "--json /proc/b.json: ")


def test_output_through_a_symlink_writes_the_target(tmp_path, clip):
    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    r = device("run", "--source", clip, "--quiet", "--output", link)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and json.loads(target.read_text())["frames"] > 0


def test_a_digit_on_a_transparent_background_is_seen_on_white(tmp_path, photos_dir):
    # Drawing apps store transparent pixels as (0, 0, 0, 0): without the alpha channel, a black
    # digit on a transparent background is black on black.
    import cv2
    import numpy as np

    gray = cv2.imread(str(photos_dir / "michael-erasmus-d47c21e-7.png"), cv2.IMREAD_GRAYSCALE)
    ink = (cv2.resize(gray, (200, 180)) < 100).astype(np.uint8) * 255
    bgra = np.zeros((180, 200, 4), np.uint8)
    bgra[..., 3] = ink
    cv2.imwrite(str(tmp_path / "a8.png"), bgra)
    cv2.imwrite(str(tmp_path / "a16.png"), bgra.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "a.webp"), bgra, [cv2.IMWRITE_WEBP_QUALITY, 101])   # lossless, alpha kept
    opaque = np.dstack([255 - ink] * 3 + [np.full_like(ink, 255)])
    cv2.imwrite(str(tmp_path / "opaque.png"), opaque)
    r = device("classify", tmp_path, "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    *rows, _ = [json.loads(l) for l in r.stdout.splitlines()]
    assert {os.path.basename(x["file"]): x["prediction"] for x in rows} == {
        "a8.png": 7, "a16.png": 7, "a.webp": 7, "opaque.png": 7}


def test_classify_with_no_readable_image_fails(tmp_path, photos_dir):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = device("classify", junk, tmp_path / "junk.png", timeout=60)
    assert r.returncode == 2 and "none of the 1 image(s) could be read" in r.stderr, r.stderr
    assert "skipped: not a readable image" in r.stdout and "Traceback" not in r.stderr
    r = device("classify", junk, photos_dir / "Mogith-P-N-bf35649-3.png", timeout=60)
    assert r.returncode == 0 and "1 image(s) could not be read" in r.stderr, r.stderr


def test_unopenable_source_and_empty_run_leave_previous_results(tmp_path, previous):
    one_line(device("run", "--source", tmp_path / "nope.avi", "--output", previous), 2, "no such file")
    assert previous.read_bytes() == PREVIOUS
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = device("run", "--source", junk, "--output", previous, "--quiet")
    one_line(r, 1, "no frame was processed; nothing was written to")
    assert previous.read_bytes() == PREVIOUS


def test_default_output_is_a_new_file_per_run(tmp_path, clip):
    for _ in range(2):
        assert device("run", "--source", clip, "--quiet", "--frames", 3, cwd=tmp_path).returncode == 0
    files = sorted((tmp_path / "runs").glob("run-*.json"))
    assert len(files) == 2 and all(json.loads(f.read_text())["frames"] == 3 for f in files)


def _png_header_only(path, w, h):
    """A tiny PNG file that declares w x h pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress(b"\x00" * (w // 8 + 1) * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def test_fifos_globs_and_bombs_in_an_image_folder(tmp_path, photos_dir):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(photos_dir / "Mogith-P-N-bf35649-3.png", folder / "scan[1].png")
    os.mkfifo(folder / "trap.png")
    _png_header_only(folder / "bomb.png", 20000, 20000)
    # A FIFO never blocks, a name with [ ] is a file, and the bomb is refused from its header.
    r = device("classify", folder / "scan[1].png", timeout=60)
    assert r.returncode == 0 and "scan[1].png  3" in r.stdout, r.stdout + r.stderr
    # Peak RSS of that one process: its VmHWM (getrusage's maxrss would carry over the forking
    # test process's own peak through exec).
    measure = ("import runpy, sys; sys.argv = ['device'] + sys.argv[1:]\n"
               "try: runpy.run_module('device.cli', run_name='__main__')\n"
               "except SystemExit as e: code = e.code\n"
               "from device.system import memory_kb\n"
               "print('maxrss_kb', memory_kb()['peak_rss_kb'], file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", measure, "classify", str(folder), "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    maxrss_kb = int(r.stderr.split("maxrss_kb")[1])
    assert maxrss_kb < 400_000, maxrss_kb          # no 1.2 GB decode of the bomb
    *rows, summary = [json.loads(l) for l in r.stdout.splitlines()]
    assert [os.path.basename(x["file"]) for x in rows] == ["bomb.png", "scan[1].png"]
    assert "above the 40 MP limit" in rows[0]["error"] and summary["failed"] == 1
    r = device("run", "--source", folder, "--quiet", "--no-output", timeout=60)
    assert r.returncode == 0 and "skipped files: 1" in r.stdout, r.stdout + r.stderr


LABELS = [
    ("file,label\nx.png,12\n", "label '12' is not a digit 0-9"),
    ("file,label\nx.png\n", "row 2 lacks the file or label column"),
    ("name,digit\nx.png,1\n", "needs a header row with columns file,label"),
]


@pytest.mark.parametrize("text,needle", LABELS)
def test_bad_labels_files(tmp_path, photos_dir, text, needle):
    p = tmp_path / "labels.csv"
    p.write_text(text)
    one_line(device("classify", photos_dir / "Mogith-P-N-bf35649-3.png", "--labels", p), 2, needle)


def test_labels_encoding(tmp_path, photos_dir):
    p = tmp_path / "labels.csv"
    p.write_bytes(b"file,label\nMogith-P-N-bf35649-3.png,\xff\n")
    one_line(device("classify", photos_dir / "Mogith-P-N-bf35649-3.png", "--labels", p), 2, "not UTF-8")
    p.write_bytes(b"\xef\xbb\xbffile,label\r\nMogith-P-N-bf35649-3.png,3\r\n")   # Excel's BOM + CRLF
    r = device("classify", photos_dir / "Mogith-P-N-bf35649-3.png", "--labels", p)
    assert r.returncode == 0 and "accuracy 100.0% (1/1" in r.stdout, r.stdout + r.stderr


def test_tampered_models(tmp_path, photos_dir):
    """The shipped model never runs without its manifest; a user model without one runs and
    says so, in the output and the results file."""
    copy = tmp_path / "pkg"
    shutil.copytree(ROOT / "device", copy / "device", ignore=shutil.ignore_patterns("__pycache__"))
    model = copy / "device" / "models" / "model.tflite"
    (copy / "device" / "models" / "model.json").unlink()
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    photo = photos_dir / "Mogith-P-N-bf35649-3.png"
    for verb in (["classify", photo], ["bench", "--runs", 5]):
        one_line(device(*verb, cwd=copy), 2, "manifest")
    user = tmp_path / "mine.tflite"
    shutil.copy(SHIPPED, user)
    r = device("classify", photo, "--model", user, "--json")
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1])["verified"] == "unverified"
    out = tmp_path / "r.json"
    r = device("run", "--source", photos_dir, "--model", user, "--output", out, "--quiet", "--frames", 2)
    assert r.returncode == 0 and "unverified" in r.stdout
    assert json.loads(out.read_text())["model"]["verified"] == "unverified"


def test_frames_out_on_a_full_disk_keeps_the_results(tmp_path, clip):
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a tiny tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(small)]).returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    try:
        out = tmp_path / "r.json"
        r = device("run", "--source", clip, "--loop", "--frames", 400, "--quiet", "--output", out,
                   "--frames-out", small / "frames.jsonl")
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "--frames-out" in r.stderr and "No space left" in r.stderr
        res = json.loads(out.read_text())
        assert res["frames"] == 400 and res["outputs"]["frames_out"]["error"]
    finally:
        subprocess.run(["umount", "-l", str(small)])


@pytest.mark.parametrize("milestone", ["device", "numpy", "cv2", "ai_edge_litert._pywrap_litert_interpreter_wrapper"])
def test_ctrl_c_during_start_up_is_quiet(clip, milestone):
    """SIGINT at each stage of start-up (after our package, numpy, OpenCV, the runtime were
    imported: -X importtime reports each as it completes): no traceback; exit 130 from main(),
    or death by SIGINT (which a shell shows as 130) before main() runs, or 0 with the run ended
    cleanly if it had already started."""
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "device.cli", "run", "--source", str(clip),
                             "--loop", "--realtime", "--duration", "30", "--no-output"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == milestone:
            break
    else:
        pytest.fail(f"{milestone} was never imported")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode in (0, 130, -signal.SIGINT), (proc.returncode, err[-2000:])
