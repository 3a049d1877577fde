"""What every frame source is: a context manager that yields :class:`Frame` objects.

The protocol (picamera2's ``outputs/output.py`` is the model: a small base, one file per kind):

* ``with source:`` opens the device or file (raising UsageError with one line if it cannot)
  and always releases it;
* ``frames()`` yields frames until the source ends (a replay) or forever (a camera); a camera
  that stops delivering raises :class:`~device.errors.SourceError`;
* ``describe()`` is what the result file records about the source;
* ``live`` (a camera: frames are not waiting in a file), ``fps`` (the nominal rate, or None);
* counters: ``unreadable`` (frames that could not be decoded, skipped), ``dropped`` (frames a
  live camera delivered while we were busy: counted from capture-time gaps), ``skipped``
  (files that are not images we may read: FIFOs, oversized images).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from device.errors import UsageError


@dataclass
class Frame:
    index: int              # 0-based, counts delivered frames only
    # gray (H, W) or BGR (H, W, 3), uint8; the receiver's to keep: a source never reuses or
    # releases it (the preview reads it on its own thread after the loop has moved on)
    image: np.ndarray
    t_capture_ns: int       # perf_counter_ns when the frame became available
    wait_ns: int            # how long the loop waited for it (the capture stage)
    name: str = ""          # file name for image replays
    sensor_ns: int | None = None   # the camera's own timestamp (CLOCK_MONOTONIC ns), if any


class Source:
    """Base of every source.  Subclasses implement ``open``, ``close``, ``frames``, ``describe``."""

    kind = "source"
    live = False

    def __init__(self):
        self.fps: float | None = None
        self.unreadable = 0
        self.dropped = 0
        self.skipped = 0
        self._last_capture_ns: int | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def open(self) -> None:
        """Acquire the device / file; UsageError (one line) when it cannot be opened."""

    def close(self) -> None:
        """Release it; must be safe to call twice and after a failed open."""

    def __enter__(self):
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- frames -----------------------------------------------------------------------------
    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "fps": self.fps, "live": self.live}

    def frame_count(self) -> int | None:
        """Frames in one pass of a replay, when the source knows it (after ``open``); None for
        a camera."""
        return None

    def counters(self) -> dict:
        return {"unreadable": self.unreadable, "dropped": self.dropped, "skipped": self.skipped}

    def count_gap(self, t_ns: int) -> None:
        """A live camera delivers at a steady period: a gap of k periods between two frames we
        got means k - 1 frames were dropped while the loop was busy."""
        if self.live and self.fps and self._last_capture_ns is not None:
            period = 1e9 / self.fps
            self.dropped += max(0, round((t_ns - self._last_capture_ns) / period) - 1)
        self._last_capture_ns = t_ns


class Replay(Source):
    """A recorded source (images, a video file): optional pacing at its frame rate and looping.
    Subclasses yield ``(image, name, wait_ns)`` from ``one_pass()``."""

    def __init__(self, realtime: bool = False, loop: bool = False, fps: float = 30.0):
        super().__init__()
        self.realtime, self.loop, self.fps = realtime, loop, fps

    def one_pass(self):
        raise NotImplementedError

    def frames(self) -> Iterator[Frame]:
        index = 0
        period_ns = int(1e9 / self.fps) if self.realtime and self.fps else 0
        next_due = time.perf_counter_ns()
        while True:
            delivered = 0
            for image, name, wait_ns in self.one_pass():
                if period_ns:
                    now = time.perf_counter_ns()
                    if next_due > now:
                        time.sleep((next_due - now) / 1e9)
                        wait_ns += next_due - now
                    next_due = max(next_due + period_ns, time.perf_counter_ns() - period_ns)
                delivered += 1
                yield Frame(index, image, time.perf_counter_ns(), wait_ns, name)
                index += 1
            if not self.loop or delivered == 0:
                return

    def describe(self) -> dict:
        return {**super().describe(), "realtime": self.realtime, "loop": self.loop}


def opencv():
    """OpenCV, or a UsageError naming the install command."""
    try:
        import cv2
    except ImportError as exc:
        raise UsageError(f"OpenCV cannot be imported ({exc}): pip install opencv-python-headless "
                         "(or sudo apt install python3-opencv)") from None
    return cv2

