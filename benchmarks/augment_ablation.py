"""Does the camera-like augmentation help on real photos?

Trains (or reuses) default `host train-qat` models that differ only in `--augment` (camera, the
default; full, the previous default; geometric), then measures each on the MNIST test set (from
its manifest), the 100 real photos (`device classify`) and the camera-like replay clip of the
device benchmark.  One seed: `benchmarks.train_seeds` has the three-seed comparison.
Writes benchmarks/results/<machine>/augment_ablation.json.
    MNIST_DIR=../shared/data/mnist python -m benchmarks.augment_ablation
"""

from __future__ import annotations

import json
import sys

from benchmarks.harness import (ROOT, clip_accuracy, host, mnist_clip, photos_accuracy, replay, results_dir,
                                write_summary)

# The default one is benchmarks.train_qat's model when it is there (and was trained that way).
RUNS = {"camera": ROOT / "runs" / "bench" / "edge", "full": ROOT / "runs" / "ablation-full",
        "geometric": ROOT / "runs" / "ablation-geometric"}


def main() -> int:
    clip = mnist_clip(ROOT / "runs" / "bench-device" / "clip.avi", 300, hold=3)  # device_loop's clip
    out = {}
    for mode, run in RUNS.items():
        manifest = json.loads((run / "model.json").read_text()) if (run / "model.json").is_file() else {}
        if manifest.get("training", {}).get("augment") != mode:
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
