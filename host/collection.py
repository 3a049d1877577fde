"""Collected samples for ``host finetune``: folders of labelled digit images read into the
28x28 model inputs the device made or would make.

A collection (written by ``device collect`` and the preview's label buttons) is a folder with
image files and ``labels.csv`` (``file,label,prediction,confidence,source,created``): ``file``
is a crop of a camera frame, and beside it ``<stem>.input.png`` is the exact 28x28 uint8 input
the device gave the model.  ``label`` is 0-9, ``none`` (not a digit) or empty (not labelled
yet).  The dev photos are a collection without ``.input.png`` files: their inputs are made
here with the device's own preprocessing, the code a Pi runs on a camera frame.

``none`` rows are left out of training: the model has ten outputs and no "not a digit" class,
and on the device non-digits are the preprocessing's job ("no digit"), not the classifier's.
They are counted, so a user sees them.  Unlabelled rows are counted and skipped.

TensorFlow-free, so bad collections are refused before TensorFlow loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.errors import UsageError
from device.labels import read_table
from device.preprocess import prepare
from device.sources.images import ImageRefused, read_image

INPUT_SUFFIX = ".input.png"
DIGITS = tuple("0123456789")


@dataclass
class Samples:
    """Labelled model inputs: ``x`` uint8 (N, 28, 28) white digit on black, ``y`` (N,) digits,
    ``names`` "<collection folder>/<file>"."""
    x: np.ndarray
    y: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> "Samples":
        idx = np.asarray(idx, dtype=np.int64)
        return Samples(self.x[idx], self.y[idx], [self.names[i] for i in idx])


@dataclass
class Counts:
    """What happened to each row: used from the device's ``.input.png`` or preprocessed here,
    and why the others were left out."""
    from_input_png: int = 0
    preprocessed: int = 0
    not_a_digit: int = 0
    unlabelled: int = 0
    missing: int = 0
    no_digit_found: int = 0
    unreadable: list = field(default_factory=list)

    def add(self, other: "Counts") -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)

    def to_json(self) -> dict:
        return {**vars(self), "unreadable": len(self.unreadable), "used": self.from_input_png + self.preprocessed}


def _input_image(path: Path) -> np.ndarray:
    img = read_image(path)
    if img.shape[:2] != (28, 28):
        raise ImageRefused(f"is {img.shape[1]}x{img.shape[0]}, not the 28x28 model input")
    return img[:, :, 1] if img.ndim == 3 else img   # a gray PNG decodes as three equal channels


def read_collection(folder) -> tuple[Samples, Counts]:
    """One collection folder -> (its labelled samples, counts).  UsageError when the folder or
    its labels.csv is missing or the CSV is malformed (a label other than 0-9, ``none`` or
    empty); rows whose images are gone (evicted by the size cap) are counted and skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"collection {folder} is not a folder; pass folders made by `device collect` "
                         "(images + labels.csv) or the dev photos folder")
    csv_path = folder / "labels.csv"
    if not csv_path.is_file():
        raise UsageError(f"collection {folder} has no labels.csv; label the samples first "
                         "(device collect --label, or the preview's buttons)")
    counts, xs, ys, names = Counts(), [], [], []
    for n, row in read_table(csv_path, what="collection file"):
        label = row["label"].lower()
        if label == "":
            counts.unlabelled += 1
            continue
        if label == "none":
            counts.not_a_digit += 1
            continue
        if label not in DIGITS:
            raise UsageError(f"collection file {csv_path} row {n}: label {row['label']!r} is not 0-9, "
                             "none or empty; correct that row")
        name = Path(row["file"]).name    # a name, never a path: rows cannot reach outside the folder
        crop, given = folder / name, folder / (Path(name).stem + INPUT_SUFFIX)
        try:
            if given.exists():
                x = _input_image(given)
                counts.from_input_png += 1
            elif crop.exists():
                prepared = prepare(read_image(crop))
                if prepared.image is None:
                    counts.no_digit_found += 1
                    continue
                x = np.rint(prepared.image * 255).astype(np.uint8)
                counts.preprocessed += 1
            else:
                counts.missing += 1
                continue
        except ImageRefused as exc:
            counts.unreadable.append(f"{folder.name}/{name}: {exc}")
            continue
        xs.append(x)
        ys.append(int(label))
        names.append(f"{folder.name}/{name}")
    x = np.stack(xs) if xs else np.zeros((0, 28, 28), np.uint8)
    return Samples(x, np.asarray(ys, dtype=np.int64), names), counts


def read_collections(folders) -> tuple[Samples, dict]:
    """Several collections -> (all their labelled samples, counts per folder and in total).
    UsageError when none of them holds a usable labelled sample."""
    parts, per, total = [], {}, Counts()
    for folder in folders:
        s, c = read_collection(folder)
        parts.append(s)
        per[str(folder)] = c.to_json()
        total.add(c)
    samples = Samples(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                      [n for p in parts for n in p.names])
    if not len(samples):
        why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in total.to_json().items() if v)
        raise UsageError(f"no labelled samples in {', '.join(map(str, folders))} ({why or 'no rows'}); "
                         "label some samples 0-9 first")
    return samples, {"total": total.to_json(), "folders": per, "unreadable": total.unreadable}


def split_holdout(samples: Samples, fraction: float, seed: int) -> tuple[Samples, Samples]:
    """(train, held out): ``fraction`` of each digit's samples held out (rounded, seeded), so
    every digit present is scored and none is left only in the held-out part."""
    rng = np.random.default_rng(seed)
    held = []
    for digit in np.unique(samples.y):
        idx = rng.permutation(np.flatnonzero(samples.y == digit))
        k = min(int(round(len(idx) * fraction)), len(idx) - 1)
        held.extend(idx[:k])
    held_mask = np.zeros(len(samples), bool)
    held_mask[held] = True
    return samples.subset(np.flatnonzero(~held_mask)), samples.subset(np.flatnonzero(held_mask))
