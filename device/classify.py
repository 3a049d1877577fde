"""``device classify``: preprocess and predict image files; accuracy against labels.csv."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from device.errors import UsageError
from device.loop import postprocess
from device.preprocess import prepare
from device.sources import OpenCVSource, _cv2


def expand(specs: list[str]) -> list[str]:
    """Files, folders and globs -> image file list (in order, each once)."""
    out: list[str] = []
    for spec in specs:
        files = OpenCVSource._image_list(spec)
        if files is None:
            raise UsageError(f"{spec}: no such image file, folder or glob")
        out.extend(f for f in files if f not in out)
    return out


def read_labels(path: str) -> dict[str, int]:
    """labels.csv (columns file,label; extra columns ignored) -> {basename: label}."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise UsageError(f"cannot read --labels {path}: {exc.strerror}") from None
    if not rows or "file" not in rows[0] or "label" not in rows[0]:
        raise UsageError(f"--labels {path} needs a header with columns file,label")
    try:
        return {Path(r["file"]).name: int(r["label"]) for r in rows}
    except ValueError:
        raise UsageError(f"--labels {path}: every label must be a digit 0-9") from None


def classify_files(model, specs: list[str], labels_csv: str | None, as_json: bool) -> int:
    cv2 = _cv2()
    files = expand(specs)
    labels = read_labels(labels_csv) if labels_csv else None
    correct = scored = unreadable = 0
    for f in files:
        img = cv2.imread(f, cv2.IMREAD_COLOR)
        if img is None:
            unreadable += 1
            rec = {"file": f, "prediction": None, "confidence": None, "error": "unreadable image"}
        else:
            prep = prepare(img)
            if prep.image is None:
                rec = {"file": f, "prediction": None, "confidence": 0.0, "region": None}
            else:
                digit, conf = postprocess(model.predict(prep.image))
                rec = {"file": f, "prediction": digit, "confidence": round(conf, 4),
                       "region": list(prep.region)}
        if labels is not None and Path(f).name in labels:
            rec["label"] = labels[Path(f).name]
            scored += 1
            correct += rec["label"] == rec["prediction"]
        if as_json:
            print(json.dumps(rec))
        else:
            pred = "no digit" if rec["prediction"] is None else str(rec["prediction"])
            conf = f"{rec['confidence']:.1%}" if rec.get("confidence") else ""
            mark = ""
            if "label" in rec:
                mark = "  ok" if rec["label"] == rec["prediction"] else f"  WRONG (label {rec['label']})"
            print(f"{f}  {pred}  {conf}{mark}")
    if labels is not None:
        acc = correct / scored if scored else 0.0
        line = f"accuracy {acc:.1%} ({correct}/{scored} labelled images)"
        print(json.dumps({"accuracy": acc, "correct": correct, "labelled": scored}) if as_json else line,
              file=sys.stderr if as_json else sys.stdout)
    if unreadable:
        print(f"device: {unreadable} image(s) could not be read", file=sys.stderr)
    return 0
