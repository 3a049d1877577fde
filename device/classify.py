"""``device classify``: preprocess and predict image files (the same per-frame step as
``device run``); accuracy against labels.csv."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from device.errors import UsageError
from device.labels import read_labels
from device.sources.images import ImageRefused, list_images, read_image
from device.step import Step


def expand(specs: list[str]) -> list[str]:
    """Files, folders and globs -> image file list (in order, each once)."""
    out: list[str] = []
    seen: set[str] = set()
    for spec in specs:
        files = list_images(spec)
        if files is None:
            raise UsageError(f"{spec}: no such image file, folder or glob")
        for f in files:
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out


def _same(label, prediction) -> bool:
    """A digit, or a number whose lines may be spaced differently in the labels file."""
    if isinstance(label, str):
        return " ".join(label.split()) == (prediction or "")
    return label == prediction


def classify_files(step: Step, specs: list[str], labels_csv: str | None, as_json: bool, out=None,
                   err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    files = expand(specs)
    number = step.read == "number"
    labels = read_labels(labels_csv, number=number) if labels_csv else None
    correct = scored = failed = 0
    for i, f in enumerate(files):
        t0 = time.perf_counter_ns()
        try:
            img = read_image(f)
        except ImageRefused as exc:
            failed += 1
            rec = {"file": f, "prediction": None, "confidence": None, "error": str(exc)}
        else:
            r = step(img, i, Path(f).name, t0=time.perf_counter_ns(), wait_ns=time.perf_counter_ns() - t0)
            rec = {"file": f, "prediction": r.prediction, "confidence": round(r.confidence, 4),
                   "region": r.to_json()["region"], "total_ms": round(r.total_ns / 1e6, 4)}
            if number:
                rec["prediction"] = r.text or None
                rec["digits"] = [d.to_json() for d in r.digits]
        if labels is not None and Path(f).name in labels:
            rec["label"] = labels[Path(f).name]
            scored += 1
            correct += _same(rec["label"], rec["prediction"])
        if as_json:
            print(json.dumps(rec), file=out)
        else:
            if "error" in rec:
                pred, conf = f"skipped: {rec['error']}", ""
            elif number and rec["prediction"]:
                pred = f"read {rec['prediction']!r}"
                conf = "  " + "  ".join(f"{d['digit']} {d['confidence']:.0%} ({','.join(map(str, d['box']))})"
                                        for d in rec["digits"])
            else:
                pred = "no digit" if rec["prediction"] is None else str(rec["prediction"])
                conf = f"  {rec['confidence']:.1%}" if rec["confidence"] else ""
            mark = ""
            if "label" in rec:
                mark = "  ok" if _same(rec["label"], rec["prediction"]) else f"  WRONG (label {rec['label']})"
            print(f"{f}  {pred}{conf}{mark}", file=out)
    summary = {"summary": True, "images": len(files), "failed": failed, "labelled": scored,
               "correct": correct, "accuracy": correct / scored if scored else None,
               "model": step.model.describe()["path"], "verified": step.model.verified}
    if as_json:
        print(json.dumps(summary), file=out)
    elif labels is not None:
        acc = f"{correct / scored:.1%}" if scored else "n/a"
        print(f"accuracy {acc} ({correct}/{scored} labelled images)", file=out)
    if failed and failed == len(files):
        print(f"device: error: none of the {failed} image(s) could be read (see their lines); "
              "pass PNG, JPEG, BMP, PGM/PPM, TIFF or WebP images", file=err)
        return 2
    if failed:
        print(f"device: {failed} image(s) could not be read (see their lines)", file=err)
    if labels is not None and scored == 0:
        print(f"device: warning: no image name matched a row of {labels_csv}", file=err)
    return 0
