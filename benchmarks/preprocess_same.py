"""Does a change to the preprocessing leave every output as it was?  Today's ``prepare`` and
``prepare_all`` against another commit's (``main`` by default, read from git with the device
modules it imports), over every frame of the scene clips in a folder (the scenes benchmark's
work folder), the camera-like clip there and the dev photos: the same regions, reasons, paths
and lines, and the same model input bytes.  Exit 1 and a list of what differs when anything
does.

    python -m benchmarks.preprocess_same --clips runs/bench-scenes [--ref main]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from benchmarks.harness import PHOTOS
from benchmarks.scenes import load_from_git, read_clip
from device import preprocess

MODULES = ("blobs", "levels", "preprocess")   # the device modules a preprocessing is made of


def frames(clips: Path):
    """(name, frame) over every clip in ``clips`` (the camera-like clip.avi included) and the
    dev photos, as the device and the scenes benchmark read them.  A clip without its labels
    document is one still being written: left out."""
    for path in sorted(p for p in clips.glob("*.avi") if Path(str(p) + ".labels.json").is_file()):
        for i, f in enumerate(read_clip(path)[0]):
            yield f"{path.name}#{i}", f
    for path in sorted(PHOTOS.glob("*.png")):
        yield path.name, cv2.imread(str(path), cv2.IMREAD_COLOR)


def key(p) -> tuple:
    """Everything a Prepared tells the caller (the input as bytes: uint8 before ``to_unit`` maps
    one to one onto these float32 bytes)."""
    return p.region, p.reason, p.path, p.line, None if p.image is None else p.image.tobytes()


def differences(ref, clips: Path) -> tuple[int, list[str]]:
    n, bad = 0, []
    for name, f in frames(clips):
        n += 1
        if key(ref.prepare(f)) != key(preprocess.prepare(f)):
            bad.append(f"{name}: prepare")
        if [key(p) for p in ref.prepare_all(f)] != [key(p) for p in preprocess.prepare_all(f)]:
            bad.append(f"{name}: prepare_all")
    return n, bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", required=True, help="folder of .avi clips (+ .labels.json), read only")
    ap.add_argument("--ref", default="main", help="the commit to compare with (default: main)")
    args = ap.parse_args(argv)
    clips = Path(args.clips)
    if not any(clips.glob("*.avi")):
        print(f"--clips {clips}: no .avi clips there (run benchmarks.scenes to make them)", file=sys.stderr)
        return 2
    n, bad = differences(load_from_git(args.ref, MODULES), clips)
    print("\n".join(bad[:50]))
    print(f"{n} frames, prepare and prepare_all: {len(bad)} differ from {args.ref}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
