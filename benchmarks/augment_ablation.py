"""Does the camera-like augmentation (stroke thickness, blur) help on real photos?

Trains (or reuses) two default `host train-qat` models that differ only in `--augment`
(full vs geometric), then measures each on the MNIST test set (from its manifest), the 100 real
photos (`device classify`) and the camera-like replay clip of the device benchmark.
Writes benchmarks/results/<machine>/augment_ablation.json.
    MNIST_DIR=../shared/data/mnist python -m benchmarks.augment_ablation
"""

from __future__ import annotations

import json
import sys

from benchmarks.harness import (ROOT, clip_accuracy, host, mnist_clip, photos_accuracy, replay, results_dir,
                                write_summary)

RUNS = {"full": ROOT / "runs" / "bench" / "edge", "geometric": ROOT / "runs" / "ablation-geometric"}


def main() -> int:
    clip = mnist_clip(ROOT / "runs" / "bench-device" / "clip.avi", 300, hold=3)  # device_loop's clip
    out = {}
    for mode, run in RUNS.items():
        if not (run / "model.json").is_file():
            host("train-qat", "--augment", mode, "--out", run, "--force")  # --force: our own work folder
        manifest = json.loads((run / "model.json").read_text())
        model = run / "model.tflite"
        _, rows = replay(clip, "", ROOT / "runs" / f"ablation-{mode}.jsonl", model=model)
        out[mode] = {"mnist_test": manifest["accuracy"]["tflite"], "photos": photos_accuracy(model)["accuracy"],
                     "clip_per_frame": clip_accuracy(rows, clip)["accuracy_per_frame"],
                     "sha256": manifest["sha256"], "augment": manifest["training"]["augment"]}
    write_summary(results_dir(ROOT / "benchmarks" / "results") / "augment_ablation.json", "augment_ablation",
                  measured=out)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
