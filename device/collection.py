"""A collection of samples: what the device saw, for labelling and fine-tuning (``host finetune``).

The folder format (the contract with ``host finetune``, which reads it):

* ``labels.csv`` with the header ``file,label,prediction,confidence,source,created``: ``file``
  is a crop of the camera frame (PNG, gray or BGR: the digit's region with a margin),
  ``label`` is ``0``-``9``, ``none`` (not a digit) or empty (unlabelled, to be filled in by a
  person), ``prediction``/``confidence`` what the model said, ``source`` where the frame came
  from, ``created`` an ISO-8601 UTC time.  Its first two columns are those of the dev photos'
  labels.csv, so ``device classify DIR --labels DIR/labels.csv`` scores a collection.
* beside each crop, ``<stem>.input.png``: the exact 28x28 uint8 input the model received
  (white digit on black), so training sees what the device saw, not a re-preprocessed crop.

Writes are atomic: the image files are written and synced first, then labels.csv is replaced
(temp file + rename).  A crash in between leaves images no row names; they are removed the
next time the collection is opened.  Writers are serialised by a lock within a process and by
``flock`` on ``.labels.lock`` between processes.  The folder is capped (``max_mb``): the oldest
samples this module wrote are evicted first, so a long-running Pi never fills its SD card;
rows a person added for other files are never deleted (they count towards the cap).
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.errors import UsageError
from device.fsio import atomic_write_bytes
from device.sources.images import MODEL_INPUT_SUFFIX as INPUT_SUFFIX

HEADER = ("file", "label", "prediction", "confidence", "source", "created")
LABELS = tuple("0123456789") + ("none", "")
CSV_NAME = "labels.csv"
LOCK_NAME = ".labels.lock"
MARGIN = 0.25          # crop margin, as a fraction of the digit box's longer side
# Names this module gives its files: evictable and removable as orphans; nothing else is.
OWN_NAME = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-\d{4,}(\.input)?\.png$")


@dataclass
class Sample:
    """One digit to save."""
    crop: np.ndarray            # uint8 gray (H, W) or BGR (H, W, 3)
    model_input: np.ndarray     # uint8 28x28, white on black
    label: str                  # one of LABELS
    prediction: int | None
    confidence: float | None
    source: str


def crop_box(shape, box, margin: float = MARGIN) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): ``box`` (x, y, w, h) grown by ``margin`` x its longer side on every
    side, clipped to a frame of ``shape``."""
    x, y, w, h = (int(v) for v in box)
    m = int(round(margin * max(w, h)))
    H, W = shape[:2]
    return max(0, x - m), max(0, y - m), min(W, x + w + m), min(H, y + h + m)


def sample_of(image: np.ndarray, digit, label: str, source: str) -> Sample:
    """The sample of one :class:`~device.step.Digit` found in ``image`` (copies what it keeps,
    so the frame may be reused)."""
    x0, y0, x1, y1 = crop_box(image.shape, digit.box)
    model_input = np.rint(np.clip(digit.input, 0.0, 1.0) * 255).astype(np.uint8)
    return Sample(image[y0:y1, x0:x1].copy(), model_input, label, digit.prediction,
                  float(digit.confidence), source)


