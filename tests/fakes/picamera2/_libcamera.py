"""The libcamera side of the double: one Raspberry Pi camera module v2 (IMX219) whose sensor
runs in its own thread, as libcamera's pipeline handler does.

What it reproduces:

* the IMX219's sensor modes as ``rpicam-hello --list-cameras`` lists them (10-bit packed):
  640x480 at 103.33 fps is a (1000, 752)/1280x960 centre crop, 1640x1232 at 41.85 fps and
  3280x2464 at 21.19 fps see the whole 3280x2464 array, 1920x1080 at 47.57 fps is a crop;
* frames only land in queued requests: with none queued the frame is lost (its sequence and
  SensorTimestamp go on), as the pipeline handler drops frames it has no buffer for;
* ``SensorTimestamp`` is CLOCK_MONOTONIC ns at the start of readout (examples/
  timestamp_capture.py l. 10-12), the request completes a readout later; ``FrameDuration`` is
  the frame period in us, fixed by ``FrameDurationLimits`` and clamped to the mode's minimum;
* YUV420 rows padded to the hardware's alignment (picamera2's ``align_stream`` l. 1087-1100:
  planes are multiples of 32 bytes on a Pi 4 (VC4), 64 on a Pi 5 (PiSP); the U and V planes
  are half as wide, so a Y stride is a multiple of 64 or 128: 704 -> 768 on a Pi 5);
* the log on stderr, filtered by ``LIBCAMERA_LOG_LEVELS`` read once when the library loads
  (libcamera src/libcamera/base/log.cpp l. 595-608, 641-700; INFO by default, l. 790);
* acquire of a busy camera: ``RuntimeError("Failed to acquire camera: Device or resource busy")``
  (src/py/libcamera/py_main.cpp l. 153-157; camera.cpp l. 1019-1023 logs the INFO line).

Test knobs come from the ``FAKE_PICAMERA2`` environment variable (JSON), read when a
Picamera2 is made: ``cameras`` (0: none attached), ``busy``, ``dma_denied``, ``platform``
("vc4" | "pisp"), ``clip`` (a video whose frames the sensor sees, looped), ``lose`` (sensor
sequence numbers that never complete), ``stall_after`` (the sensor stops after N frames, as
with a loose cable) and ``stall_mark`` (a file written then), ``lores_adjust`` ([w, h] that
libcamera's validate() substitutes), ``log`` (a file: one line "sequence clip_frame" per
request handed to the application, the spy the tests align predictions with).
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import threading
import time
from collections import deque

import numpy as np

CAMERA_ID = "/base/soc/i2c0mux/i2c@1/imx219@10"
PIXEL_ARRAY = (3280, 2464)
RAW_FORMAT = "SRGGB10_CSI2P"
MODES = [  # size, max fps, crop limits in pixel-array coordinates
    {"format": RAW_FORMAT, "size": (640, 480), "fps": 103.33, "crop": (1000, 752, 1280, 960)},
    {"format": RAW_FORMAT, "size": (1640, 1232), "fps": 41.85, "crop": (0, 0, 3280, 2464)},
    {"format": RAW_FORMAT, "size": (1920, 1080), "fps": 47.57, "crop": (680, 692, 1920, 1080)},
    {"format": RAW_FORMAT, "size": (3280, 2464), "fps": 21.19, "crop": (0, 0, 3280, 2464)},
]
FRAME_DURATION_MAX_US = 1_000_000
Y_STRIDE_ALIGN = {"vc4": 64, "pisp": 128}


def config() -> dict:
    return json.loads(os.environ.get("FAKE_PICAMERA2") or "{}")


# -- the log ------------------------------------------------------------------------------
_LEVELS = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


def _parse_levels(text: str | None) -> list[tuple[str, int]]:
    out = []
    for pair in (text or "").split(","):
        if not pair:
            continue
        cat, _, level = pair.rpartition(":") if ":" in pair else ("*", "", pair)
        level = level.strip()
        sev = int(level) if level.isdigit() else (_LEVELS.index(level) if level in _LEVELS else None)
        if cat and sev is not None and 0 <= sev < len(_LEVELS):
            out.append((cat, sev))
    return out


_LOG_LEVELS = _parse_levels(os.environ.get("LIBCAMERA_LOG_LEVELS"))   # once, at load
_T0 = time.monotonic()


def log(category: str, severity: str, where: str, msg: str) -> None:
    level = 1  # INFO
    for pattern, sev in _LOG_LEVELS:
        if fnmatch.fnmatchcase(category, pattern):
            level = sev
    if _LEVELS.index(severity) >= level:
        t = time.monotonic() - _T0
        print(f"[0:00:{t:012.9f}] [{os.getpid()}] {severity:>5} {category} {where} {msg}",
              file=sys.stderr, flush=True)


log("Camera", "INFO", "camera_manager.cpp:330", "libcamera v0.5.1+rpt20250722")


# -- frames the sensor sees ---------------------------------------------------------------
def lay_out_i420(yuv: np.ndarray, w: int, h: int, stride: int) -> np.ndarray:
    """An I420 image (OpenCV's (h * 3 / 2, w) layout) as the ISP writes it: Y rows of
    ``stride`` bytes, then U and V rows of ``stride / 2``; padding bytes are left dark."""
    flat = np.zeros(stride * h * 3 // 2, np.uint8)
    src = yuv.reshape(-1)
    y = src[: w * h].reshape(h, w)
    u = src[w * h: w * h * 5 // 4].reshape(h // 2, w // 2)
    v = src[w * h * 5 // 4:].reshape(h // 2, w // 2)
    flat[: stride * h].reshape(h, stride)[:, :w] = y
    half = stride // 2
    off = stride * h
    flat[off: off + half * h // 2].reshape(h // 2, half)[:, : w // 2] = u
    off += half * h // 2
    flat[off: off + half * h // 2].reshape(h // 2, half)[:, : w // 2] = v
    return flat


def pattern_frame(seq: int, w: int, h: int) -> np.ndarray:
    """Without a clip: Y[r, c] = (7 * seq + r + 2 * c) mod 256, chroma 128 (tests recompute it)."""
    r, c = np.mgrid[0:h, 0:w]
    y = ((7 * seq + r + 2 * c) % 256).astype(np.uint8)
    return np.concatenate([y.reshape(-1), np.full(w * h // 2, 128, np.uint8)])


class Scene:
    """What the sensor sees: the clip's frames scaled to the lores size, in I420 (looped)."""

    def __init__(self, clip: str | None, w: int, h: int, stride: int):
        self.w, self.h, self.stride = w, h, stride
        self.frames = []
        if clip:
            import cv2

            cap = cv2.VideoCapture(clip)
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                small = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
                self.frames.append(lay_out_i420(cv2.cvtColor(small, cv2.COLOR_BGR2YUV_I420), w, h, stride))
            cap.release()
            if not self.frames:
                raise RuntimeError(f"fake camera: cannot read clip {clip}")

    def frame(self, seq: int) -> tuple[np.ndarray, int]:
        if self.frames:
            k = seq % len(self.frames)
            return self.frames[k], k
        return lay_out_i420(pattern_frame(seq, self.w, self.h), self.w, self.h, self.stride), seq


# -- requests and the camera ---------------------------------------------------------------
class Request:
    """libcamera.Request: buffers per stream, metadata, status, cookie (the camera index)."""
    Complete = "Complete"

    def __init__(self, cookie: int, buffers: dict):
        self.cookie, self.buffers = cookie, buffers
        self.metadata: dict = {}
        self.status = "Pending"
        self.sequence = -1
        self.clip_frame = -1

    def reuse(self) -> None:
        self.metadata, self.status = {}, "Pending"


class Camera:
    """libcamera.Camera for one IMX219, with the sensor thread that completes requests."""

    def __init__(self, cfg: dict, cameras_in_use: set):
        self.cfg, self._in_use = cfg, cameras_in_use
        self.id = CAMERA_ID
        self._queue: deque = deque()
        self._cv = threading.Condition()
        self._thread = None
        self._running = False
        self.on_complete = None   # set by the Picamera2 double (CameraManager.handle_request)
        self.mode = MODES[-1]
        self.period_us = 1e6 / self.mode["fps"]
        self.scene: Scene | None = None
        self.crop = self.mode["crop"]

    def acquire(self) -> None:
        if self.cfg.get("busy") or self.id in self._in_use:
            log("Camera", "INFO", "camera.cpp:1021", "Pipeline handler in use by another process")
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        self._in_use.add(self.id)

    def release(self) -> None:
        self._in_use.discard(self.id)

    def queue_request(self, request: Request) -> None:
        with self._cv:
            self._queue.append(request)
            self._cv.notify_all()

    def start(self, frame_duration_limits) -> None:
        lo = frame_duration_limits[0] if frame_duration_limits else 100
        # The frame length cannot go below the mode's minimum (the sensor's line and frame timing).
        self.period_us = max(lo, 1e6 / self.mode["fps"])
        self._running = True
        self._thread = threading.Thread(target=self._run, name="fake-libcamera-sensor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._cv:
            self._queue.clear()

    def _sleep_until(self, t_ns: int) -> bool:
        with self._cv:
            while self._running:
                left = t_ns - time.monotonic_ns()
                if left <= 0:
                    return True
                self._cv.wait(left / 1e9)
            return False

    def _run(self) -> None:
        cfg = self.cfg
        lose = set(cfg.get("lose", ()))
        stall_after = cfg.get("stall_after")
        period_ns = int(self.period_us * 1000)
        readout_ns = period_ns * 3 // 4
        seq, t = 0, time.monotonic_ns() + period_ns
        while self._running:
            if stall_after is not None and seq >= stall_after:
                # A loose cable: no frame ever comes again; only stop() ends this.
                if cfg.get("stall_mark"):
                    with open(cfg["stall_mark"], "w") as f:
                        f.write(f"{seq}\n")
                with self._cv:
                    while self._running:
                        self._cv.wait()
                return
            if not self._sleep_until(t + readout_ns):
                return
            with self._cv:
                req = self._queue.popleft() if self._queue and seq not in lose else None
            if req is not None:
                data, k = self.scene.frame(seq)
                np.copyto(req.buffers["lores"], data)
                req.metadata = {"SensorTimestamp": t, "FrameDuration": int(self.period_us),
                                "ExposureTime": int(self.period_us * 0.8), "AnalogueGain": 2.0,
                                "DigitalGain": 1.0, "ScalerCrop": self.crop}
                req.status, req.sequence, req.clip_frame = Request.Complete, seq, k
                self.on_complete(req)
            seq += 1
            t += period_ns
