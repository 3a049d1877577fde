"""The picamera2 adapter (device/sources/picam.py) against a double of picamera2 built from its
source (tests/fakes/picamera2: the event loop, job queue, request recycling and init errors of
picamera2 0.3.x, and an IMX219 whose sensor runs in its own thread).

The double is configured through the FAKE_PICAMERA2 environment variable (see
tests/fakes/picamera2/_libcamera.py) and plays the release named in the dist-info the tests
put beside it, so old releases (no captured_request, no capture timeouts) are covered too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from device.errors import SourceError, UsageError
from tests.conftest import ROOT

FAKES = Path(__file__).resolve().parent / "fakes"


def make_site(folder: Path, version: str) -> Path:
    """A site folder with the double as ``picamera2`` and a dist-info naming its release, as
    apt's python3-picamera2 installs one."""
    site = folder / f"site-{version}"
    if not site.exists():
        site.mkdir(parents=True)
        (site / "picamera2").symlink_to(FAKES / "picamera2", target_is_directory=True)
        info = site / f"picamera2-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: picamera2\nVersion: {version}\n")
    return site


def _purge():
    for name in [m for m in sys.modules if m == "picamera2" or m.startswith("picamera2.")]:
        del sys.modules[name]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Install the double (release ``version``) with the knobs ``cfg``; returns the site folder."""
    had_levels = "LIBCAMERA_LOG_LEVELS" in os.environ
    monkeypatch.delenv("LIBCAMERA_LOG_LEVELS", raising=False)

    def install(version="0.3.36", **cfg):
        _purge()
        site = make_site(tmp_path, version)
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.setenv("FAKE_PICAMERA2", json.dumps(cfg))
        return site

    yield install
    _purge()
    if not had_levels:
        os.environ.pop("LIBCAMERA_LOG_LEVELS", None)


def source(**kw):
    from device.sources.picam import PiCameraSource

    return PiCameraSource(**kw)


def expected_y(seq, w, h):
    """The double's test pattern (``pattern_frame`` in _libcamera.py), recomputed here."""
    r, c = np.mgrid[0:h, 0:w]
    return ((7 * seq + r + 2 * c) % 256).astype(np.uint8)


# -- frames, sizes, copies -----------------------------------------------------------------------
def test_padded_stride_gives_the_cropped_y_plane_copied_once(fake):
    fake(platform="pisp")   # Pi 5: YUV420 rows padded to 128 bytes, 704 -> 768
    with source(lores=(704, 528)) as cam:
        assert (cam.size, cam.stride) == ((704, 528), 768)
        frames = cam.frames()
        got = [next(frames) for _ in range(3)]
        delivered = cam.cam.delivered[:3]
        frames.close()
        for f, (seq, _) in zip(got, delivered):
            assert f.image.shape == (528, 704) and f.image.dtype == np.uint8
            # Its own memory (the camera buffer went back to libcamera), and still the frame
            # that was delivered after later frames were written into the same buffers.
            assert f.image.flags.c_contiguous and f.image.base is None
            assert np.array_equal(f.image, expected_y(seq, 704, 528))
        assert "stride 768" in cam.describe()["spec"]


def test_lores_size_is_read_back_from_the_stream_configuration(fake):
    fake(lores_adjust=[320, 236])   # libcamera's validate() chose another size
    with source(lores=(320, 240)) as cam:
        frames = cam.frames()
        f = next(frames)
        frames.close()
        assert f.image.shape == (236, 320)
        d = cam.describe()
        assert d["lores_requested"] == [320, 240] and d["spec"].startswith("lores 320x236")


# -- sensor mode and frame rate ---------------------------------------------------------------
def test_full_field_of_view_mode_and_the_frame_rate_are_set_and_recorded(fake):
    fake()
    with source(fps=30) as cam:
        assert cam.cam.camera_config["controls"]["FrameDurationLimits"] == (33333, 33333)
        frames = cam.frames()
        for _ in range(3):
            next(frames)
        frames.close()
        d = cam.describe()
    # IMX219: the 2x2-binned 1640x1232 mode sees the whole 3280x2464 array.
    assert d["sensor_mode"]["size"] == [1640, 1232] and d["sensor_mode"]["field_of_view"] == 1.0
    assert d["fps"] == pytest.approx(30, rel=1e-3) and d["fps_requested"] == 30


