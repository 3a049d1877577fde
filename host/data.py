"""MNIST loading with checks, from (in order) ``--data DIR`` / ``MNIST_DIR``, the keras cache,
then the keras download.

No TensorFlow here except for the last resort (the keras download), so the loaders are fast to
test.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.errors import UsageError

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
COUNTS = {"x_train": 60000, "y_train": 60000, "x_test": 10000, "y_test": 10000}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
KERAS_CACHE = Path.home() / ".keras" / "datasets" / "mnist.npz"

HOW_TO = ("point --data or MNIST_DIR at a folder with the four MNIST IDX files (.gz or raw) or "
          "mnist.npz, put mnist.npz in ~/.keras/datasets/, or go online for the keras download")


@dataclass
class Mnist:
    x_train: np.ndarray  # (N, 28, 28) uint8
    y_train: np.ndarray  # (N,) uint8
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def _read_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        return raw
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UsageError(f"{path}: cannot read ({exc}); the file is corrupt or truncated, "
                         f"download it again") from None


def parse_idx(data: bytes, kind: str, name: str) -> np.ndarray:
    """Parse an IDX image (magic 2051) or label (2049) file and check its header."""
    want = IMAGE_MAGIC if kind == "images" else LABEL_MAGIC
    if len(data) < 8:
        raise UsageError(f"{name}: too short to be an IDX file; download it again")
    magic, count = struct.unpack(">II", data[:8])
    if magic != want:
        raise UsageError(f"{name}: bad magic number {magic} (expected {want}: IDX {kind}); "
                         "is this the right file?")
    if kind == "images":
        rows, cols = struct.unpack(">II", data[8:16])
        if (rows, cols) != (28, 28):
            raise UsageError(f"{name}: images are {rows}x{cols}, not 28x28")
        body, shape = data[16:], (count, 28, 28)
    else:
        body, shape = data[8:], (count,)
    if len(body) != int(np.prod(shape)):
        raise UsageError(f"{name}: header says {count} items but the file holds {len(body)} bytes "
                         "of data; the file is truncated, download it again")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for cand in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (folder / cand).is_file():
            return folder / cand
    return None


def load_idx_dir(folder: Path) -> Mnist:
    arrays = {}
    for key, stem in FILES.items():
        path = _find(folder, stem)
        if path is None:
            raise UsageError(f"{folder}: {stem}[.gz] is missing; {HOW_TO}")
        kind = "images" if key.startswith("x") else "labels"
        arrays[key] = parse_idx(_read_maybe_gz(path), kind, str(path))
    return _checked(arrays, str(folder))


def load_npz(path: Path) -> Mnist:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in FILES}
    except (OSError, ValueError, KeyError, zlib.error, EOFError) as exc:
        raise UsageError(f"{path}: not a readable keras mnist.npz ({exc}); delete it and "
                         "download again") from None
    return _checked(arrays, str(path))


def _checked(arrays: dict, source: str) -> Mnist:
    for key, n in COUNTS.items():
        a = arrays[key]
        if a.shape[0] != n:
            raise UsageError(f"{source}: {key} has {a.shape[0]} items, expected {n}; the data "
                             "set is incomplete")
        if key.startswith("x") and a.shape[1:] != (28, 28):
            raise UsageError(f"{source}: {key} has shape {a.shape[1:]}, expected (28, 28)")
        if key.startswith("y") and (a.min() < 0 or a.max() > 9):
            raise UsageError(f"{source}: {key} has labels outside 0-9; the file is corrupt")
    return Mnist(*(np.asarray(arrays[k], dtype=np.uint8) for k in FILES), source=source)


def load_mnist(data: str | os.PathLike | None = None) -> Mnist:
    """Load MNIST from ``data`` (a folder or an .npz), else ``$MNIST_DIR``, else the keras
    cache, else the keras download.  Raises UsageError naming the three options."""
    where = data or os.environ.get("MNIST_DIR")
    if where:
        p = Path(where).expanduser()
        if p.is_file():
            return load_npz(p)
        if p.is_dir():
            if (p / "mnist.npz").is_file() and _find(p, FILES["x_train"]) is None:
                return load_npz(p / "mnist.npz")
            return load_idx_dir(p)
        raise UsageError(f"MNIST data {p} does not exist; {HOW_TO}")
    if KERAS_CACHE.is_file():
        return load_npz(KERAS_CACHE)
    return _keras_download()


def _keras_download() -> Mnist:
    from host import tfenv  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
    import tf_keras

    try:
        (xtr, ytr), (xte, yte) = tf_keras.datasets.mnist.load_data()
    except Exception as exc:  # network errors come in many types
        raise UsageError(f"MNIST not found locally and the keras download failed "
                         f"({type(exc).__name__}); {HOW_TO}") from None
    return _checked({"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}, str(KERAS_CACHE))