def _png(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"cannot encode a {img.shape} image as PNG")
    return buf.tobytes()


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (never replacing anything) with ``data``, synced to the disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class Collection:
    """A collection folder, opened for appending.

    Args:
        folder: created if missing (its parent must exist).
        max_mb: cap on the samples' bytes (images + labels.csv).
        flag: the option that named the folder, for error messages.

    Raises UsageError (one line) when the folder cannot be a collection: a file, not
    writable, or a labels.csv without the file,label columns.
    """

    def __init__(self, folder, max_mb: float = 200.0, flag: str = "--collection"):
        self.folder, self.flag = Path(folder), flag
        self.max_bytes = int(max_mb * 1e6)
        self._lock = threading.Lock()
        self._rows: list[dict] = []
        self._header: list[str] = list(HEADER)
        self._sizes: dict[str, int] = {}
        self._csv_sig = None
        self._serial = 0
        self.added = self.evicted = 0
        self._open()

    # -- opening -----------------------------------------------------------------------------
    def _open(self) -> None:
        p, flag = self.folder, self.flag
        if p.exists() and not p.is_dir():
            raise UsageError(f"{flag} {p} is not a folder; give a folder path (it is created if missing)")
        if not p.exists():
            if not p.parent.is_dir():
                raise UsageError(f"{flag} {p}: folder {p.parent} does not exist; create it first")
            try:
                p.mkdir()
            except OSError as exc:
                raise UsageError(f"{flag} {p}: cannot create it ({exc.strerror}); choose another folder") from None
        try:  # os.access says yes to root even on a read-only mount: really write
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=p)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UsageError(f"{flag} {p} is not writable ({exc.strerror}); choose another folder") from None
        csv_path = p / CSV_NAME
        if csv_path.exists() and not csv_path.is_file():
            raise UsageError(f"{flag} {p}: {CSV_NAME} is not a regular file; move it away")
        with self._locked():
            self._load()
            self._remove_orphans()

    @contextmanager
    def _locked(self):
        with self._lock, open(self.folder / LOCK_NAME, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _signature(self):
        try:
            st = os.stat(self.folder / CSV_NAME)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _load(self) -> None:
        """(Re)read labels.csv when someone else changed it since we wrote it."""
        sig = self._signature()
        if sig == self._csv_sig:
            return
        self._header, self._rows = read_rows(self.folder / CSV_NAME, self.flag) if sig else (list(HEADER), [])
        self._sizes = {}
        for row in self._rows:
            for name in _files_of(row):
                if name not in self._sizes:
                    try:
                        self._sizes[name] = (self.folder / name).stat().st_size
                    except OSError:
                        self._sizes[name] = 0
        self._csv_sig = sig

    def _remove_orphans(self) -> None:
        named = {n for row in self._rows for n in _files_of(row)}
        for entry in os.scandir(self.folder):
            if OWN_NAME.match(entry.name) and entry.name not in named:
                Path(entry.path).unlink(missing_ok=True)

    # -- appending ---------------------------------------------------------------------------
    def _new_stem(self) -> str:
        t = time.time()
        self._serial += 1
        return time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z-{self._serial:04d}"

    def add(self, samples: list[Sample]) -> list[str]:
        """Save ``samples`` (one labels.csv rewrite for all of them); returns their file names.
        Raises OSError (a full disk): labels.csv is then unchanged."""
        if not samples:
            return []
        with self._locked():
            self._load()
            rows, names, written = list(self._rows), [], []
            try:
                for s in samples:
                    if s.label not in LABELS:
                        raise ValueError(f"label {s.label!r} is not one of 0-9, none or empty")
                    while True:
                        stem = self._new_stem()
                        if not (self.folder / f"{stem}.png").exists():
                            break
                    crop, inp = f"{stem}.png", f"{stem}{INPUT_SUFFIX}"
                    for name, img in ((inp, s.model_input), (crop, s.crop)):
                        data = _png(img)
                        _write_new(self.folder / name, data)
                        written.append(name)
                        self._sizes[name] = len(data)
                    rows.append({"file": crop, "label": s.label,
                                 "prediction": "" if s.prediction is None else str(s.prediction),
                                 "confidence": "" if s.confidence is None else f"{s.confidence:.4f}",
                                 "source": s.source,
                                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                    names.append(crop)
                rows, evicted = self._evict(rows)
                atomic_write_bytes(self.folder / CSV_NAME, self._csv(rows))
            except BaseException:
                for name in written:
                    (self.folder / name).unlink(missing_ok=True)
                    self._sizes.pop(name, None)
                raise
            self._rows, self._csv_sig = rows, self._signature()
            for name in evicted:
                (self.folder / name).unlink(missing_ok=True)
                self._sizes.pop(name, None)
            self.added += len(samples)
            self.evicted += len(evicted) // 2
            return names

    def _csv(self, rows: list[dict]) -> bytes:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self._header, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().encode()

    def _evict(self, rows: list[dict]) -> tuple[list[dict], list[str]]:
        """Drop the oldest rows of our own files until the folder fits the cap."""
        total = self.bytes_used(rows)
        keep, evicted = [], []
        for row in rows:
            files = _files_of(row)
            if total > self.max_bytes and OWN_NAME.match(row.get("file", "")):
                total -= sum(self._sizes.get(n, 0) for n in files) + 80
                evicted += files
            else:
                keep.append(row)
        return keep, evicted

    def bytes_used(self, rows: list[dict] | None = None) -> int:
        """The samples' bytes (images + ~80 bytes of labels.csv per row)."""
        rows = self._rows if rows is None else rows
        return sum(self._sizes.get(n, 0) for row in rows for n in _files_of(row)) + 80 * len(rows)

    def __len__(self) -> int:
        return len(self._rows)


def _files_of(row: dict) -> list[str]:
    """The crop and its model input, when ``file`` is a plain name inside the folder."""
    name = row.get("file", "")
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        return []
    stem = name[:-4] if name.lower().endswith(".png") else name
    return [name, stem + INPUT_SUFFIX]


def read_rows(path: Path, flag: str = "labels.csv") -> tuple[list[str], list[dict]]:
    """(header, rows as dicts) of a collection's labels.csv; UsageError when it is not one."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{flag}: {path} is not UTF-8 text; save it as UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "file" not in header or "label" not in header:
        raise UsageError(f"{flag}: {path} needs a header row with the columns file,label")
    reader.fieldnames = header
    header += [h for h in HEADER if h not in header]
    rows = [{k: (v or "").strip() for k, v in row.items() if k is not None}
            for row in reader if any((v or "").strip() for v in row.values() if isinstance(v, str))]
    return header, rows
