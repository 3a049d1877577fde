"""Run artifacts: the ``--out`` folder checked before the work starts, a staging folder renamed
into it only when everything is written, and the model manifest (format in
:mod:`device.manifest`).  TensorFlow-free: the command line checks ``--out`` before loading it."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from device.errors import UsageError
from device.fsio import atomic_write_json, cannot_write_in
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


RECORD = ".host-run.json"  # which verb filled the folder, and with which files


def _record(out: Path) -> dict | None:
    """The record a previous run left in ``out``, or None (no run, or not a readable record)."""
    try:
        d = json.loads((out / RECORD).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(d, dict) and isinstance(d.get("verb"), str) and isinstance(d.get("files"), list)
    return d if ok else None


def _entries(out: Path) -> list[str]:
    """What is in ``out`` besides the record and staging folders left by a killed run."""
    return sorted(p.name for p in out.iterdir() if p.name != RECORD and not p.name.startswith(".staging-"))


def check_out_dir(out, verb: str | None = None, force: bool = False) -> Path:
    """Raise UsageError (one line) unless ``out`` can take a run's results, before hours of
    training: it is a folder or can be created as one, it is writable, and - given ``verb`` -
    it is empty or holds a previous run of the same verb (or ``force``).  Creates nothing."""
    out = Path(out)
    if str(out) == "":
        raise UsageError("--out: give a folder")
    probe = out
    while not (probe.exists() or probe.is_symlink()) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        where = "is" if probe == out else f"cannot be created: {probe} is"
        raise UsageError(f"--out {out} {where} a file, not a folder; choose another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {probe} is not writable; choose another folder with --out")
    why = cannot_write_in(probe)   # (os.access says yes to root even in /proc)
    if why:
        raise UsageError(f"--out {out}: cannot create anything in {probe} ({why}); "
                         "choose another folder with --out")
    if verb and not force and out.is_dir():
        rec = _record(out)
        if _entries(out) and (rec is None or rec["verb"] != verb):
            held = f"a `host {rec['verb']}` run" if rec else "no record of a `host` run"
            raise UsageError(f"--out {out} is not empty and holds {held}, not a previous `host {verb}` "
                             f"run; choose a new folder, or pass --force to replace what {verb} writes")
    return out


def _is_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _remove(path: Path) -> None:
    if _is_dir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _aside(path: Path) -> Path:
    n, cand = 1, path.with_name(path.name + ".old")
    while cand.exists() or cand.is_symlink():
        n += 1
        cand = path.with_name(f"{path.name}.old-{n}")
    return cand


class Staging:
    """``with Staging(out, verb) as st:`` write files into ``st.dir``; on a clean exit each is
    moved into ``out`` with an atomic rename, in the order written (so put the manifest last),
    and a record of the run is left beside them; on an error, Ctrl-C or SIGTERM nothing in
    ``out`` changes.

    What is replaced: regular files, and folders the previous run of the same verb wrote (its
    record lists them); a folder of anyone else's in the way is renamed to ``NAME.old``, never
    deleted.  Files the previous run of the same verb wrote and this one does not are removed,
    so the folder holds one run, not a mix."""

    def __init__(self, out, verb: str):
        self.out = check_out_dir(out)
        self.verb = verb
        self.dir: Path | None = None
        self.order: list[str] = []

    def __enter__(self):
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.out))
        except OSError as exc:
            raise UsageError(f"--out {self.out}: cannot create it ({exc.strerror}); "
                             "choose another folder with --out") from None
        return self

    def path(self, name: str) -> Path:
        if name not in self.order:
            self.order.append(name)
        return self.dir / name

    def _commit(self) -> None:
        old = _record(self.out)
        ours = set(old["files"]) if old and old["verb"] == self.verb else set()
        written = [name for name in self.order if (self.dir / name).exists()]
        for name in written:
            src, dst = self.dir / name, self.out / name
            # A rename replaces a file with a file; a folder on either side is in the way.
            if (dst.exists() or dst.is_symlink()) and (_is_dir(dst) or src.is_dir()):
                if name in ours:
                    _remove(dst)
                else:
                    moved = _aside(dst)
                    dst.rename(moved)
                    print(f"host: {dst} was in the way; kept it as {moved}", file=sys.stderr)
            os.replace(src, dst)
        for name in sorted(ours - set(written)):
            _remove(self.out / name)
        atomic_write_json(self.out / RECORD, {
            "verb": self.verb, "files": written,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def __exit__(self, exc_type, exc, tb):
        # The renames run with Ctrl-C / SIGTERM held back, so the folder is either the old run
        # or the new one; a signal that came meanwhile is delivered right after.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
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
