"""A recorded video file as a source (``--source clip.avi``), through OpenCV.

An MJPG clip is read packet by packet and each JPEG decoded straight to a reduced grayscale
frame (libjpeg's DCT scaling): the file equivalent of the Pi camera's ``lores`` Y plane, at the
same 320x240 that ``device.sources.picam`` asks of the camera, so a replay shows the
preprocessing what a camera would (a hairline pen or a small digit of a number keeps the
detail the camera gives it).  This skips the colour conversion and most of the inverse DCT.
``fast_decode=False`` (``--full-decode``) decodes full-size BGR.
"""

from __future__ import annotations

import time

from device.errors import UsageError
from device.sources.base import Replay, opencv
from device.sources.images import is_regular


class VideoFile(Replay):
    """Args:
        path: the video file.
        realtime: pace the replay at the clip's frame rate.
        loop: restart at the end (soak tests).
        fast_decode: reduced grayscale decoding of MJPG packets (see the module docstring),
            no smaller than ``min_side`` on the longer side.
    """

    kind = "video"

    def __init__(self, path: str, realtime: bool = False, loop: bool = False,
                 fast_decode: bool = True, min_side: int = 320):
        super().__init__(realtime, loop)
        if not is_regular(path):
            raise UsageError(f"--source {path}: no such file, folder or matching images")
        self.path, self.fast_decode, self.min_side = str(path), fast_decode, min_side
        self.cap = None
        self.jpeg_flag: int | None = None   # set when the clip is decoded packet by packet
        self.decode_factor = 1

    def open(self) -> None:
        cv2 = opencv()
        self.cap = cv2.VideoCapture(self.path)
        if not self.cap.isOpened():
            raise UsageError(f"cannot open video {self.path}: not a video OpenCV can read")
        clip_fps = self.cap.get(cv2.CAP_PROP_FPS)
        if clip_fps and 0 < clip_fps < 1000:
            self.fps = clip_fps
        if self.fast_decode:
            self._use_packets(cv2)

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

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def one_pass(self):
        cv2 = opencv()
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        while True:
            t0 = time.perf_counter_ns()
            ok, img = self.cap.read()
            if not ok:
                return  # end of the clip
            if self.jpeg_flag is not None:
                img = cv2.imdecode(img, self.jpeg_flag)
                if img is None:  # a damaged packet: count it, go on with the next
                    self.unreadable += 1
                    continue
            yield img, "", time.perf_counter_ns() - t0

    def frame_count(self) -> int | None:
        n = int(self.cap.get(opencv().CAP_PROP_FRAME_COUNT) or 0) if self.cap is not None else 0
        return n if n > 0 else None

    def describe(self) -> dict:
        decode = "bgr" if self.jpeg_flag is None else (
            "gray" + (f"/{self.decode_factor}" if self.decode_factor > 1 else ""))
        return {**super().describe(), "spec": self.path, "decode": decode}
