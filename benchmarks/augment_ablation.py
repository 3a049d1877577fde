"""Does the camera-like augmentation (stroke thickness, blur) help on real photos?

Trains (or reuses) two default `host train-qat` models that differ only in `--augment`
(full vs geometric), then measures each on the MNIST test set (from its manifest), the 100 real
photos (`device classify`) and the camera-like replay clip of the device benchmark.
Writes benchmarks/results/<machine>/augment_ablation.json.
    MNIST_DIR=../shared/data/mnist python -m benchmarks.augment_ablation
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from device.fsio import atomic_write_json
from device.synth import load_labels, make_clip
from device.system import machine_info, machine_slug

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "data" / "digit-photos"
RUNS = {"full": ROOT / "runs" / "bench" / "edge", "geometric": ROOT / "runs" / "ablation-geometric"}


def main() -> int:
    from host.data import load_mnist

    clip = ROOT / "runs" / "bench-device" / "clip.avi"
    if not clip.is_file():
        d = load_mnist()
        clip.parent.mkdir(parents=True, exist_ok=True)
        make_clip(d.x_test, d.y_test, clip, n_digits=300, hold=3, seed=0)
    labels = load_labels(clip)
    out = {}
    for mode, run in RUNS.items():
        if not (run / "model.json").is_file():
            subprocess.run([sys.executable, "-m", "host.cli", "train-qat", "--augment", mode,
                            "--out", str(run)], cwd=ROOT, check=True)
        manifest = json.loads((run / "model.json").read_text())
        model = str(run / "model.tflite")
        r = subprocess.run([sys.executable, "-m", "device.cli", "classify", str(PHOTOS), "--labels",
                            str(PHOTOS / "labels.csv"), "--json", "--model", model],
                           cwd=ROOT, check=True, capture_output=True, text=True)
        photos = json.loads(r.stdout.strip().splitlines()[-1])
        frames = ROOT / "runs" / f"ablation-{mode}.jsonl"
        subprocess.run([sys.executable, "-m", "device.cli", "run", "--source", str(clip), "--quiet",
                        "--output", "", "--frames-out", str(frames), "--model", model],
                       cwd=ROOT, check=True, capture_output=True)
        rows = [json.loads(l) for l in frames.read_text().splitlines()]
        acc = float(np.mean([row["prediction"] == lab for row, lab in zip(rows, labels) if lab is not None]))
        out[mode] = {"mnist_test": manifest["accuracy"]["tflite"], "photos": photos["accuracy"],
                     "clip_per_frame": acc, "sha256": manifest["sha256"],
                     "augment": manifest["training"]["augment"]}
    machine = machine_info()
    result = {"schema_version": 1, "kind": "augment_ablation",
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine,
              "results": out}
    dest = ROOT / "benchmarks" / "results" / machine_slug(machine) / "augment_ablation.json"
    atomic_write_json(dest, result)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
