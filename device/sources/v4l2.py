"""A V4L2 camera (USB webcam, ``--camera-index N`` or ``--source /dev/videoN``) via OpenCV."""

from __future__ import annotations

import time

from device.errors import SourceError, UsageError
from device.sources.base import Frame, Source, opencv

MAX_FAILED_READS = 10


class V4L2Camera(Source):
    kind = "camera"
    live = True

    def __init__(self, device: int | str):
        super().__init__()
        self.device = device
        self.cap = None

    def open(self) -> None:
        cv2 = opencv()
        self.cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not self.cap.isOpened():
            raise UsageError(f"cannot open camera {self.device}; check the index / path "
                             "(`device info` lists cameras), that no other program uses it, and "
                             "that you are in the `video` group")
        # One buffered frame: each read returns a fresh frame, not a queue of old ones.
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def frames(self):
        index = failures = 0
        while True:
            t0 = time.perf_counter_ns()
            ok, img = self.cap.read()
            now = time.perf_counter_ns()
            if not ok or img is None:
                failures += 1
                self.unreadable += 1
                if failures >= MAX_FAILED_READS:
                    raise SourceError(f"camera {self.device} stopped delivering frames "
                                      f"({failures} failed reads in a row)")
                continue
            failures = 0
            self.count_gap(now)
            yield Frame(index, img, now, now - t0)
            index += 1

    def describe(self) -> dict:
        return {**super().describe(), "spec": str(self.device), "decode": "bgr"}
