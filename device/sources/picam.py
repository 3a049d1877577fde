"""The Raspberry Pi camera module through picamera2 (Pi OS: ``sudo apt install python3-picamera2``).

The camera scales the image itself: we ask for a small ``lores`` stream in YUV420 (the only
lores format a Pi 4 offers), whose first ``h`` rows are the Y (luma) plane, i.e. grayscale for
free.  Only :func:`y_plane` touches the array layout; it is pure and unit-tested.

Read against picamera2's own source (github.com/raspberrypi/picamera2; line numbers are from
``picamera2/picamera2.py`` at 0.3.36, commit 3e6dff0, unless a tag is named).  What it relies on:

* **Newest frame, no flush.**  With ``queue=True`` and more than one buffer, picamera2 keeps
  the last completed request (``configure_``, l. 1249-1250; ``process_requests`` l. 1478) and
  ``capture_request_`` hands it out (l. 1831-1835), so a capture returns the newest finished
  frame at once, or the next one.  ``flush=True`` would throw away every frame whose exposure
  began before the call (``wait_for_timestamp_``, l. 1552-1563; examples/timestamp_capture.py
  l. 22-24 warns it cuts the frame rate).  examples/opencv_face_detect_3.py l. 41 captures the
  lores array in a plain loop, as we do.
* **A capture that cannot hang.**  ``capture_request(wait=False, signal_function=f)`` returns a
  Job at once (``dispatch_functions`` l. 1521-1522, 1537) and the event loop calls ``f`` when
  it is done (``process_requests`` l. 1492-1493, job.py l. 69-76); we wait on a
  ``threading.Event`` with a timeout, which SIGINT/SIGTERM also interrupt, then collect the
  result with ``wait(job)``.  Unchanged from 0.3.7 (CHANGELOG: ``wait(job)``) to 0.3.36 (read
  in the source of 0.3.12, 0.3.16-0.3.20 and 0.3.36).  Not
  ``capture_request(wait=seconds)``: a number there only became a timeout in 0.3.20 (the v0.3.19
  -> v0.3.20 diff of ``dispatch_functions``), before that it blocks forever; ``wait(job,
  timeout)`` needs 0.3.17 and ``captured_request`` 0.3.19 (CHANGELOG.md).
* **Closing after a stall.**  ``stop()`` with the preview event loop running is itself a job
  queued behind the stuck capture (l. 1400-1403), so it would hang too.  ``close()`` stops the
  preview thread first and then calls ``stop_()`` directly (l. 704-716), so we only call
  ``close()``, after ``cancel_all_and_flush()`` (l. 1354-1366, from 0.3.20: "so that the camera
  can be closed").
* **Absent vs busy.**  No camera: ``global_camera_info()[camera_num]`` raises IndexError
  (l. 344; before 0.3.17 a RuntimeError "Camera(s) not found" chained under the init error).
  Busy: libcamera's ``Camera::acquire`` returns -EBUSY ("Pipeline handler in use by another
  process": src/libcamera/camera.cpp l. 1019-1023 of github.com/raspberrypi/libcamera at
  26bfadc), its Python binding raises RuntimeError "Failed to acquire camera: Device or
  resource busy" (src/py/libcamera/py_main.cpp l. 153-157), and picamera2 wraps that in
  RuntimeError "Camera __init__ sequence did not complete." (l. 355-368).
* **Sensor mode.**  picamera2 picks the sensor mode nearest the raw stream's size
  (``_make_libcamera_config`` l. 1044-1083, "copies how libcamera scores modes"); the raw size
  defaults to the main stream's 640x480, a centre crop on a v2 module.  Asking for half the
  sensor's resolution picks the 2x2-binned, full-field mode of every Pi camera module (v1
  1296x972, v2 1640x1232, v3 2304x1296, HQ 2028x1520).  The frame rate is fixed with
  ``FrameDurationLimits`` (as ``create_video_configuration`` does, l. 918-921;
  examples/hailo/detect.py l. 76-77 uses the ``FrameRate`` alias, controls.py l. 8-18); the
  preview default lets it float between 12 fps and "as fast as possible" (l. 807-812).
* **Sizes.**  libcamera may adjust the requested sizes; ``configure`` writes the validated size
  and stride back (l. 1130-1135, 1210-1211) and ``stream_configuration`` returns them.
  ``MappedArray`` maps the buffer without a copy, as (h * 3 / 2, stride) for YUV420
  (request.py l. 53-84, 319-324); we crop the Y plane and copy it once.
* **Timestamps.**  ``SensorTimestamp`` (ns, CLOCK_MONOTONIC: compared with
  ``time.monotonic_ns()`` in ``wait_for_timestamp_``, l. 1558-1560) and ``FrameDuration`` (us)
  come with every request's metadata.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from device.errors import SourceError, UsageError
from device.sources.base import Frame, Source
from device.stats import Stat

INSTALL = ("picamera2 is not available: on Raspberry Pi OS run `sudo apt install "
           "python3-picamera2` and use a venv made with --system-site-packages "
           "(deploy.sh does both), or use --camera-index N for a USB camera")
SERVICE = "mnist-edge"           # the user unit deploy.sh installs
OLDEST = (0, 3, 12)              # Bookworm's first picamera2; the calls above are checked from there
CANCEL_SINCE = (0, 3, 20)        # cancel_all_and_flush()
FIRST_FRAME_S = 5.0              # start-up: the first frame may take a few AGC/AWB frames
STALL_S = 2.0                    # then a frame is due every 1/fps s: 2 s more is a stall


def y_plane(buf, width: int, height: int, stride: int | None = None):
    """The grayscale image in a YUV420 buffer: the first ``height`` rows of ``stride`` bytes,
    cropped to ``width`` (rows are padded to the stride).  A view, never a copy.

    ``buf`` is either picamera2's 2-D array (``height * 3 // 2`` rows of ``stride``) or the flat
    buffer (then ``stride`` is required).
    """
    if buf.ndim == 1:
        if stride is None:
            raise ValueError("a flat YUV420 buffer needs its stride")
        buf = buf[: stride * height].reshape(height, stride)
    if buf.shape[0] < height or buf.shape[1] < width:
        raise ValueError(f"buffer {buf.shape} is smaller than {height}x{width}")
    return buf[:height, :width]


def _version(text: str | None) -> tuple:
    nums = []
    for part in (text or "").split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        nums.append(int(digits))
    return tuple(nums)


def _import_picamera2():
    """(picamera2 module, its version string or None).  UsageError with the real reason when
    it cannot be imported; libcamera's log level is set first (it reads LIBCAMERA_LOG_LEVELS
    once, when its logger is created: libcamera src/libcamera/base/log.cpp l. 595-608, 641-643)."""
    # INFO is libcamera's default (log.cpp l. 790): a dozen lines per start that would bury our
    # one-line errors.  ERROR lines still show; a user's own setting wins.
    os.environ.setdefault("LIBCAMERA_LOG_LEVELS", "*:ERROR")
    try:
        import picamera2
    except ModuleNotFoundError as exc:
        if exc.name == "picamera2":
            raise UsageError(INSTALL) from None
        raise UsageError(_import_failure(exc)) from None
    except Exception as exc:  # e.g. ValueError from simplejpeg under numpy 2: see _import_failure
        raise UsageError(_import_failure(exc)) from None
    from importlib import metadata

    try:
        version = metadata.version("picamera2")
    except metadata.PackageNotFoundError:
        version = None
    return picamera2, version


def _import_failure(exc: BaseException) -> str:
    """picamera2 is there but does not import: say why, and the usual fix."""
    import numpy

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    what = f"picamera2 is installed but does not import ({type(exc).__name__}: {first})"
    if isinstance(exc, ModuleNotFoundError) and exc.name == "libcamera":
        return f"{what}: sudo apt install python3-libcamera and use a venv made with --system-site-packages"
    if int(numpy.__version__.split(".")[0]) >= 2:
        # apt's camera stack (simplejpeg, ...) is built against the OS's numpy 1.x; a numpy 2 in
        # the venv shadows it (picamera2 issues #1088, #1211).
        return (f"{what}; numpy {numpy.__version__} from {os.path.dirname(numpy.__file__)} "
                "shadows the OS's numpy 1.x that apt's picamera2 is built for: "
                "pip install 'numpy<2' in this venv (deploy.sh pins it)")
    return f"{what}; reinstall it: sudo apt install --reinstall python3-picamera2"


def _chain(exc: BaseException) -> list[BaseException]:
    out = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


@contextlib.contextmanager
def _quiet(logger: str):
    """picamera2 logs its own failures (an error line before raising, l. 366-367): we say it
    in one line of our own instead."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


