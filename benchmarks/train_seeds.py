"""Is the default `host train-qat` robust?  The default for seeds 0, 1, 2, against the previous
default and against the new default with each of its changes undone (same seeds), so every
gain is measured, not claimed.

Every run is its own process (deterministic per seed): the new default is the real CLI
(`host train-qat --seed S`, whose last lines must be the target lines); the other variants are
the same pipeline with a few `TrainConfig` fields changed.  Per run: INT8 accuracy on the
10,000 MNIST test images (train-qat's own evaluation, device runtime), Keras float / QAT
accuracy, the last validation accuracy (from the training split), bytes, wall time, the load
average while it ran (the machine is shared), `device classify` on the 100 dev photos (a
held-out check, never used to choose settings), and the accuracy on camera-rendered MNIST test
digits put through the device preprocessing (`device.synth.render_frame` + `prepare`: light,
shadow, perspective, blur, noise, JPEG) as a larger robustness check.

Writes benchmarks/results/<machine>/train_seeds.json after every run (so a long run can be
resumed with --reuse).  Usage:
    MNIST_DIR=../shared/data/mnist python -m benchmarks.train_seeds [--variants new,old,...]
        [--seeds 0,1,2] [--reuse] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import ROOT, photos_accuracy, results_dir, write_summary
from device.system import machine_info
from host.artifacts import TARGET_ACCURACY, TARGET_BYTES

TARGETS = {"accuracy": TARGET_ACCURACY, "bytes": TARGET_BYTES, "wall_seconds": 15 * 60}

# The previous default, spelled out (the fields it did not have are off).
OLD = {"epochs": 9, "qat_epochs": 1, "lr": 2e-3, "qat_lr": 1e-4, "batch": 128, "augment": "full",
       "label_smoothing": 0.0, "ema": 0.0}
# name -> TrainConfig fields changed from the new default ("new" is the CLI itself).  Keys
# starting with "camera." change a field of host.augment.CAMERA.
VARIANTS: dict[str, dict] = {
    "new": {},
    "old": OLD,
    "no-camera-augment": {"augment": "full"},
    "no-weight-average": {"ema": 0.0},
    "no-label-smoothing": {"label_smoothing": 0.0},
}


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` (values parsed as JSON, else kept as strings)."""
    name, _, body = text.partition(":")
    fields = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        try:
            fields[key.strip()] = json.loads(value)
        except ValueError:
            fields[key.strip()] = value.strip()
    return name, fields


def run_one(fields: dict, seed: int, out: str) -> int:
    """The --one mode: one train-qat with ``fields`` changed, in this process."""
    import dataclasses

    from host import augment
    from host.pipeline import run_train_qat
    from host.train import TrainConfig

    cam = {k.split(".", 1)[1]: v for k, v in fields.items() if k.startswith("camera.")}
    if cam:
        augment.CAMERA = dataclasses.replace(augment.CAMERA, **cam)
    cfg = TrainConfig(**{k: v for k, v in fields.items() if not k.startswith("camera.")}, seed=seed,
                      extra={"variant_fields": fields})
    run_train_qat(cfg, None, out)
    return 0


class LoadSampler:
    """Mean 1-minute load average while a run goes (sampled every 10 s)."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(10):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = self.samples or [float("nan")]
        return {"mean": round(float(np.mean(s)), 2), "max": round(float(np.max(s)), 2)}


def camera_set(cache: Path, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` MNIST test digits, each rendered once as a camera frame and put through the device
    preprocessing: (uint8 (N, 28, 28) model inputs, labels); frames where no digit was found
    count as wrong (input all zero, label kept)."""
    if cache.is_file():
        with np.load(cache) as f:
            return f["x"], f["y"]
    from device.preprocess import prepare
    from device.synth import render_frame
    from host.data import load_mnist

    data = load_mnist()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(data.x_test), n, replace=False)
    xs = np.zeros((n, 28, 28), np.uint8)
    for k, i in enumerate(pick):
        p = prepare(render_frame(data.x_test[i], rng))
        if p.image is not None:
            xs[k] = np.round(p.image * 255).astype(np.uint8)
    ys = data.y_test[pick]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, x=xs, y=ys, index=pick)
    return xs, ys


def camera_accuracy(model: Path, cam: tuple[np.ndarray, np.ndarray]) -> float:
    from host.data import Mnist
    from host.evaluate import evaluate_tflite

    x, y = cam
    return evaluate_tflite(model, Mnist(x[:0], y[:0], x, y, "camera-set"))["accuracy"]


def score(rec: dict, cam: tuple[np.ndarray, np.ndarray]) -> None:
    """The held-out checks of a run's model, into its record: the photos and the camera set."""
    photos = photos_accuracy(rec["model"]) or {}
    rec["photos"], rec["photos_wrong"] = photos.get("accuracy"), photos.get("wrong")
    rec["camera_set"] = camera_accuracy(Path(rec["model"]), cam)


