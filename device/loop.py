"""``device run``: wire a source, the per-frame step and the recorder together, until the
source ends, a limit is reached or a signal arrives.

The loop only wires: :mod:`device.step` processes a frame, :mod:`device.recorder` keeps the
statistics and side files, and *observers* (the live preview, sample collection) see each
frame and its record after that.  An observer runs on the loop's thread, so it must return at
once (hand work to its own thread, drop rather than queue); it may end the run by returning a
reason (``device collect`` stops when it has its samples).

SIGINT / SIGTERM end the run cleanly (the results are written complete): between frames
through a flag, and while the loop waits for a frame (a stalled camera, a paced replay) by
interrupting the wait.  A camera that stops delivering is recorded
as a source error.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from device.errors import SourceError
from device.recorder import Recorder
from device.schema import RunResult
from device.sources import Source
from device.step import Step


@dataclass(frozen=True)
class Limits:
    frames: int | None = None        # stop after N frames
    duration: float | None = None    # stop after S seconds


# observer(frame, record) -> None, or a reason to end the run (recorded as the stop reason)
Observer = Callable[..., "str | None"]


class Stopped(Exception):
    """Raised inside a wait for the next frame when SIGINT / SIGTERM arrives."""


class Stopper:
    """SIGINT/SIGTERM -> ``signal`` (its name).  While ``waiting`` (the loop is blocked in the
    source), the handler raises :class:`Stopped` so a stalled wait ends too."""

    def __init__(self):
        self.signal: str | None = None
        self.waiting = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.signal = signal.Signals(signum).name
        if self.waiting:
            self.waiting = False
            raise Stopped(self.signal)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def run_loop(step: Step, source: Source, recorder: Recorder, limits: Limits = Limits(),
             observers: Iterable[Observer] = ()) -> RunResult:
    """Run ``step`` on every frame of the (already opened) ``source``; returns the result,
    which the caller writes.  Never raises for a source failure or a signal: they are
    recorded.  Any other exception is a bug: the result is built and attached to it as
    ``exc.partial_result`` so the caller can still write what was measured."""
    recorder.source = source
    observers = tuple(observers)
    status, reason, error = "ok", "end of source", None
    t_start = time.perf_counter_ns()
    deadline = t_start + int(limits.duration * 1e9) if limits.duration else None
    frames = source.frames()
    with Stopper() as stop:
        try:
            while True:
                stop.waiting = True
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                finally:
                    stop.waiting = False
                record = step(frame.image, frame.index, frame.name, frame.t_capture_ns, frame.wait_ns)
                recorder.add(record)
                done = None
                for observe in observers:
                    done = observe(frame, record) or done
                if stop.signal:
                    raise Stopped(stop.signal)
                if done:
                    reason = done
                    break
                if limits.frames and recorder.frames >= limits.frames:
                    reason = "frame limit"
                    break
                if deadline and time.perf_counter_ns() >= deadline:
                    reason = "duration"
                    break
        except Stopped as exc:
            status, reason = "stopped", str(exc)
        except SourceError as exc:
            status, reason, error = "source_error", None, str(exc)
        except BaseException as exc:
            exc.partial_result = recorder.result("error", None, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            frames.close()
    if recorder.frames == 0 and status in ("ok", "stopped"):
        status = "no_frames"
    return recorder.result(status, reason, error)