class PiCameraSource(Source):
    """Frames from picamera2's lores stream, as grayscale arrays.

    Args:
        lores: the (width, height) asked of the camera's scaler (libcamera may adjust it).
        fps: the frame rate to fix (FrameDurationLimits); the rate delivered is recorded.
        stall_s / first_frame_s: how long to wait for a frame before it is a stall.
    """

    kind = "picamera2"
    live = True

    def __init__(self, lores=(320, 240), fps: float = 30.0, stall_s: float = STALL_S,
                 first_frame_s: float = FIRST_FRAME_S):
        super().__init__()
        self.requested = tuple(lores)
        self.fps_requested = float(fps)
        self.stall_s, self.first_frame_s = stall_s, first_frame_s
        self.cam = None
        self.size = self.requested    # read back from the stream configuration in open()
        self.stride = None
        self.mode: dict = {}
        self.frame_age = Stat()       # SensorTimestamp -> frame in our hands
        # Fail before the model loads, with the install command or the real import error.
        self._pc2, self.version = _import_picamera2()
        v = _version(self.version)
        if v and v < OLDEST:
            raise UsageError(f"picamera2 {self.version} is older than {'.'.join(map(str, OLDEST))}, "
                             "the oldest --camera supports: sudo apt update && sudo apt install "
                             "--only-upgrade python3-picamera2")
        self._can_cancel = bool(v) and v >= CANCEL_SINCE

    # -- lifecycle --------------------------------------------------------------------------
    def open(self) -> None:
        self.cam = self._construct()
        cam = self.cam
        try:
            sensor = cam.sensor_resolution   # half of it: the binned full-field mode (docstring)
            w, h = self.requested
            main = (max(640, w), max(480, h))   # lores may not exceed main (l. 987-989)
            period_us = int(round(1e6 / self.fps_requested))
            config = cam.create_preview_configuration(
                main={"size": main}, lores={"size": (w, h), "format": "YUV420"},
                raw={"size": (sensor[0] // 2, sensor[1] // 2)}, buffer_count=4, queue=True,
                controls={"FrameDurationLimits": (period_us, period_us)})
            cam.configure(config)
            lores = cam.stream_configuration("lores")
            self.size, self.stride = tuple(lores["size"]), lores["stride"]
            self.mode = self._mode()
            cam.start()
        except RuntimeError as exc:  # picamera2 reports configuration failures as RuntimeError
            raise UsageError(f"the camera could not be configured or started ({_first(exc)}); "
                             "check `rpicam-hello` works, or use --camera-index N") from None

    def _construct(self):
        try:
            with _quiet("picamera2"):
                return self._pc2.Picamera2()
        except IndexError:
            raise UsageError(_absent()) from None
        except PermissionError as exc:   # DmaHeap opens /dev/dma_heap/* (dma_heap.py l. 69-75)
            raise UsageError(f"no permission for the camera ({exc.filename or exc}): add this user to "
                             "the video group (sudo usermod -aG video $USER) and log in again") from None
        except RuntimeError as exc:
            text = " / ".join(str(e) for e in _chain(exc))
            if "Camera(s) not found" in text:   # before 0.3.17 an absent camera fails inside init
                raise UsageError(_absent()) from None
            if "acquire" in text or "busy" in text.lower():
                raise UsageError(f"the camera is busy: another process holds it ({_first(exc)}); if it "
                                 f"is the {SERVICE} service, stop it first: systemctl --user stop "
                                 f"{SERVICE}") from None
            raise UsageError(f"picamera2 could not open the camera ({text}); check "
                             "`rpicam-hello --list-cameras`") from None

    def _mode(self) -> dict:
        """The sensor mode libcamera chose, and how much of the sensor it sees."""
        cam = self.cam
        raw = cam.stream_configuration("raw") or {}
        limits = cam.camera_controls.get("ScalerCrop")   # (min, max, default): max is the mode's crop
        crop = list(limits[1]) if limits else None
        array = cam.camera_properties.get("PixelArraySize")
        fov = round(crop[2] * crop[3] / (array[0] * array[1]), 3) if crop and array else None
        return {"size": list(raw.get("size") or ()), "format": str(raw.get("format")), "crop": crop,
                "pixel_array": list(array or ()), "field_of_view": fov,
                "camera": cam.camera_properties.get("Model")}

    def close(self) -> None:
        cam, self.cam = self.cam, None
        if cam is not None:
            cam.close()   # never stop() first: see the module docstring

    def describe(self) -> dict:
        w, h = self.size
        age = self.frame_age.to_dict()
        return {**super().describe(), "fps": self.fps and round(self.fps, 3),   # delivered
                "spec": f"lores {w}x{h} YUV420, stride {self.stride}",
                "decode": "gray", "picamera2": self.version, "fps_requested": self.fps_requested,
                "lores_requested": list(self.requested), "sensor_mode": self.mode,
                "frame_age_ms": {k: age[k] for k in ("count", "p50", "p90", "p99", "max") if k in age}}

    # -- frames -----------------------------------------------------------------------------
    def _request(self, timeout_s: float):
        """The next completed request (the newest one picamera2 holds), or SourceError."""
        done = threading.Event()
        job = self.cam.capture_request(wait=False, signal_function=lambda _job: done.set())
        if not done.wait(timeout_s):
            raise SourceError(f"the camera delivered no frame for {timeout_s:.3g} s (a loose or "
                              "damaged ribbon cable, or the sensor stopped); check the cable and "
                              "`rpicam-hello`")
        try:
            return self.cam.wait(job)
        except RuntimeError as exc:   # raised inside picamera2's event loop (job.py l. 63-65)
            raise SourceError(f"picamera2 failed to capture: {_first(exc)}") from None

    def _cancel(self) -> None:
        """Drop a capture job still queued (a stall, or a signal during the wait), so that no
        job is left to take a buffer and close() finds an empty queue."""
        if self.cam is not None and self._can_cancel:
            self.cam.cancel_all_and_flush()

    def frames(self):
        w, h = self.size
        index = 0
        slack = 3 / self.fps_requested   # a slow frame rate is not a stall
        try:
            while True:
                t0 = time.perf_counter_ns()
                request = self._request(slack + (self.first_frame_s if index == 0 else self.stall_s))
                mono = time.monotonic_ns()   # SensorTimestamp's clock, not perf_counter's
                try:
                    md = request.get_metadata()
                    with self._pc2.MappedArray(request, "lores") as m:
                        gray = y_plane(m.array, w, h).copy()   # the one copy, Y plane only
                finally:
                    request.release()
                sensor_ns = md.get("SensorTimestamp")
                if md.get("FrameDuration"):
                    self.fps = 1e6 / md["FrameDuration"]
                if sensor_ns:
                    self.count_gap(sensor_ns)   # sensor frames between two we got: dropped
                    self.frame_age.add(max(0, mono - sensor_ns))
                now = time.perf_counter_ns()
                yield Frame(index, gray, now, now - t0, sensor_ns=sensor_ns)
                index += 1
        except BaseException:
            self._cancel()
            raise


def _first(exc: BaseException) -> str:
    """The innermost cause's message (libcamera's, not picamera2's wrapper)."""
    inner = _chain(exc)[-1]
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0]}" if text else type(inner).__name__


def _absent() -> str:
    return ("no camera found by libcamera: check the ribbon cable at both ends and "
            "`rpicam-hello --list-cameras`, or use --camera-index N for a USB camera")
