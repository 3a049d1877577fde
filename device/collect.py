"""Saving frames to a collection while the loop runs: ``device collect`` (the next N frames in
which a digit is found, with the label the user gives) and ``device run --collect-uncertain DIR
--below P`` (every digit the model is less sure of than P, unlabelled, for later labelling).

A :class:`SampleSaver` is a loop observer.  ``device collect`` saves on the loop's thread (its
frames are not timed against a budget, and the count must be exact); ``run --collect-uncertain``
hands samples to a writer thread through a small queue and drops (and counts) what does not
fit, so PNG encoding and an SD card's fsync never stall a timed loop.
"""

from __future__ import annotations

import queue
import sys
import threading
import time

from device.collection import Collection, sample_of

QUEUE_SIZE = 32


def source_tag(described: dict) -> str:
    """``kind:spec`` of a source's describe(): the ``source`` column of labels.csv."""
    return f"{described.get('kind', 'source')}:{described.get('spec', '')}".rstrip(":")


class SampleSaver:
    """Loop observer that saves digits to ``collection``.

    Args:
        label: "0"-"9", "none" or "" (unlabelled).  With a label, only a frame's first digit
            is saved (it is the one the user is showing); unlabelled, every digit.
        below: save only digits with confidence below this (None: all).
        count: end the run ("collected") after this many samples.
        every_s: at most one save per this many seconds (0: every frame).
        background: save on a writer thread (dropping when its queue is full).
    """

    def __init__(self, collection: Collection, source: str, label: str = "", below: float | None = None,
                 count: int | None = None, every_s: float = 0.0, background: bool = False,
                 out=None, err=None):
        self.collection, self.source, self.label = collection, source, label
        self.below, self.count, self.every_ns = below, count, int(every_s * 1e9)
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.saved = self.dropped = self.failed = 0
        self._last_ns: int | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error_shown = False
        if background:
            self._queue = queue.Queue(QUEUE_SIZE)
            self._thread = threading.Thread(target=self._writer, name="collect-writer", daemon=True)

    def start(self) -> "SampleSaver":
        if self._thread is not None:
            self._thread.start()
        return self

    def __call__(self, frame, record) -> str | None:
        digits = record.digits[:1] if self.label else record.digits
        if self.below is not None:
            digits = [d for d in digits if d.confidence < self.below]
        if not digits:
            return None
        now = time.perf_counter_ns()
        if self.every_ns and self._last_ns is not None and now - self._last_ns < self.every_ns:
            return None
        self._last_ns = now
        where = f"{self.source}#{frame.name or frame.index}"
        samples = [sample_of(frame.image, d, self.label, where) for d in digits]
        if self._queue is not None:
            try:
                self._queue.put_nowait(samples)
            except queue.Full:
                self.dropped += len(samples)
            return None
        self._save(samples)
        if self.count and self.saved >= self.count:
            return "collected"
        return None

    def _save(self, samples) -> None:
        try:
            names = self.collection.add(samples)
        except OSError as exc:
            self.failed += len(samples)
            if not self._error_shown:
                self._error_shown = True
                print(f"device: warning: cannot save samples to {self.collection.folder}: "
                      f"{exc.strerror or exc}; the run goes on", file=self.err, flush=True)
            return
        self.saved += len(names)
        if self._queue is None:
            s = samples[0]
            print(f"saved {self.saved}{f'/{self.count}' if self.count else ''}: "
                  f"{self.collection.folder / names[0]}  label {s.label or '-'}, model says "
                  f"{s.prediction} ({s.confidence:.1%})", file=self.out, flush=True)

    def _writer(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:  # one labels.csv rewrite for everything waiting
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            samples = [s for item in batch if item is not None for s in item]
            if samples:
                self._save(samples)
            if stop:
                return

    def close(self) -> None:
        """Save what is queued, then stop the writer."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._thread = None

    def summary(self) -> str:
        c = self.collection
        extra = "".join(f", {n} {what}" for n, what in ((self.dropped, "dropped (writer busy)"),
                                                     (self.failed, "failed"), (c.evicted, "evicted (cap)")) if n)
        return (f"collection {c.folder}: {self.saved} sample(s) saved{extra}; {len(c)} in labels.csv, "
                f"{c.bytes_used() / 1e6:.1f} MB of {c.max_bytes / 1e6:.0f} MB")
