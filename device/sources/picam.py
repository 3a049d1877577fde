"""The Raspberry Pi camera module through picamera2 (Pi OS: ``sudo apt install python3-picamera2``).

The camera scales the image itself: we ask for a small ``lores`` stream in YUV420 (the only
lores format a Pi 4 offers), whose first ``h`` rows are the Y (luma) plane, i.e. grayscale for
free.  Only :func:`y_plane` touches the array layout; it is pure and unit-tested.
"""

from __future__ import annotations

import time

import numpy as np

from device.errors import SourceError, UsageError
from device.sources.base import Frame, Source

INSTALL = ("picamera2 is not available: on Raspberry Pi OS run `sudo apt install "
           "python3-picamera2` and use a venv made with --system-site-packages "
           "(deploy.sh does both), or use --camera-index N for a USB camera")


def y_plane(buf: np.ndarray, width: int, height: int, stride: int | None = None) -> np.ndarray:
    """The grayscale image in a YUV420 buffer: the first ``height`` rows of ``stride`` bytes,
    cropped to ``width`` (rows are padded to the stride).

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


class PiCameraSource(Source):
    """Frames from picamera2's lores stream, as grayscale arrays."""

    kind = "picamera2"
    live = True

    def __init__(self, lores=(320, 240)):
        super().__init__()
        self.size = tuple(lores)
        self.cam = None
        try:  # fail before the model loads, with the install command
            from picamera2 import Picamera2
        except ImportError:
            raise UsageError(INSTALL) from None
        self._cls = Picamera2

    def open(self) -> None:
        try:
            self.cam = self._cls()
        except (IndexError, RuntimeError) as exc:  # no camera attached / not enabled
            raise UsageError(f"no camera found by picamera2 ({exc}); check the ribbon cable and "
                             "`rpicam-hello --list-cameras`, or use --camera-index N") from None
        config = self.cam.create_preview_configuration(
            main={"size": (640, 480)}, lores={"size": self.size, "format": "YUV420"},
            buffer_count=4)
        self.cam.configure(config)
        self.stride = self.cam.stream_configuration("lores")["stride"]
        self.cam.start()

    def close(self) -> None:
        if self.cam is not None:
            self.cam.stop()
            self.cam.close()
            self.cam = None

    def describe(self) -> dict:
        return {**super().describe(), "spec": f"lores {self.size[0]}x{self.size[1]} YUV420",
                "decode": "gray"}

    def frames(self):
        w, h = self.size
        index = 0
        while True:
            t0 = time.perf_counter_ns()
            try:
                # flush=True: a frame that started after this call, never a stale queued one;
                # the context manager always hands the buffer back to the camera.
                with self.cam.captured_request(flush=True) as request:
                    gray = y_plane(request.make_array("lores"), w, h, self.stride).copy()
            except Exception as exc:  # libcamera errors surface as assorted types
                raise SourceError(f"camera stopped delivering frames: {exc}") from None
            now = time.perf_counter_ns()
            yield Frame(index, gray, now, now - t0)
            index += 1