def test_the_double_crops_like_picamera2_without_a_raw_size(fake):
    """What the issue describes: picamera2's default raw size (main's 640x480) selects the
    centre-crop mode on a v2 module.  The double must reproduce it for the test above to mean
    anything."""
    fake()
    import picamera2

    cam = picamera2.Picamera2()
    try:
        cam.configure(cam.create_preview_configuration(main={"size": (640, 480)}))
        assert cam.stream_configuration("raw")["size"] == (640, 480)
        assert cam.camera_controls["ScalerCrop"][1] == (1000, 752, 1280, 960)
    finally:
        cam.close()


def test_a_rate_the_mode_cannot_reach_is_recorded_as_delivered(fake):
    fake()
    with source(fps=60) as cam:   # the full-field mode tops out at 41.85 fps
        frames = cam.frames()
        next(frames), next(frames)
        frames.close()
        assert cam.describe()["fps"] == pytest.approx(41.85, rel=1e-3)


# -- newest frame, drops, latency ---------------------------------------------------------------
def test_a_slow_loop_gets_a_frame_already_taken_and_drops_are_counted(fake):
    """No flush: when processing is slower than the camera, the capture returns the newest frame
    picamera2 already holds.  With flush=True every frame would have started its exposure after
    the call (wait_for_timestamp_, picamera2.py l. 1552-1563), i.e. after a fresh exposure and
    readout.  (Checked on timestamps, not on wall-clock waits: the machine may be loaded.)"""
    fake()
    with source(fps=30) as cam:
        period_ns = 1e9 / 30
        frames = cam.frames()
        next(frames)
        before = []
        for _ in range(6):
            time.sleep(2.5 * period_ns / 1e9)   # processing slower than the camera
            t_call = time.monotonic_ns()
            f = next(frames)
            before.append(f.sensor_ns < t_call)   # read out before we asked
        frames.close()
        assert sum(before) >= 4, before
        seqs = [s for s, _ in cam.cam.delivered]
        # Dropped = the sensor frames between the ones we got, from SensorTimestamp.
        assert cam.dropped == sum(b - a - 1 for a, b in zip(seqs, seqs[1:])) > 0
        age = cam.describe()["frame_age_ms"]
        # Age >= the readout (3/4 of a period in the double): the clocks agree.
        assert age["count"] == 7 and 0.75 * period_ns / 1e6 <= age["p50"] < 2000


def test_frames_lost_by_the_sensor_are_counted_as_dropped(fake):
    fake(lose=[3, 4, 9])
    with source(fps=30) as cam:
        frames = cam.frames()
        for _ in range(10):
            next(frames)
        frames.close()
        seqs = [s for s, _ in cam.cam.delivered]
        assert not {3, 4, 9} & set(seqs)
        assert cam.dropped == sum(b - a - 1 for a, b in zip(seqs, seqs[1:])) >= 3


# -- stalls --------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.3.36", "0.3.19", "0.3.16"])
def test_a_stalled_camera_ends_in_a_source_error_and_closes(fake, version):
    """Only a timeout ends the wait (the double's sensor never completes another request);
    releases before 0.3.17 have no timeout of their own and none before 0.3.20 can cancel."""
    fake(version, stall_after=3)
    cam = source(stall_s=0.3)
    with cam:
        frames, got = cam.frames(), 0
        with pytest.raises(SourceError, match=r"no frame for 0\.4 s"):
            while True:   # up to 3 frames (fewer if a slow machine dropped some), then the stall
                next(frames)
                got += 1
                t0 = time.monotonic()
        assert 1 <= got <= 3
        assert time.monotonic() - t0 >= 0.39   # the timeout, not an error, ended it
        if version >= "0.3.20":
            assert cam.cam._job_list == []   # cancelled: nothing left to take a buffer
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 20 and cam.cam is None   # close() did not hang


def test_stop_behind_a_hung_capture_hangs_in_picamera2_itself(fake):
    """Why close() never calls stop() first: with the event loop running, stop() is a job queued
    behind the stuck capture (picamera2.py l. 1400-1403)."""
    fake(stall_after=0)
    import picamera2

    cam = picamera2.Picamera2()
    cam.configure(cam.create_preview_configuration())
    cam.start()
    cam.capture_request(wait=False)          # waits for a frame that never comes
    stopper = threading.Thread(target=lambda: _ignore(cam.stop), daemon=True)
    stopper.start()
    stopper.join(1.0)
    assert stopper.is_alive()                # stop() is stuck behind the capture
    cam.cancel_all_and_flush()               # cancels both; now close() can run
    stopper.join(2.0)
    assert not stopper.is_alive()
    cam.close()


