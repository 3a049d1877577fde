"""``device golden``: a fixed set of model inputs whose predictions were recorded on the host.

A runtime that loads and runs can still compute something else: a kernel picked for a CPU
feature the core lacks, an emulator gap, a broken wheel.  The golden set catches that before a
Pi goes live.  ``data/golden.npz`` holds uint8 28x28 model inputs exactly as the device feeds
them (MNIST test digits, and the inputs ``preprocess.prepare`` made of the 100 dev photos on
the host, so OpenCV is not part of this check); the model's manifest holds, under ``golden``,
the prediction per image and a hash of the raw output bytes that the host's x86 run gave
(``host.golden.expectations``).  The check passes when every prediction is identical; the
output hash says whether the scores were bit-identical too (quantized kernels are expected to
be exact, float ones may differ in the last bit between CPUs without changing a prediction).

Format of ``golden.npz`` (``GOLDEN_VERSION``):
  1 - x uint8 (N, 28, 28), y uint8 (N,), n_mnist (first n_mnist rows are MNIST test digits,
      the rest photo inputs), source (test index or photo file name per row).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.errors import UsageError
from device.preprocess import to_unit

GOLDEN_VERSION = 1
GOLDEN = Path(__file__).resolve().parent / "data" / "golden.npz"


@dataclass(frozen=True)
class GoldenSet:
    x: np.ndarray          # uint8 (N, 28, 28)
    y: np.ndarray          # uint8 (N,) labels
    n_mnist: int           # rows [0, n_mnist) are MNIST, the rest photos
    source: np.ndarray     # str (N,): MNIST test index or photo file name
    sha256: str            # of the inputs and labels: expectations are only valid for this set

    def __len__(self) -> int:
        return len(self.x)


def set_sha256(x: np.ndarray, y: np.ndarray, n_mnist: int) -> str:
    h = hashlib.sha256()
    for part in (np.ascontiguousarray(x, np.uint8), np.ascontiguousarray(y, np.uint8),
                 np.array([n_mnist], "<i8")):
        h.update(part.tobytes())
    return h.hexdigest()


def load_set(path: str | Path | None = None) -> GoldenSet:
    path = Path(path or GOLDEN)
    try:
        with np.load(path) as f:
            if int(f["version"]) != GOLDEN_VERSION:
                raise ValueError(f"version {int(f['version'])}, expected {GOLDEN_VERSION}")
            x, y, n, src = f["x"], f["y"], int(f["n_mnist"]), f["source"]
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"cannot read the golden set {path}: {exc}; re-copy device/data/") from None
    if x.dtype != np.uint8 or x.shape[1:] != (28, 28) or len(y) != len(x) or not 0 < n <= len(x):
        raise UsageError(f"{path} is not a golden set (uint8 N x 28 x 28 inputs with labels)")
    return GoldenSet(x, y, n, src, set_sha256(x, y, n))


def run_set(model, gs: GoldenSet) -> tuple[np.ndarray, str]:
    """(prediction per image, sha256 of all raw output tensors in order): one invoke per
    image, fed exactly as ``device run`` feeds a preprocessed frame."""
    preds = np.empty(len(gs), np.uint8)
    h = hashlib.sha256()
    out_index = model.output["index"]
    for i, img in enumerate(gs.x):
        model.set_input(to_unit(img))
        model.invoke()
        raw = model.interpreter.get_tensor(out_index)
        h.update(np.ascontiguousarray(raw).tobytes())
        preds[i] = int(np.argmax(raw.reshape(-1)))
    return preds, h.hexdigest()


def expectations(model, gs: GoldenSet) -> dict:
    """What a model's manifest records under ``golden`` (host side, on the reference machine)."""
    import platform

    preds, out_hash = run_set(model, gs)
    d = model.describe()
    return {"set_sha256": gs.sha256, "images": len(gs),
            "predictions": "".join(str(int(p)) for p in preds), "outputs_sha256": out_hash,
            "made_with": f"{d['runtime']} {d['runtime_version']}, {platform.machine()}, "
                         f"threads {d['threads']}, xnnpack {'on' if d['xnnpack'] else 'off'}"}


def _accuracy(preds: np.ndarray, y: np.ndarray) -> dict:
    correct = int(np.sum(preds == y))
    return {"correct": correct, "images": int(len(y)), "accuracy": correct / len(y) if len(y) else 0.0}


def check(model, gs: GoldenSet | None = None) -> dict:
    """Run the golden set and compare with the model's recorded expectations.

    Returns a dict with ``status``: "identical", "different" (``differ`` lists the indices) or
    "unverified" (no expectations for this model and this set; ``reason`` says why)."""
    gs = gs or load_set()
    preds, out_hash = run_set(model, gs)
    n = gs.n_mnist
    rep = {"model": str(model.path), "sha256": model.sha256, "set_sha256": gs.sha256,
           "images": len(gs), "mnist": _accuracy(preds[:n], gs.y[:n]),
           "photos": _accuracy(preds[n:], gs.y[n:]), "outputs_sha256": out_hash,
           "runtime": f"{model.backend.name} {model.backend.version}",
           "threads": model.threads, "xnnpack": model.xnnpack}
    exp = (model.manifest or {}).get("golden")
    if not exp:
        why = "no manifest beside the model" if model.manifest is None else "its manifest has no golden field"
        return {**rep, "status": "unverified", "reason": f"{why} (make it with host train-qat / convert)"}
    if exp.get("set_sha256") != gs.sha256 or len(exp.get("predictions", "")) != len(gs):
        return {**rep, "status": "unverified",
                "reason": "the manifest's expectations were made for another golden set"}
    expected = np.frombuffer(exp["predictions"].encode(), np.uint8) - ord("0")
    differ = np.flatnonzero(expected != preds)
    rep.update(status="different" if len(differ) else "identical",
               identical=int(len(gs) - len(differ)), differ=[int(i) for i in differ],
               expected=[int(expected[i]) for i in differ], got=[int(preds[i]) for i in differ],
               outputs_identical=out_hash == exp.get("outputs_sha256"), reference=exp.get("made_with"))
    return rep


def summary_line(r: dict) -> str:
    acc = (f"MNIST {r['mnist']['accuracy']:.2%} ({r['mnist']['correct']}/{r['mnist']['images']}), "
           f"photos {r['photos']['accuracy']:.0%} ({r['photos']['correct']}/{r['photos']['images']})")
    run = f"{r['runtime']}, threads {r['threads']}, xnnpack {'on' if r['xnnpack'] else 'off'}"
    if r["status"] == "unverified":
        return f"golden: unverified, {r['reason']}; {acc}; {run}"
    if r["status"] == "identical":
        bits = "bit-identical outputs" if r["outputs_identical"] else "outputs differ in bytes only"
        return (f"golden: {r['identical']}/{r['images']} identical predictions ({bits}); {acc}; {run}")
    n = len(r["differ"])
    shown = ", ".join(f"#{i} {e}->{g}" for i, e, g in zip(r["differ"][:5], r["expected"], r["got"]))
    return (f"golden: {n}/{r['images']} predictions DIFFER from the reference ({shown}"
            f"{', ...' if n > 5 else ''}); {acc}; {run}")


def report(model, as_json: bool) -> int:
    """``device golden``: exit 0 when identical or unverified, 1 when any prediction differs."""
    r = check(model)
    print(json.dumps(r) if as_json else summary_line(r))
    return 1 if r["status"] == "different" else 0