def train(variant: str, fields: dict, seed: int, out: Path, quick: list[str]) -> dict:
    """One run in its own process; returns its record."""
    if variant == "new":
        # --force: the folder is this benchmark's own.
        cmd = [sys.executable, "-m", "host.cli", "train-qat", "--seed", str(seed), "--out", str(out), "--force", *quick]
    else:
        extra = {"limit": 2000, "epochs": 1, "qat_epochs": 1} if quick else {}
        cmd = [sys.executable, "-m", "benchmarks.train_seeds", "--one", json.dumps({**fields, **extra}),
               "--seed", str(seed), "--out", str(out)]
    log = out.parent / f"{out.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with LoadSampler() as load, open(log, "w") as f:
        # Into the log as it goes (a run takes minutes); the target lines are read back from it.
        r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    if r.returncode:
        raise SystemExit(f"{variant} seed {seed} failed (exit {r.returncode}); log: {log}")
    m = json.loads((out / "model.json").read_text())
    hist = json.loads((out / "history.json").read_text())
    lines = [line for line in log.read_text().splitlines() if line.startswith("target:")]
    return {"variant": variant, "seed": seed, "fields": fields,
            "int8": m["accuracy"]["tflite"], "int8_correct": m["accuracy"]["tflite_correct"],
            "keras_float": m["accuracy"]["keras_float"], "keras_qat": m["accuracy"]["keras_qat"],
            "val_float": hist["float"]["val_accuracy"][-1],
            "val_qat": hist["qat"]["val_accuracy"][-1] if hist.get("qat") else None,
            "float_epochs_run": len(hist["float"]["loss"]),
            "bytes": m["bytes"], "gzip_bytes": m.get("gzip_bytes"), "sha256": m["sha256"],
            "wall_seconds": round(wall, 1), "pipeline_seconds": m.get("wall_seconds"),
            "load_average": load.summary(), "target_lines": lines, "training": m["training"],
            "model": str(out / "model.tflite")}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for v in dict.fromkeys(r["variant"] for r in runs):
        rs = [r for r in runs if r["variant"] == v]
        acc = [r["int8"] for r in rs]
        out[v] = {"seeds": [r["seed"] for r in rs], "int8": acc,
                  "int8_mean": float(np.mean(acc)), "int8_min": float(np.min(acc)),
                  "all_pass": all(a >= TARGETS["accuracy"] for a in acc),
                  "bytes_pass": all(r["bytes"] <= TARGETS["bytes"] for r in rs),
                  "keras_float_mean": float(np.mean([r["keras_float"] for r in rs])),
                  "val_float_mean": float(np.mean([r["val_float"] for r in rs])),
                  "photos": [r["photos"] for r in rs], "camera_set": [r["camera_set"] for r in rs],
                  "camera_set_mean": float(np.mean([r["camera_set"] for r in rs])),
                  "wall_seconds": [r["wall_seconds"] for r in rs],
                  "load_average": [r["load_average"]["mean"] for r in rs]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated names from VARIANTS; more with --variant")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:K=V,...",
                    help="an extra variant: TrainConfig fields changed from the new default")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--quick", action="store_true", help="tiny budgets: proves the benchmark runs")
    ap.add_argument("--reuse", action="store_true", help="keep runs already in --results")
    ap.add_argument("--work", default=str(ROOT / "runs" / "seeds"))
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one is not None:
        return run_one(json.loads(args.one), args.seed, args.out)

    variants = {name: VARIANTS[name] for name in filter(None, args.variants.split(","))}
    variants.update(parse_variant(v) for v in args.variant)
    seeds = [int(s) for s in args.seeds.split(",")]
    machine = machine_info()
    dest = results_dir(args.results, machine) / ("train_seeds-quick.json" if args.quick else "train_seeds.json")
    runs = []
    if args.reuse and dest.is_file():
        doc = json.loads(dest.read_text())
        runs = doc.get("details", doc)["runs"]
    work = Path(args.work) / ("quick" if args.quick else "full")
    n_cam = 200 if args.quick else 1000
    cam = camera_set(Path(args.work) / f"camera-set-{n_cam}.npz", n=n_cam)
    quick = ["--limit", "2000", "--epochs", "1", "--qat-epochs", "1"] if args.quick else []
    for rec in runs:
        # Kept runs are re-scored with today's device code and camera set (seconds each).
        if Path(rec["model"]).is_file():
            score(rec, cam)
    for name, fields in variants.items():
        for seed in seeds:
            if any(r["variant"] == name and r["seed"] == seed and r["fields"] == fields for r in runs):
                continue
            print(f"== {name} seed {seed}: {json.dumps(fields)}", flush=True)
            rec = train(name, fields, seed, work / f"{name}-s{seed}", quick)
            score(rec, cam)
            runs = [r for r in runs if not (r["variant"] == name and r["seed"] == seed)] + [rec]
            print(f"   INT8 {rec['int8']:.4f}  float {rec['keras_float']:.4f}  val {rec['val_float']:.4f}  "
                  f"photos {rec['photos']}  camera {rec['camera_set']:.4f}  {rec['wall_seconds']:.0f} s "
                  f"(load {rec['load_average']['mean']})", flush=True)
            write_summary(dest, "train_seeds", quick=args.quick, targets=TARGETS, measured=summarise(runs),
                          details={"old_default": OLD, "camera_set_images": int(len(cam[1])), "runs": runs},
                          machine=machine)
    print(json.dumps(summarise(runs), indent=1))
    print(f"results: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
