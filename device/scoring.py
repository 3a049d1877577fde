"""Accuracy of a run against ground truth (``device run --labels``), so a user can check a
camera set-up: per-frame accuracy and the per-class confusion.

Ground truth is a clip's ``<clip>.labels.json`` (written by ``device make-clip``: one label per
frame, by frame index) or a ``labels.csv`` (file,label) for a folder of images, by file name.
A label is a digit, a number (its lines joined by a space, as ``FrameRecord.text``), or null
(no digit in view).  In ``--read number`` a frame is right when the whole number is; digits are
also matched one by one (an edit-distance alignment), so one missed digit costs one digit, and
the confusion counts digits.  The confusion's last class is "none": a blank frame, a missed
digit, or a digit read where there is none.
"""

from __future__ import annotations

import json
from pathlib import Path

from device.errors import UsageError

CLASSES = [str(d) for d in range(10)] + ["none"]
NONE = 10
UNLABELLED = object()


class Truth:
    """Labels by frame index (a clip's labels file) or by file name (a CSV)."""

    def __init__(self, path: str, number: bool = False):
        self.path = path
        self.by_index: list | None = None
        self.by_name: dict | None = None
        if path.lower().endswith(".json"):
            try:
                doc = json.loads(Path(path).read_text())
                labels = doc["labels"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"cannot read --labels {path}: {exc}; pass a clip's .labels.json "
                                 "(from device make-clip) or a labels.csv") from None
            if not isinstance(labels, list) or not all(_valid(v) for v in labels):
                raise UsageError(f"--labels {path}: labels must be a list of digits, digit strings or null")
            self.by_index = labels
        else:
            from device.labels import read_labels

            self.by_name = read_labels(path, number=number)

    def check_source(self, source) -> None:
        """Labels by frame index belong to one clip: refuse a camera, and a replay with another
        number of frames (the labels of another clip would score every frame wrongly)."""
        if self.by_index is None:
            return
        if source.live:
            raise UsageError(f"--labels {self.path} labels the frames of a clip by their index; a camera "
                             "has no such frames: use it with --source CLIP (or a labels.csv for images)")
        count = source.frame_count()
        if count is not None and count != len(self.by_index):
            raise UsageError(f"--labels {self.path} has {len(self.by_index)} labels but the source has "
                             f"{count} frames; pass the .labels.json written with that clip")

    def label(self, index: int, name: str):
        if self.by_index is not None:
            return self.by_index[index % len(self.by_index)] if self.by_index else UNLABELLED
        return self.by_name.get(name, UNLABELLED) if name else UNLABELLED


def _valid(v) -> bool:
    if v is None or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 9):
        return True
    return isinstance(v, str) and v.strip() != "" and all(c.isdigit() or c == " " for c in v)


def align(truth: str, read: str) -> list[tuple[int, int]]:
    """Pairs (true class, read class) of an optimal edit-distance alignment of two digit
    strings; NONE stands in for a missed or an extra digit."""
    n, m = len(truth), len(read)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (truth[i - 1] != read[j - 1]))
    pairs = []
    i, j = n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (truth[i - 1] != read[j - 1]):
            pairs.append((int(truth[i - 1]), int(read[j - 1])))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            pairs.append((int(truth[i - 1]), NONE))
            i -= 1
        else:
            pairs.append((NONE, int(read[j - 1])))
            j -= 1
    return pairs[::-1]


class Scorer:
    """Scores each frame record against the truth; ``to_json`` is the run result's
    ``accuracy``."""

    def __init__(self, truth: Truth, read: str = "digit"):
        self.truth, self.read = truth, read
        self.confusion = [[0] * len(CLASSES) for _ in CLASSES]
        self.frames = self.correct = self.unlabelled = 0
        self.digits = self.digits_right = 0

    def add(self, rec) -> dict | None:
        """Score one FrameRecord; returns {"label", "correct"} for its frames-out line, or None
        when the frame has no label."""
        label = self.truth.label(rec.index, rec.name)
        if label is UNLABELLED:
            self.unlabelled += 1
            return None
        self.frames += 1
        if self.read == "number":
            want = "" if label is None else " ".join(str(label).split())
            ok = rec.text == want
            pairs = align(want.replace(" ", ""), rec.text.replace(" ", ""))
            if not pairs:
                pairs = [(NONE, NONE)]
            for t, p in pairs:
                self.confusion[t][p] += 1
            self.digits += len(want.replace(" ", ""))
            self.digits_right += sum(t == p != NONE for t, p in pairs)
        else:
            want = None if label is None else int(label)
            ok = rec.prediction == want
            self.confusion[NONE if want is None else want][NONE if rec.prediction is None else rec.prediction] += 1
        self.correct += ok
        return {"label": label, "correct": ok}

    def to_json(self) -> dict:
        per_class = {}
        for i, name in enumerate(CLASSES):
            n = sum(self.confusion[i])
            if n:
                per_class[name] = {"count": n, "correct": self.confusion[i][i], "accuracy": self.confusion[i][i] / n}
        out = {"labels": self.truth.path, "read": self.read, "frames": self.frames, "correct": self.correct,
               "accuracy": self.correct / self.frames if self.frames else None, "unlabelled": self.unlabelled,
               "classes": CLASSES, "confusion": self.confusion, "per_class": per_class}
        if self.read == "number":
            out.update(digits=self.digits, digits_right=self.digits_right,
                       per_digit=self.digits_right / self.digits if self.digits else None)
        return out


def accuracy_lines(acc: dict) -> list[str]:
    """The summary a person reads: accuracy, per class, the commonest confusions."""
    if not acc or not acc.get("frames"):
        return [f"labels: no frame had a label in {acc.get('labels') if acc else '?'}"]
    what = "numbers read exactly" if acc.get("read") == "number" else "frames right"
    lines = [f"labels: {acc['accuracy']:.1%} {what} ({acc['correct']}/{acc['frames']} labelled frames"
             + (f", {acc['unlabelled']} unlabelled" if acc.get("unlabelled") else "") + ")"]
    if acc.get("per_digit") is not None:
        lines.append(f"per digit: {acc['per_digit']:.1%} ({acc['digits_right']}/{acc['digits']})")
    lines.append("per class: " + "  ".join(f"{k} {v['accuracy']:.0%}" for k, v in acc["per_class"].items()))
    m = acc["confusion"]
    worst = sorted(((m[i][j], i, j) for i in range(len(m)) for j in range(len(m)) if i != j and m[i][j]),
                   reverse=True)[:5]
    if worst:
        lines.append("most confused (label -> read): " + ", ".join(
            f"{acc['classes'][i]}->{acc['classes'][j]} x{n}" for n, i, j in worst))
    return lines
