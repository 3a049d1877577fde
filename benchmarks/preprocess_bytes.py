"""Does a frame give the same model input on every CPU?  The device preprocessing of the 100
dev photos (28x28 inputs and digit regions) plus single OpenCV calls known to differ between
builds, dumped on one machine and compared with another's dump, byte for byte.

    python -m benchmarks.preprocess_bytes dump x86.npz
    QEMU_CPU=cortex-a72 PYTHONPATH=ROOT/.../site-packages qemu-aarch64-static -L ROOT \\
        ROOT/usr/bin/python3 -m benchmarks.preprocess_bytes dump arm.npz     # an arm64 Debian root
    python -m benchmarks.preprocess_bytes compare x86.npz arm.npz [--json OUT]

``compare`` lists what differs: photo inputs and regions must not; the raw ``cv2_*`` calls
show whether that OpenCV build is one that would have moved them (the reason the
preprocessing does its own downscaling, resampling and ink ratio).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

import cv2

from benchmarks.harness import PHOTOS
from device.levels import halve
from device.preprocess import prepare, resample


def dump(out: str) -> None:
    res = {}
    for f in sorted(PHOTOS.glob("*.png")):
        p = prepare(cv2.imread(str(f), cv2.IMREAD_COLOR))
        res["photo:" + f.name] = np.zeros((28, 28), np.uint8) if p.image is None else np.round(p.image * 255).astype(np.uint8)
        res["region:" + f.name] = np.array(p.region or (0, 0, 0, 0))
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (121, 161), dtype=np.uint8)
    b = rng.integers(1, 256, (121, 161), dtype=np.uint8)
    res.update({"cv2_area_half_odd": cv2.resize(a, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
                "cv2_linear_down": cv2.resize(a, (37, 29), interpolation=cv2.INTER_LINEAR),
                "cv2_divide": cv2.divide(a, b, scale=255),
                "halve_odd": halve(a), "resample_down": resample(a[:61, :43], 14, 20),
                "resample_up": resample(a[:11, :7], 13, 20)})
    np.savez(out, machine=np.array(platform.machine()), opencv=np.array(cv2.__version__),
             numpy=np.array(np.__version__), **res)
    print(f"{out}: {platform.machine()}, OpenCV {cv2.__version__}, numpy {np.__version__}, {len(res)} arrays")


def compare(a: str, b: str) -> dict:
    A, B = np.load(a), np.load(b)
    keys = [k for k in A.files if k not in ("machine", "opencv", "numpy")]
    differ = [k for k in keys if not np.array_equal(A[k], B[k])]
    return {"a": {k: str(A[k]) for k in ("machine", "opencv", "numpy")},
            "b": {k: str(B[k]) for k in ("machine", "opencv", "numpy")},
            "photo_inputs_differing": [k[6:] for k in differ if k.startswith("photo:")],
            "regions_differing": [k[7:] for k in differ if k.startswith("region:")],
            "other_differing": [k for k in differ if ":" not in k],
            "photos": sum(k.startswith("photo:") for k in keys)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    sub.add_parser("dump").add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--json", help="also write the comparison here")
    args = ap.parse_args(argv)
    if args.verb == "dump":
        dump(args.out)
        return 0
    r = compare(args.a, args.b)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")
    print(json.dumps(r, indent=1))
    return 1 if r["photo_inputs_differing"] or r["regions_differing"] else 0


if __name__ == "__main__":
    sys.exit(main())
