"""The golden set's host side: build ``device/data/golden.npz`` once, and record any model's
expected predictions on it (with the device runtime, on this machine) for its manifest.

    python -m host.golden build [--photos DIR] [--out device/data/golden.npz]
    python -m host.golden stamp MODEL.tflite      # add/refresh ``golden`` in MODEL.json
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from device import golden
from device.preprocess import to_unit
from device.errors import UsageError
from device.fsio import atomic_write_bytes, atomic_write_json
from device.manifest import load_manifest, manifest_path_for

N_FIRST = 2000     # MNIST test images 0..1999, the plain part of the set
N_HARD = 100       # plus the hardest of the rest: where a changed kernel would flip a prediction


def expectations(tflite_path) -> dict:
    """The ``golden`` manifest field for the model at ``tflite_path``: one thread, XNNPACK on,
    the device runtime, exactly as ``device golden`` runs it by default."""
    from device.runtime import Model

    return golden.expectations(Model(tflite_path, verify=False), golden.load_set())


def _margins(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Score of the true class minus the best other score (negative: misread)."""
    out = np.empty(len(x))
    for i, img in enumerate(x):
        s = model.predict(to_unit(img))
        other = np.delete(s, y[i])
        out[i] = s[y[i]] - other.max()
    return out


def photo_inputs(photos_dir: Path) -> tuple[list[np.ndarray], list[int], list[str]]:
    """The 28x28 inputs ``device.preprocess.prepare`` makes of the labelled photos (photos in
    which it finds no digit are left out: they have no model input)."""
    from device.labels import read_labels
    from device.preprocess import prepare
    from device.sources.images import ImageRefused, read_image

    xs, ys, names = [], [], []
    for name, label in sorted(read_labels(str(photos_dir / "labels.csv")).items()):
        try:
            img = read_image(photos_dir / name)
        except ImageRefused as exc:
            raise UsageError(f"cannot read photo {photos_dir / name}: {exc}") from None
        prep = prepare(img)
        if prep.image is None:
            continue
        u8 = np.rint(prep.image * 255).astype(np.uint8)
        assert np.array_equal(to_unit(u8), prep.image), "uint8 round trip must be exact"
        xs.append(u8)
        ys.append(label)
        names.append(name)
    return xs, ys, names


def build_set(data_dir: str | None, photos_dir: Path, out: Path, reference_model=None) -> golden.GoldenSet:
    """MNIST test 0..N_FIRST-1, the N_HARD lowest-margin others (by ``reference_model``,
    default the shipped one), then the photo inputs; written as a compressed npz."""
    from device.runtime import Model
    from host.data import load_mnist

    data = load_mnist(data_dir)
    model = Model(reference_model, verify=False)
    rest = np.arange(N_FIRST, len(data.x_test))
    margins = _margins(model, data.x_test[rest], data.y_test[rest])
    hard = np.sort(rest[np.argsort(margins, kind="stable")[:N_HARD]])
    idx = np.concatenate([np.arange(N_FIRST), hard])
    px, py, pnames = photo_inputs(photos_dir)
    x = np.concatenate([data.x_test[idx].astype(np.uint8), np.stack(px)])
    y = np.concatenate([data.y_test[idx].astype(np.uint8), np.array(py, np.uint8)])
    source = np.array([f"mnist-test:{i}" for i in idx] + [f"photo:{n}" for n in pnames])
    buf = io.BytesIO()
    np.savez_compressed(buf, version=np.int64(golden.GOLDEN_VERSION), x=x, y=y,
                        n_mnist=np.int64(len(idx)), source=source)
    atomic_write_bytes(out, buf.getvalue())
    return golden.load_set(out)


def stamp(tflite_path) -> dict:
    """Add (or refresh) the ``golden`` field of the manifest beside ``tflite_path``."""
    mpath = manifest_path_for(tflite_path)
    manifest = load_manifest(mpath)
    manifest["golden"] = expectations(tflite_path)
    atomic_write_json(mpath, manifest)
    return manifest["golden"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host.golden", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    b = sub.add_parser("build", help="(re)build the golden set")
    b.add_argument("--data", help="MNIST folder (default: $MNIST_DIR)")
    b.add_argument("--photos", default="../shared/data/digit-photos", help="labelled photo folder")
    b.add_argument("--out", default=str(golden.GOLDEN))
    s = sub.add_parser("stamp", help="record a model's expectations in its manifest")
    s.add_argument("model")
    args = ap.parse_args(argv)
    try:
        if args.verb == "build":
            gs = build_set(args.data, Path(args.photos), Path(args.out))
            print(f"{args.out}: {len(gs)} inputs ({gs.n_mnist} MNIST, {len(gs) - gs.n_mnist} photos), "
                  f"{Path(args.out).stat().st_size:,} bytes, set sha256 {gs.sha256[:12]}")
        else:
            g = stamp(args.model)
            print(f"{manifest_path_for(args.model)}: golden {g['images']} predictions, "
                  f"outputs {g['outputs_sha256'][:12]} ({g['made_with']})")
    except UsageError as exc:
        print(f"host: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
