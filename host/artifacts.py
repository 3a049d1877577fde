"""Run artifacts: a staging folder renamed into ``--out`` only when everything is written, and
the model manifest (format in :mod:`device.manifest`)."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from device.errors import UsageError
from device.manifest import INPUT_CONTRACT, MANIFEST_VERSION, sha256_bytes

LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy", "ai-edge-litert")
# What the shipped INT8 model must reach (README "Measured figures"): train-qat reports against
# these, and benchmarks/ check their results against the same numbers.
TARGET_ACCURACY = 0.995     # on all 10,000 MNIST test images, through the device runtime
TARGET_BYTES = 64 * 1024    # model.tflite


def target_lines(manifest: dict) -> list[str]:
    """One ``target: ... PASS|FAIL`` line per target, from a manifest: a low figure is a result
    to report, not an error."""
    acc, size = manifest["accuracy"]["tflite"], manifest["bytes"]
    verdict = {True: "PASS", False: "FAIL"}
    return [f"target: INT8 accuracy {100 * acc:.2f} % >= {100 * TARGET_ACCURACY:.1f} %: "
            f"{verdict[acc >= TARGET_ACCURACY]}",
            f"target: model size {size:,} bytes <= {TARGET_BYTES:,} bytes (64 KB): "
            f"{verdict[size <= TARGET_BYTES]}"]


def check_out_dir(out) -> Path:
    """Create ``out`` and prove it is writable, before hours of training; UsageError if not."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"--out {out} is not writable ({exc.strerror}); choose another "
                         "folder with --out") from None
    return out


class Staging:
    """``with Staging(out) as st:`` write files into ``st.dir``; on a clean exit each is moved
    into ``out`` with an atomic rename, in the order written (so put the manifest last); on
    an error or Ctrl-C nothing in ``out`` changes."""

    def __init__(self, out):
        self.out = check_out_dir(out)
        self.dir: Path | None = None
        self.order: list[str] = []

    def __enter__(self):
        self.dir = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.out))
        return self

    def path(self, name: str) -> Path:
        if name not in self.order:
            self.order.append(name)
        return self.dir / name

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                for name in self.order:
                    src = self.dir / name
                    if src.exists():
                        dst = self.out / name
                        if dst.is_dir():
                            shutil.rmtree(dst)
                        os.replace(src, dst)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def build_manifest(tflite: bytes, evaluation: dict, *, arch: str, params: int, macs: int,
                   sparsity: float, conversion: str, keras_accuracy: dict, config: dict,
                   extra: dict | None = None) -> dict:
    """The ``model.json`` for ``tflite``; ``evaluation`` is :func:`host.evaluate.evaluate_tflite`'s
    result on the same bytes."""
    m = evaluation["model"]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "file": "model.tflite",
        "sha256": sha256_bytes(tflite),
        "bytes": len(tflite),
        "arch": arch,
        "params": params,
        "macs": macs,
        "sparsity": round(sparsity, 4),
        "conversion": conversion,
        "input": m["input"],
        "output": m["output"],
        "input_contract": INPUT_CONTRACT,
        "accuracy": {
            "tflite": evaluation["accuracy"],
            "tflite_correct": evaluation["correct"],
            "test_images": evaluation["images"],
            "evaluated_with": f"{m['runtime']} {m['runtime_version']}",
            **keras_accuracy,
        },
        "per_class_accuracy": evaluation["per_class_accuracy"],
        "confusion_matrix": evaluation["confusion_matrix"],
        "host_latency_ms": evaluation["host_latency_ms"],
        "training": config,
        "libraries": library_versions(),
        "machine": {"system": platform.system(), "machine": platform.machine(),
                    "node": platform.node()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        manifest.update(extra)
    return manifest
