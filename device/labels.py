"""Ground truth for images: ``labels.csv`` with columns ``file,label`` (extra columns ignored),
the format of the dev photos and of collected samples."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from device.errors import UsageError


def read_labels(path: str) -> dict[str, int]:
    """labels.csv -> {file basename: digit}.  UTF-8 (a BOM is accepted); every row needs both
    columns and a label 0-9; one line naming the file, row and fix otherwise."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --labels {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--labels {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    rows = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(rows, [])]
    if "file" not in header or "label" not in header:
        raise UsageError(f"--labels {path} needs a header row with columns file,label")
    fi, li = header.index("file"), header.index("label")
    labels: dict[str, int] = {}
    for n, row in enumerate(rows, start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(fi, li) or not row[fi].strip():
            raise UsageError(f"--labels {path} row {n} lacks the file or label column")
        value = row[li].strip()
        if value not in tuple("0123456789"):
            raise UsageError(f"--labels {path} row {n}: label {value!r} is not a digit 0-9")
        labels[Path(row[fi].strip()).name] = int(value)
    if not labels:
        raise UsageError(f"--labels {path} has no rows")
    return labels
