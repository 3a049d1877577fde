"""Ground truth for images: ``labels.csv`` with columns ``file,label`` (extra columns ignored),
the format of the dev photos and of collected samples."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from device.errors import UsageError


def read_table(path, what: str = "--labels") -> list[tuple[int, dict[str, str]]]:
    """A labels CSV -> [(line number, {column: stripped value})], blank lines left out.

    UTF-8 (a BOM is accepted); the header must name ``file`` and ``label``; every row needs a
    file name.  ``what`` names the file in messages (the flag or folder it came from).  Column
    names are lower-cased; missing trailing cells read as "".  What a label may be is the
    caller's rule: the dev photos allow 0-9 only, a collection also ``none`` and empty."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    rows = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(rows, [])]
    if "file" not in header or "label" not in header:
        raise UsageError(f"{what} {path} needs a header row with columns file,label")
    fi, li = header.index("file"), header.index("label")
    out = []
    for n, row in enumerate(rows, start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(fi, li) or not row[fi].strip():
            raise UsageError(f"{what} {path} row {n} lacks the file or label column")
        cells = [c.strip() for c in row] + [""] * (len(header) - len(row))
        out.append((n, dict(zip(header, cells))))
    return out


def read_labels(path: str) -> dict[str, int]:
    """labels.csv -> {file basename: digit}.  Every row needs both columns and a label 0-9;
    one line naming the file, row and fix otherwise."""
    labels: dict[str, int] = {}
    for n, row in read_table(path):
        value = row["label"]
        if value not in tuple("0123456789"):
            raise UsageError(f"--labels {path} row {n}: label {value!r} is not a digit 0-9")
        labels[Path(row["file"]).name] = int(value)
    if not labels:
        raise UsageError(f"--labels {path} has no rows")
    return labels