def _ignore(fn):
    try:
        fn()
    except BaseException:
        pass


def test_an_error_that_is_a_bug_is_not_called_a_camera_failure(fake, monkeypatch):
    fake()
    import picamera2

    def broken(self):
        raise AttributeError("'CompletedRequest' object has no attribute 'nope'")

    monkeypatch.setattr(picamera2.Picamera2, "capture_request_", broken)
    with source() as cam:
        frames = cam.frames()
        with pytest.raises(AttributeError):
            next(frames)


# -- versions ------------------------------------------------------------------------------------
def test_a_release_without_captured_request_works(fake):
    fake("0.3.16")
    import picamera2

    assert not hasattr(picamera2.Picamera2, "captured_request")
    with source() as cam:
        frames = cam.frames()
        got = [next(frames) for _ in range(3)]
        frames.close()
        assert cam.describe()["picamera2"] == "0.3.16"
        for f, (seq, _) in zip(got, cam.cam.delivered):
            assert np.array_equal(f.image, expected_y(seq, 320, 240))


def test_a_release_older_than_bookworm_s_is_refused_with_the_upgrade(fake):
    fake("0.3.11")
    with pytest.raises(UsageError, match="sudo apt install --only-upgrade python3-picamera2"):
        source()


def test_the_real_import_error_is_shown(fake):
    fake(broken_import=True)
    with pytest.raises(UsageError) as err:
        source()
    msg = str(err.value)
    assert "numpy.dtype size changed" in msg and "not available" not in msg
    if int(np.__version__.split(".")[0]) >= 2:
        assert "pip install 'numpy<2'" in msg


# -- absent, busy, no permission -------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.3.36", "0.3.16"])
def test_no_camera(fake, version):
    fake(version, cameras=0)   # IndexError from 0.3.17, a chained RuntimeError before
    with pytest.raises(UsageError, match="no camera found by libcamera"):
        with source():
            pass


def test_busy_camera_names_the_service(fake):
    fake()
    with source():
        with pytest.raises(UsageError) as err:   # a second user of the same camera
            with source():
                pass
    msg = str(err.value)
    assert "busy" in msg and "systemctl --user stop mnist-edge" in msg
    assert "Device or resource busy" in msg and "no camera" not in msg


def test_no_permission_names_the_video_group(fake):
    fake(dma_denied=True)
    with pytest.raises(UsageError, match="video group"):
        with source():
            pass


# -- device run --camera end to end ------------------------------------------------------------
def run_device(site, cfg, *args, env_extra=None, **popen):
    env = {k: v for k, v in os.environ.items() if k != "LIBCAMERA_LOG_LEVELS"}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), FAKE_PICAMERA2=json.dumps(cfg),
               **(env_extra or {}))
    cmd = [sys.executable, "-m", "device.cli", "run", "--camera", *args]
    if popen:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    return subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A real MJPG clip of MNIST test digits from `device make-clip` (labels beside it)."""
    path = tmp_path_factory.mktemp("camclip") / "clip.avi"
    subprocess.run([sys.executable, "-m", "device.cli", "make-clip", str(path), "--digits", "30",
                    "--hold", "2", "--seed", "3"], cwd=ROOT, check=True, capture_output=True)
    return path


def test_device_run_camera_reads_real_digits(tmp_path, clip):
    """The clip is decoded with OpenCV, scaled to the lores size and laid out as YUV420 with a
    Pi 5's padded stride (320 -> 384); the shipped model must read the digits the camera saw."""
    from device.synth import load_labels

    labels = load_labels(clip)
    site = make_site(tmp_path, "0.3.36")
    spy, out, frames = tmp_path / "delivered.txt", tmp_path / "r.json", tmp_path / "f.jsonl"
    r = run_device(site, {"clip": str(clip), "platform": "pisp", "log": str(spy)},
                   "--frames", str(len(labels)), "--output", str(out), "--frames-out", str(frames),
                   "--quiet")
    assert r.returncode == 0, r.stderr
    # libcamera's INFO / WARN lines ("[0:00:01.2] [pid]  INFO ...") are quiet by default.
    assert not [line for line in r.stderr.splitlines() if line.startswith("[")], r.stderr
    res = json.loads(out.read_text())
    rows = [json.loads(line) for line in frames.read_text().splitlines()]
    seen = [tuple(map(int, line.split())) for line in spy.read_text().splitlines()]
    assert res["status"] == "ok" and res["frames"] == len(rows) == len(seen) == len(labels)
    truth = [labels[k] for _, k in seen]
    digits = [(row["prediction"], lab) for row, lab in zip(rows, truth) if lab is not None]
    assert np.mean([p == lab for p, lab in digits]) >= 0.9
    blanks = [row["prediction"] for row, lab in zip(rows, truth) if lab is None]
    assert blanks and np.mean([p is None for p in blanks]) >= 0.8
    seqs = [s for s, _ in seen]
    assert res["counts"]["dropped"] == sum(b - a - 1 for a, b in zip(seqs, seqs[1:]))
    src = res["source"]
    assert src["kind"] == "picamera2" and src["spec"] == "lores 320x240 YUV420, stride 384"
    assert src["sensor_mode"]["size"] == [1640, 1232] and src["fps"] == pytest.approx(30, rel=1e-3)
    assert src["frame_age_ms"]["count"] == len(labels)


