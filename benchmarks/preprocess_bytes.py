"""Does a frame give the same model inputs on every CPU?  The device preprocessing of the 100
dev photos and of a fixed set of scene frames, through ``prepare`` and ``prepare_all`` (model
inputs as float32 bytes, regions, lines, paths, reasons), plus single OpenCV calls known to
differ between builds, dumped on one machine and compared with another's dump, byte for byte.

    python -m benchmarks.preprocess_bytes frames [--clips runs/bench-scenes]    # once, on x86
    python -m benchmarks.preprocess_bytes dump x86.npz
    QEMU_CPU=cortex-a72 chroot ROOT VENV/bin/python3 -m benchmarks.preprocess_bytes dump arm.npz
    python -m benchmarks.preprocess_bytes compare x86.npz arm.npz [--json OUT]

The frame set (``runs/preprocess-frames.npz``, tens of MB: not in git, ``frames`` rebuilds it
from the scenes benchmark's clips) holds uint8 frames as ``device run`` decodes those clips,
so every machine preprocesses the same bytes and no video decoder is compared (and, from
the first clip of three kinds, every n/10-th frame decoded full-size in colour).  From each
scenes-digit, scenes-number, pens-digit and pens-number clip, and the camera-like clip (whose
frames take the cheap tier): every n/10-th frame, plus up to 3 more that take the fine-pen
path (``prepare`` in digit clips, ``prepare_all`` in number clips) and, in number clips, up to
3 more of 8 digits.  Its sha256 is in every dump; ``compare``
refuses dumps of different sets.

``compare`` lists what differs per item kind and field: nothing of a photo or frame may; the
raw ``cv2_*`` calls show whether that OpenCV build is one that would have moved them (the
reason the preprocessing does its own downscaling, resampling and ink ratio).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

import cv2

from benchmarks.harness import PHOTOS, ROOT
from device.errors import UsageError
from device.levels import halve
from device.preprocess import prepare, prepare_all, resample

FRAMES = ROOT / "runs" / "preprocess-frames.npz"
CLIPS = ("scenes-digit-", "scenes-number-", "pens-digit-", "pens-number-", "clip.")   # clip.avi: camera-like, cheap tier
PER_CLIP, EXTRA = 10, 3
# Colour frames (a USB camera's: full-size BGR, read as luma since round 14 of issue 13): every
# n/10-th frame of the first clip of each of these kinds, decoded full-size.
COLOUR = ("scenes-digit-", "scenes-number-", "clip.")
META = ("machine", "qemu_cpu", "opencv", "numpy", "frame_set")


def fine(frame: np.ndarray, mode: str) -> bool:
    """Does the device's reading of this frame (one digit or a number) take the fine-pen path?"""
    if mode == "digit":
        return prepare(frame).path == "fine"
    return any(p.path == "fine" for p in prepare_all(frame))


