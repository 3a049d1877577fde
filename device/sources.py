"""Frame sources: context managers that yield frames with capture timestamps.

* :class:`OpenCVSource` - a V4L2 camera (``--camera-index N`` / ``--source /dev/videoN``), a
  video file, or a folder / glob of images (``--source``), all through OpenCV.
* :class:`~device.picam.PiCameraSource` - the Raspberry Pi camera module via picamera2.

A source's ``frames()`` yields :class:`Frame`; a frame OpenCV cannot decode is counted in
``unreadable`` and skipped; a live camera that stops delivering raises
:class:`~device.errors.SourceError`.
"""

from __future__ import annotations

import glob as globmod
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.errors import SourceError, UsageError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


@dataclass
class Frame:
    index: int              # 0-based, counts delivered frames only
    image: np.ndarray       # gray (H, W) or BGR (H, W, 3), uint8
    t_capture_ns: int       # perf_counter_ns when the frame became available
    wait_ns: int            # how long the loop waited for it (capture stage)
    name: str = ""          # file name for image replays


def _cv2():
    try:
        import cv2
    except ImportError:
        raise UsageError("OpenCV is missing: pip install opencv-python-headless "
                         "(or sudo apt install python3-opencv)") from None
    return cv2


class OpenCVSource:
    """Camera, video file or images.

    Args:
        spec: an int camera index, ``/dev/videoN``, a video file, a folder or a glob.
        realtime: pace a replay at the clip's frame rate (images: ``fps``).
        loop: restart a replay at its end (for soak tests).
        fps: the pace of image replays with ``realtime``.
        fast_decode: for an MJPG video, decode each JPEG packet straight to grayscale at a
            reduced size (libjpeg's DCT scaling), no smaller than ``min_side`` on the longer
            side - the file equivalent of the Pi camera's small ``lores`` Y plane.  The
            preprocessing works on a ~160 px gray copy anyway; this skips the colour
            conversion and most of the inverse DCT.  False decodes full-size BGR frames.
        min_side: the smallest longer side a reduced decode may produce.
    """

    def __init__(self, spec, realtime: bool = False, loop: bool = False, fps: float = 30.0,
                 fast_decode: bool = True, min_side: int = 160):
        self.spec, self.realtime, self.loop = spec, realtime, loop
        self.fps = fps
        self.fast_decode, self.min_side = fast_decode, min_side
        self.jpeg_flag: int | None = None  # set when the clip is decoded packet by packet
        self.decode_factor = 1
        self.unreadable = 0
        self.files: list[str] | None = None
        self.cap = None
        self.live = isinstance(spec, int) or str(spec).startswith("/dev/video")
        if not self.live:
            self.files = self._image_list(str(spec))
            if self.files is None and not Path(spec).is_file():
                raise UsageError(f"--source {spec}: no such file, folder or matching images")

    @staticmethod
    def _image_list(spec: str) -> list[str] | None:
        p = Path(spec)
        if p.is_dir():
            files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        elif any(ch in spec for ch in "*?["):
            files = sorted(f for f in globmod.glob(spec) if Path(f).suffix.lower() in IMAGE_EXTS)
        elif p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            files = [str(p)]
        else:
            return None
        if not files:
            raise UsageError(f"--source {spec}: no images ({', '.join(sorted(IMAGE_EXTS))}) found")
        return files

    def __enter__(self):
        if self.files is None:
            cv2 = _cv2()
            if self.live:
                index = self.spec if isinstance(self.spec, int) else str(self.spec)
                self.cap = cv2.VideoCapture(index, cv2.CAP_V4L2)
                # One buffered frame: each read returns a fresh frame, not a queue of old ones.
                self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            else:
                self.cap = cv2.VideoCapture(str(self.spec))
            if not self.cap.isOpened():
                what = "camera" if self.live else "video"
                raise UsageError(f"cannot open {what} {self.spec}; check the path / index "
                                 "(`device info` lists cameras) and permissions")
            clip_fps = self.cap.get(cv2.CAP_PROP_FPS)
            if clip_fps and 0 < clip_fps < 1000:
                self.fps = clip_fps
            if not self.live and self.fast_decode:
                self._use_packets(cv2)
        return self

    def _use_packets(self, cv2) -> None:
        """Switch an MJPG clip to raw packets + reduced grayscale decoding, when it can."""
        fourcc = int(self.cap.get(cv2.CAP_PROP_FOURCC) or 0).to_bytes(4, "little")
        side = max(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH), self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if fourcc.upper() not in (b"MJPG", b"JPEG") or not side:
            return
        factor = 1
        while factor < 8 and side / (factor * 2) >= self.min_side:
            factor *= 2
        if self.cap.set(cv2.CAP_PROP_FORMAT, -1):
            self.jpeg_flag = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
                              4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                              8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[factor]
            self.decode_factor = factor

    def __exit__(self, *exc):
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        return False

    def describe(self) -> dict:
        kind = "camera" if self.live else ("images" if self.files is not None else "video")
        decode = "bgr" if self.jpeg_flag is None else (
            "gray" + (f"/{self.decode_factor}" if self.decode_factor > 1 else ""))
        return {"kind": kind, "spec": str(self.spec), "fps": self.fps, "realtime": self.realtime,
                "loop": self.loop, "decode": decode}

    def frames(self):
        """Yield frames until the source ends (or forever with ``loop``)."""
        index = 0
        period_ns = int(1e9 / self.fps) if self.realtime and self.fps > 0 else 0
        next_due = time.perf_counter_ns()
        while True:
            delivered = 0
            for image, name, wait_ns in self._one_pass():
                if period_ns:
                    now = time.perf_counter_ns()
                    if next_due > now:
                        time.sleep((next_due - now) / 1e9)
                        wait_ns += next_due - now
                    next_due = max(next_due + period_ns, time.perf_counter_ns() - period_ns)
                delivered += 1
                yield Frame(index, image, time.perf_counter_ns(), wait_ns, name)
                index += 1
            if not self.loop or self.live or delivered == 0:
                return

    def _one_pass(self):
        cv2 = _cv2()
        if self.files is not None:
            for f in self.files:
                t0 = time.perf_counter_ns()
                img = cv2.imread(f, cv2.IMREAD_COLOR)
                if img is None:
                    self.unreadable += 1
                    continue
                yield img, os.path.basename(f), time.perf_counter_ns() - t0
            return
        if not self.live:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        failures = 0
        while True:
            t0 = time.perf_counter_ns()
            ok, img = self.cap.read()
            if ok and self.jpeg_flag is not None:
                img = cv2.imdecode(img, self.jpeg_flag)
                if img is None:  # a damaged packet: count it, go on with the next
                    self.unreadable += 1
                    continue
            wait = time.perf_counter_ns() - t0
            if ok and img is not None:
                failures = 0
                yield img, "", wait
                continue
            if not self.live:
                return  # end of the clip
            failures += 1
            self.unreadable += 1
            if failures >= 10:
                raise SourceError(f"camera {self.spec} stopped delivering frames "
                                  f"({failures} failed reads in a row)")


def open_source(camera: bool = False, camera_index: int | None = None, source: str | None = None,
                realtime: bool = False, loop: bool = False, lores=(320, 240), fast_decode: bool = True):
    """Pick the source from the CLI flags (exactly one of them)."""
    chosen = [camera, camera_index is not None, source is not None]
    if sum(chosen) != 1:
        raise UsageError("give exactly one of --camera, --camera-index N or --source FILE|DIR|GLOB")
    if camera:
        from device.picam import PiCameraSource

        return PiCameraSource(lores)
    if camera_index is not None:
        return OpenCVSource(camera_index)
    return OpenCVSource(source, realtime=realtime, loop=loop, fast_decode=fast_decode)
