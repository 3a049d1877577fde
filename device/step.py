"""One frame through the model: the pure per-frame step that ``device run``, ``device classify``
and the live preview all use.

``_preprocess -> set_input -> invoke -> _postprocess`` (tensorflow/examples' Raspberry Pi
classifier), each timed with ``perf_counter_ns`` from the moment the frame was available.  The
step keeps no state between frames and writes nothing: it returns a :class:`FrameRecord`
(the digits found, each with its box, its 28x28 model input, prediction and confidence, and the
stage timings), and the caller decides what to record or show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from device.preprocess import DEFAULT as DEFAULT_PRE, PreprocessOptions, prepare, prepare_all
from device.runtime import Model

READ_MODES = ("digit", "number")


@dataclass
class Digit:
    """One digit found in a frame."""
    box: tuple                   # (x, y, w, h) in frame pixels
    prediction: int
    confidence: float
    input: np.ndarray = field(repr=False)   # the 28x28 float32 the model received
    line: int = 0                # reading-order line (number mode)

    def to_json(self) -> dict:
        return {"digit": self.prediction, "confidence": round(self.confidence, 4),
                "box": [int(v) for v in self.box], "line": self.line}


@dataclass
class FrameRecord:
    """What the step made of one frame.  Times in nanoseconds; ``inference_ns`` is None when
    no digit reached the model."""
    index: int
    name: str
    digits: list
    reason: str                  # why there is no digit ("" when there is one)
    capture_ns: int
    preprocess_ns: int
    inference_ns: int | None
    postprocess_ns: int
    total_ns: int

    @property
    def prediction(self) -> int | None:
        """The digit (single-digit mode), or the first digit read."""
        return self.digits[0].prediction if self.digits else None

    @property
    def confidence(self) -> float:
        return self.digits[0].confidence if self.digits else 0.0

    @property
    def text(self) -> str:
        """The digits in reading order, lines separated by a space ("" for none)."""
        lines: dict[int, str] = {}
        for d in self.digits:
            lines[d.line] = lines.get(d.line, "") + str(d.prediction)
        return " ".join(lines[k] for k in sorted(lines))

    def to_json(self) -> dict:
        """One line of ``--frames-out``."""
        first = self.digits[0] if self.digits else None
        return {"frame": self.index, "name": self.name or None, "prediction": self.prediction,
                "confidence": round(self.confidence, 4),
                "region": [int(v) for v in first.box] if first else None,
                "text": self.text, "digits": [d.to_json() for d in self.digits],
                "reason": self.reason or None,
                "capture_ms": self.capture_ns / 1e6, "preprocess_ms": self.preprocess_ns / 1e6,
                "inference_ms": None if self.inference_ns is None else self.inference_ns / 1e6,
                "postprocess_ms": self.postprocess_ns / 1e6, "total_ms": self.total_ns / 1e6}


def postprocess(scores: np.ndarray) -> tuple[int, float]:
    """(predicted digit, its probability)."""
    k = int(np.argmax(scores))
    return k, float(scores[k])


class Step:
    """The per-frame pipeline for one model.

    Args:
        model: a loaded :class:`~device.runtime.Model` (its interpreter is built once).
        read: "digit" - the one digit in view (the tallest); "number" - every digit in view,
            in reading order (lines top to bottom, each left to right), all through the model
            in one batched invoke.
        preprocess: options of the camera-frame -> 28x28 preprocessing.
    """

    def __init__(self, model: Model, read: str = "digit", preprocess: PreprocessOptions = DEFAULT_PRE):
        if read not in READ_MODES:
            raise ValueError(f"read mode {read!r} is not one of {READ_MODES}")
        self.model, self.read, self.opts = model, read, preprocess

    def __call__(self, image: np.ndarray, index: int = 0, name: str = "", t0: int | None = None,
                 wait_ns: int = 0) -> FrameRecord:
        """Process one frame.  ``t0``: perf_counter_ns when the frame became available (now,
        if not given); ``wait_ns``: how long the caller waited for it."""
        if t0 is None:
            t0 = time.perf_counter_ns()
        if self.read == "number":
            return self._number(image, index, name, t0, wait_ns)
        prep = prepare(image, self.opts)
        t1 = time.perf_counter_ns()
        digits, inference_ns = [], None
        if prep.image is not None:
            scores = self.model.predict(prep.image)
            t2 = time.perf_counter_ns()
            inference_ns = t2 - t1
            k, conf = postprocess(scores)
            digits.append(Digit(prep.region, k, conf, prep.image))
        else:
            t2 = t1
        t3 = time.perf_counter_ns()
        return FrameRecord(index, name, digits, prep.reason if not digits else "", wait_ns,
                           t1 - t0, inference_ns, t3 - t2, t3 - t0)

    def _number(self, image, index, name, t0, wait_ns) -> FrameRecord:
        found = prepare_all(image, self.opts)
        t1 = time.perf_counter_ns()
        digits, inference_ns = [], None
        if found:
            scores = self.model.predict_batch(np.stack([p.image for p in found]))
            t2 = time.perf_counter_ns()
            inference_ns = t2 - t1
            for p, s in zip(found, scores):
                k, conf = postprocess(s)
                digits.append(Digit(p.region, k, conf, p.image, p.line))
        else:
            t2 = t1
        t3 = time.perf_counter_ns()
        return FrameRecord(index, name, digits, "" if digits else "no digit", wait_ns,
                           t1 - t0, inference_ns, t3 - t2, t3 - t0)
