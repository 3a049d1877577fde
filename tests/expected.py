"""Golden files: what the shipped model predicts for the 100 dev photos, and the shape of a
``device run`` result file (every key and its type; timings vary, so values are not kept).

A test compares fresh output with them, so a change in preprocessing, the model or the
schema shows up as a diff to review.  After an intentional change, regenerate and commit:

    MNIST_DIR=../shared/data/mnist python -m tests.expected
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "expected"
ROOT = HERE.parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "digit-photos"
PHOTOS_FILE = HERE / "photos-predictions.json"
RUN_SHAPE_FILE = HERE / "run-result-shape.json"


def photo_predictions() -> dict:
    """{file name: [prediction or None, confidence rounded to 0.01]} from `device classify`."""
    r = subprocess.run([sys.executable, "-m", "device.cli", "classify", str(PHOTOS), "--json"],
                       cwd=ROOT, capture_output=True, text=True, check=True)
    *rows, _summary = [json.loads(line) for line in r.stdout.splitlines()]
    return {Path(x["file"]).name: [x["prediction"], round(x["confidence"] or 0.0, 2)] for x in rows}


def shape(value):
    """Keys and type names, recursively; lists by their first element; histograms elided."""
    if isinstance(value, dict):
        return {k: ("histogram" if k == "histogram" else shape(v)) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def run_result_shape() -> dict:
    """The shape of a `device run` result on the shipped clip of 20 digits."""
    with tempfile.TemporaryDirectory() as tmp:
        clip, out = Path(tmp) / "clip.avi", Path(tmp) / "r.json"
        for args in (["make-clip", str(clip), "--digits", "20", "--hold", "1"],
                     ["run", "--source", str(clip), "--quiet", "--output", str(out)]):
            subprocess.run([sys.executable, "-m", "device.cli", *args], cwd=ROOT, check=True,
                           capture_output=True)
        doc = json.loads(out.read_text())
    for volatile in ("machine", "tool"):   # differ between machines by design
        doc[volatile] = {}
    return shape(doc)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    PHOTOS_FILE.write_text(json.dumps(photo_predictions(), indent=1, sort_keys=True) + "\n")
    RUN_SHAPE_FILE.write_text(json.dumps(run_result_shape(), indent=1) + "\n")
    print(f"wrote {PHOTOS_FILE.relative_to(ROOT)} and {RUN_SHAPE_FILE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