def test_device_run_camera_on_a_stalled_camera_is_a_source_error(tmp_path):
    site = make_site(tmp_path, "0.3.36")
    out = tmp_path / "r.json"
    t0 = time.monotonic()
    r = run_device(site, {"stall_after": 4}, "--output", str(out), "--quiet")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("device: error: the camera delivered no frame for 2.1 s")
    res = json.loads(out.read_text())
    assert res["status"] == "source_error" and 1 <= res["frames"] <= 4
    assert time.monotonic() - t0 < 60


def test_sigterm_ends_a_stalled_camera_run_with_results(tmp_path):
    """SIGTERM while the loop waits for a frame that never comes (before the 2 s stall timeout):
    the run stops, the camera closes and the results are written, status stopped."""
    site = make_site(tmp_path, "0.3.36")
    out, mark = tmp_path / "r.json", tmp_path / "stalled"
    proc = run_device(site, {"stall_after": 5, "stall_mark": str(mark)}, "--output", str(out),
                      "--quiet", "--checkpoint-s", "0.01", popen=True)
    deadline = time.monotonic() + 60
    while not mark.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)   # the loop has taken what was there and waits
    running = json.loads(out.read_text())   # the checkpoint written while running
    assert running["status"] == "running" and running["frames"] >= 1
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    # Exit 0 and "stopped": the signal ended the wait (the 2 s stall timeout would have been a
    # source error, exit 1).
    assert proc.returncode == 0, stderr
    res = json.loads(out.read_text())
    assert (res["status"], res["stop_reason"]) == ("stopped", "SIGTERM") and 1 <= res["frames"] <= 5
    assert res["source"]["sensor_mode"]["size"] == [1640, 1232]


def test_fps_flag_is_checked_before_anything_starts(tmp_path):
    site = make_site(tmp_path, "0.3.36")
    r = run_device(site, {}, "--fps", "0", "--no-output")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "device run: error: argument --fps: --fps must be > 0 (got 0) (see device run --help)"], r.stderr


def test_device_run_camera_busy_is_one_line(tmp_path):
    site = make_site(tmp_path, "0.3.36")
    r = run_device(site, {"busy": True}, "--no-output")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    # One line: nothing from libcamera ("[0:00:01.2] [pid]  INFO ...") or from picamera2's
    # logger ("Camera __init__ sequence did not complete.").
    assert len(lines) == 1 and lines[0].startswith("device: error: the camera is busy"), r.stderr
    assert "systemctl --user stop mnist-edge" in lines[0]
    # A user who asks for libcamera's log gets it, and our line is still the last.
    r = run_device(site, {"busy": True}, "--no-output", env_extra={"LIBCAMERA_LOG_LEVELS": "*:INFO"})
    lines = r.stderr.strip().splitlines()
    assert any("Pipeline handler in use by another process" in x for x in lines)
    assert "systemctl --user stop mnist-edge" in lines[-1]