def write_frames(clips: Path, out: Path) -> None:
    from benchmarks.scenes import read_clip   # the clips' decoder: needed here only, on x86

    paths = sorted(p for p in clips.glob("*.avi") if p.name.startswith(CLIPS) and not p.stem.endswith("-quick"))
    if not paths:
        raise UsageError(f"--clips {clips}: no scene clips there: run python -m benchmarks.scenes first")
    picked = {}
    for path in paths:
        frames, doc = read_clip(path)
        step = -(-len(frames) // PER_CLIP)
        rest = [i for i in range(len(frames)) if i % step]
        thin = [i for i in rest if fine(frames[i], doc.get("mode", "digit"))][:EXTRA]
        long = [i for i in rest if len(str(doc["labels"][i] or "").replace(" ", "")) == 8][:EXTRA]
        for i in sorted(set(range(0, len(frames), step)) | set(thin) | set(long)):
            picked[f"{path.name}#{i}"] = frames[i]
        print(f"{path.name}: {len(frames)} frames, every {step}th, +{len(thin)} fine-pen path {thin}, "
              f"+{len(long)} of 8 digits {long}")
    for kind in COLOUR:
        path = next(p for p in paths if p.name.startswith(kind))
        frames = read_clip(path, colour=True)[0]
        for i in range(0, len(frames), -(-len(frames) // PER_CLIP)):
            picked[f"{path.name}#{i}:colour"] = frames[i]
        print(f"{path.name}: {PER_CLIP} colour frames {frames[0].shape}")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **picked)
    print(f"{out}: {len(picked)} frames, {out.stat().st_size / 1e6:.1f} MB")


def outputs(frame: np.ndarray) -> dict[str, np.ndarray]:
    """Everything ``prepare`` and ``prepare_all`` give the caller, as arrays (inputs as the
    float32 the model gets; no input = an empty array)."""
    one, every = prepare(frame), prepare_all(frame)
    return {"input": np.zeros((0, 28, 28), np.float32) if one.image is None else one.image,
            "region": np.array(one.region or (), np.int64), "path": np.array([one.path, one.reason]),
            "all_inputs": np.array([p.image for p in every], np.float32).reshape(-1, 28, 28),
            "all_regions": np.array([p.region for p in every], np.int64).reshape(-1, 4),
            "all_lines": np.array([p.line for p in every], np.int64),
            "all_paths": np.array([p.path for p in every] or [""])}


def dump(out: str, frames: Path) -> None:
    if not frames.is_file():
        raise UsageError(f"no frame set at {frames}: make it with python -m benchmarks.preprocess_bytes frames")
    res = {}
    for f in sorted(PHOTOS.glob("*.png")):
        res.update({f"photo:{f.name}|{k}": v for k, v in outputs(cv2.imread(str(f), cv2.IMREAD_COLOR)).items()})
    digest = hashlib.sha256()
    with np.load(frames) as fs:
        for name in sorted(fs.files):
            frame = fs[name]
            digest.update(name.encode() + frame.tobytes())
            res.update({f"frame:{name}|{k}": v for k, v in outputs(frame).items()})
        # Noise (round 14: a seed must stand out of the grain): frames of pure noise and every
        # 40th frame of the set with noise added, integers drawn from numpy's PCG64 (the same
        # on every machine; no float math that a libm could round differently).
        noise = np.random.default_rng(14)
        for i, shape in enumerate(((60, 80), (240, 320), (480, 640, 3)) * 2):
            res.update({f"noise:pure-{i}|{k}": v
                        for k, v in outputs(noise.integers(0, 256, shape, dtype=np.uint8)).items()})
        for name in sorted(fs.files)[::40]:
            f = fs[name]
            g = np.clip(f.astype(np.int16) + noise.integers(-24, 25, f.shape), 0, 255).astype(np.uint8)
            res.update({f"noise:{name}|{k}": v for k, v in outputs(g).items()})
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (121, 161), dtype=np.uint8)
    b = rng.integers(1, 256, (121, 161), dtype=np.uint8)
    res.update({"cv2_area_half_odd": cv2.resize(a, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
                "cv2_linear_down": cv2.resize(a, (37, 29), interpolation=cv2.INTER_LINEAR),
                "cv2_divide": cv2.divide(a, b, scale=255),
                "cv2_bgr2gray": cv2.cvtColor(rng.integers(0, 256, (121, 161, 3), dtype=np.uint8), cv2.COLOR_BGR2GRAY),
                "halve_odd": halve(a), "resample_down": resample(a[:61, :43], 14, 20),
                "resample_up": resample(a[:11, :7], 13, 20)})
    meta = {"machine": platform.machine(), "qemu_cpu": os.environ.get("QEMU_CPU", ""), "opencv": cv2.__version__,
            "numpy": np.__version__, "frame_set": digest.hexdigest()}
    np.savez_compressed(out, **{k: np.array(v) for k, v in meta.items()}, **res)
    print(f"{out}: {meta}, {len(res)} arrays")


def compare(a: str, b: str) -> dict:
    with np.load(a) as A, np.load(b) as B:
        ma, mb = ({k: str(X[k]) for k in META} for X in (A, B))
        if ma["frame_set"] != mb["frame_set"]:
            raise UsageError(f"{a} and {b} are dumps of different frame sets: dump both from the same frames file")
        if sorted(A.files) != sorted(B.files):
            raise UsageError(f"{a} and {b} hold different items: dump both with the same code")
        keys = [k for k in A.files if k not in META]
        differ = [k for k in keys if not np.array_equal(A[k], B[k])]
        items = {kind: sorted({k.split("|")[0] for k in keys if k.startswith(kind + ":")})
                 for kind in ("photo", "frame", "noise")}
        paths = {kind: [str(A[f"{n}|path"][0]) for n in v] for kind, v in items.items()}
        numbers = [len(A[f"{n}|all_lines"]) for n in items["frame"]]
        bad = {kind: {} for kind in items}       # kind -> field -> the items where it differs
        moved = set()
        for k in differ:
            if "|" in k:
                item, field = k.split("|")
                kind, name = item.split(":", 1)
                bad[kind].setdefault(field, []).append(name)
                moved.add(item)
        return {"a": ma, "b": mb,
                "items": {kind: len(v) for kind, v in items.items()},
                "identical": {kind: sum(i not in moved for i in v) for kind, v in items.items()},
                "prepare_paths": {kind: {p: v.count(p) for p in sorted(set(v))} for kind, v in paths.items()},
                "noise_read": sum(len(A[f"{n}|all_lines"]) > 0 or A[f"{n}|input"].size > 0 for n in items["noise"]),
                "frame_paths": {
                                "prepare_all fine": sum(str(A[f"{n}|all_paths"][0]) == "fine" for n in items["frame"]),
                                "prepare_all 8+ digits": sum(n >= 8 for n in numbers)},
                "differing": bad,
                "other_differing": [k for k in differ if "|" not in k]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    f = sub.add_parser("frames", help="write the frame set from the scene clips")
    f.add_argument("--clips", type=Path, default=ROOT / "runs" / "bench-scenes")
    f.add_argument("--out", type=Path, default=FRAMES)
    d = sub.add_parser("dump")
    d.add_argument("out")
    d.add_argument("--frames", type=Path, default=FRAMES)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--json", help="also write the comparison here")
    args = ap.parse_args(argv)
    try:
        if args.verb == "frames":
            write_frames(args.clips, args.out)
            return 0
        if args.verb == "dump":
            dump(args.out, args.frames)
            return 0
        r = compare(args.a, args.b)
    except UsageError as exc:
        print(f"preprocess_bytes: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")
    print(json.dumps(r, indent=1))
    return 1 if any(r["differing"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
