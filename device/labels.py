"""Ground truth for images: ``labels.csv`` with columns ``file,label`` (extra columns ignored),
the format of the dev photos and of collected samples (:mod:`device.collection`), whose rows
may also say ``none`` (not a digit) or nothing (not labelled yet): those are no digit's ground
truth and are skipped by :func:`read_labels`."""

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


def read_labels(path: str, number: bool = False) -> dict[str, int | str]:
    """labels.csv -> {file basename: digit}.  Every row's label is 0-9 (with ``number``: a
    string of digits, its lines separated by spaces, as ``--read number`` reads them), ``none``
    or empty (the last two are skipped); one line naming the file, row and fix otherwise."""
    labels: dict[str, int | str] = {}
    for n, row in read_table(path):
        value = " ".join(row["label"].split())
        if value in ("", "none"):
            continue
        name = Path(row["file"]).name
        if number and all(c in "0123456789 " for c in value):
            labels[name] = value
            continue
        if value not in tuple("0123456789"):
            kind = "a number (digits, lines separated by spaces)" if number else "a digit 0-9"
            raise UsageError(f"--labels {path} row {n}: label {value!r} is not {kind} (or none)")
        labels[name] = int(value)
    if not labels:
        raise UsageError(f"--labels {path} has no rows labelled 0-9")
    return labels
