"""The live preview's publisher: a loop observer that costs the loop O(1) per frame, and a
thread that turns the latest frame into what the page shows.

The loop's thread only swaps a reference into a one-frame slot (latest wins: a frame the
publisher had no time for is simply replaced, never queued) and appends one tuple of stage
timings to a deque.  At most ``fps`` times a second it also wakes the publisher thread, right
after a frame: with a camera the loop then waits ~30 ms for the next frame, and the publisher
does its work in that gap instead of beside the next frame's processing.  While someone
watches, the publisher draws the digit boxes on the latest frame, encodes it as JPEG, encodes each digit's
28x28 model input as PNG, and keeps the digits' samples for the label buttons.  Every
``stats_every_s`` it turns the timings of the last ``window_s`` seconds (at most
``WINDOW_MAX`` frames, so the cost stays bounded at thousands of fps) into p50/p99 per stage,
fps, the within-budget share, RSS and the no-digit count.  OpenCV releases the GIL while it
encodes, so on a multi-core board the loop keeps its core.

HTTP handlers (:mod:`device.preview.server`) block in :meth:`PreviewHub.wait` until something
newer is published; a slow client skips to the newest item instead of building a backlog.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager

import numpy as np

from device.collection import sample_of
from device.system import memory_kb

STAGES = ("capture", "preprocess", "inference", "postprocess", "total")
MAX_VIEWERS = 8          # concurrent streams (a Pi serves a person, not an audience)
JPEG_QUALITY = 75
WINDOW_MAX = 4096        # frames in the statistics window at most


class Busy(Exception):
    """Too many streams are open."""


class PreviewHub:
    """Args:
        budget_ms: the per-frame budget (the charts' budget line, the within-budget share).
        fps: most frames published per second.
        width: frames wider than this are scaled down before encoding.
        window_s: the statistics window.
        ring: how many published frames keep their samples for the label buttons.
    """

    def __init__(self, budget_ms: float, fps: float = 10.0, width: int = 480, window_s: float = 5.0,
                 stats_every_s: float = 0.5, ring: int = 50, err=None):
        self.budget_ms, self.period_ns, self.width = budget_ms, int(1e9 / fps), width
        self.window_ns, self.stats_every_ns = int(window_s * 1e9), int(stats_every_s * 1e9)
        self.source = ""            # labels.csv's source column for saved samples
        self.err = err or sys.stderr
        self._slot = None           # (frame, record): written by the loop, read by the publisher
        self._timings: deque = deque(maxlen=50_000)  # bounded even if the publisher stalls
        self._window: deque = deque(maxlen=WINDOW_MAX)
        self._samples: deque = deque(maxlen=ring)
        self._cond = threading.Condition()
        self._items: dict[str, tuple[int, bytes]] = {}
        self._version = 0
        self._seq = 0
        self.viewers = 0
        self.frames = self.no_digit = self.published = 0
        self._t0 = time.perf_counter_ns()
        self._due = 0             # when the loop next wakes the publisher
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="preview-publisher", daemon=True)

    def start(self) -> "PreviewHub":
        self._thread.start()
        return self

    # -- the loop's side: O(1), no lock, no I/O -----------------------------------------------
    def __call__(self, frame, record) -> None:
        now = time.perf_counter_ns()
        self._slot = (frame, record)
        self._timings.append((now, record.capture_ns, record.preprocess_ns,
                              -1 if record.inference_ns is None else record.inference_ns,
                              record.postprocess_ns, record.total_ns, not record.digits))
        if now >= self._due:
            self._due = now + self.period_ns
            self._wake.set()

    # -- the publisher thread ------------------------------------------------------------------
    def _run(self) -> None:
        last, next_stats, failed = None, 0, False
        while True:
            self._wake.wait(self.stats_every_ns / 1e9)   # a stalled camera still gets its stats
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                now = time.perf_counter_ns()
                self._drain(now)
                if now >= next_stats and self.viewers:
                    next_stats = now + self.stats_every_ns
                    self._publish(stats=self._event("stats", self._stats(now)))
                slot = self._slot
                if slot is not None and slot is not last and self.viewers:
                    last = slot
                    self._publish_frame(*slot)
            except Exception as exc:  # a bug here must not end the run: say it once, go on
                if not failed:
                    failed = True
                    print(f"device: warning: preview: {type(exc).__name__}: {exc}", file=self.err, flush=True)

    def _drain(self, now: int) -> None:
        t, w = self._timings, self._window
        while t:
            row = t.popleft()
            w.append(row)
            self.frames += 1
            self.no_digit += row[6]
        while w and w[0][0] < now - self.window_ns:
            w.popleft()

    def _stats(self, now: int) -> dict:
        n = len(self._window)
        out = {"uptime_s": round((now - self._t0) / 1e9, 2), "frames": self.frames, "budget_ms": self.budget_ms,
               "window_s": self.window_ns / 1e9, "no_digit": self.no_digit, "fps": None,
               "within_budget": None, "stages": {}, "rss_mb": None, "no_digit_window": 0}
        rss = memory_kb()["rss_kb"]
        out["rss_mb"] = round(rss / 1024, 2) if rss else None
        if not n:
            return out
        a = np.array(self._window, dtype=np.int64)
        span = now - int(a[0, 0])   # since the oldest frame held: right whether or not the cap cut it
        out["fps"] = round(n / (span / 1e9), 2) if span > 0 else None
        out["within_budget"] = round(float(np.mean(a[:, 5] <= self.budget_ms * 1e6)), 4)
        out["no_digit_window"] = int(a[:, 6].sum())
        for i, name in enumerate(STAGES, start=1):
            col = a[:, i][a[:, i] >= 0]
            if col.size:
                p50, p99 = np.percentile(col, (50, 99)) / 1e6
                out["stages"][name] = {"p50": round(float(p50), 4), "p99": round(float(p99), 4)}
        return out

    def _publish_frame(self, frame, record) -> None:
        import cv2

        img = frame.image
        self._seq += 1
        seq = self._seq
        jpeg = _jpeg(draw(img, record, self.width))
        where = f"{self.source}#{frame.name or frame.index}"
        samples = [sample_of(img, d, "", where) for d in record.digits]
        self._samples.append((seq, samples))
        digits = []
        for d, s in zip(record.digits, samples):
            png = cv2.imencode(".png", s.model_input)[1].tobytes()
            digits.append({**d.to_json(), "input": "data:image/png;base64," + base64.b64encode(png).decode()})
        event = self._event("frame", {
            "seq": seq, "frame": frame.index, "name": frame.name or None, "prediction": record.prediction,
            "confidence": round(record.confidence, 4), "text": record.text, "reason": record.reason or None,
            "digits": digits, "size": [int(img.shape[1]), int(img.shape[0])],
            "total_ms": round(record.total_ns / 1e6, 4)})
        self._publish(frame=event, jpeg=jpeg)
        self.published += 1

    @staticmethod
    def _event(kind: str, doc: dict) -> bytes:
        return f"event: {kind}\ndata: {json.dumps(doc, allow_nan=False)}\n\n".encode()

    def _publish(self, **items: bytes) -> None:
        """Make ``items`` the newest of their kinds, in one wake-up of the streams."""
        with self._cond:
            self._version += 1
            for kind, data in items.items():
                self._items[kind] = (self._version, data)
            self._cond.notify_all()

    # -- the handlers' side -------------------------------------------------------------------
    def wait(self, seen: int, timeout: float) -> tuple[int, dict] | None:
        """(version, {kind: (version, bytes)}) once anything newer than ``seen`` is published;
        the same after ``timeout`` with nothing new (a heartbeat is due); None once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > seen or self._closed.is_set(), timeout)
            if self._closed.is_set():
                return None
            return self._version, dict(self._items)

    @contextmanager
    def viewer(self):
        """Count a stream while it is open (frames are only encoded while someone watches)."""
        with self._cond:
            if self.viewers >= MAX_VIEWERS:
                raise Busy(f"{MAX_VIEWERS} streams are already open")
            self.viewers += 1
        try:
            yield
        finally:
            with self._cond:
                self.viewers -= 1

    def samples(self, seq: int):
        """The samples of published frame ``seq`` (a list, empty when it had no digit), or None
        when that frame is no longer held."""
        for s, samples in reversed(self._samples):
            if s == seq:
                return samples
        return None

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def draw(img: np.ndarray, record, width: int) -> np.ndarray:
    """The frame scaled to at most ``width`` px, in colour, with each digit's box and reading."""
    import cv2

    scale = min(1.0, width / img.shape[1])
    out = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img
    out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR) if out.ndim == 2 else out.copy()
    for d in record.digits:
        x, y, w, h = (int(round(v * scale)) for v in d.box)
        colour = (60, 200, 60) if d.confidence >= 0.8 else (0, 170, 255)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
        cv2.putText(out, f"{d.prediction} {d.confidence:.0%}", (x, max(14, y - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, 2, cv2.LINE_AA)
    return out


def _jpeg(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return buf.tobytes()
