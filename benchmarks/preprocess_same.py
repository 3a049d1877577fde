"""Does a change to the preprocessing leave every output as it was?  Today's ``prepare`` and
``prepare_all`` against another commit's (``main`` by default, read from git with the device
modules it imports), over every frame of the scene clips in a folder (the scenes benchmark's
work folder), the camera-like clip there and the dev photos: the same regions, reasons, paths
and lines, and the same model input bytes.  Exit 1 and a list of what differs when anything
does.

``--cost N``: also what the change saves, when the machine is too busy for the scenes
benchmark's cost part: single-digit totals (preprocess + inference + postprocess) on the
camera-like clip against the reference and against the preprocessing before issue 13
(``scenes.BASELINE``), and ``prepare_all`` on the 8-digit number frames against the reference;
each frame run N times by each, interleaved, its least thread CPU time kept (the least of a few
runs leaves out most of what other processes took).  Written to ``preprocess_same.json``.

    python -m benchmarks.preprocess_same --clips runs/bench-scenes [--ref main] [--cost 7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import cv2

from benchmarks.harness import PHOTOS, ROOT, least_times, results_dir, single_digit, write_summary
from benchmarks.scenes import BASELINE, load_from_git, read_clip
from device import preprocess
from device.runtime import Model
from device.step import postprocess

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


def cost(ref, clips: Path, n: int) -> dict:
    model = Model(None, threads=1)

    def number(prepare_all):
        def run(f):
            found = prepare_all(f)
            if found:
                [postprocess(s) for s in model.predict_batch(np.stack([p.image for p in found]))]
        return run

    clip = read_clip(clips / "clip.avi")[0]
    eight = []   # the 8-digit frames of the number clips, as the scenes benchmark's cost part
    for path in sorted(clips.glob("scenes-number-*.avi")):
        if "quick" not in path.name:
            frames, doc = read_clip(path)
            eight += [f for f, lab in zip(frames, doc["labels"]) if lab and len(lab.replace(" ", "")) == 8]
    base = load_from_git(BASELINE)
    one = least_times({"baseline": single_digit(model, base.prepare), "ref": single_digit(model, ref.prepare), "new": single_digit(model, preprocess.prepare)}, clip, n)
    many = least_times({"ref": number(ref.prepare_all), "new": number(preprocess.prepare_all)}, eight, n)
    return {"repeats": n, "single_digit_camera_like_clip": one, "eight_digit_frames": many,
            "single_p50_vs_baseline": {k: one[k]["p50"] / one["baseline"]["p50"] for k in ("ref", "new")},
            "single_p50_new_vs_ref": one["new"]["p50"] / one["ref"]["p50"],
            "eight_p50_new_vs_ref": many["new"]["p50"] / many["ref"]["p50"],
            "eight_p99_new_vs_ref": many["new"]["p99"] / many["ref"]["p99"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", required=True, help="folder of .avi clips (+ .labels.json), read only")
    ap.add_argument("--ref", default="main", help="the commit to compare with (default: main)")
    ap.add_argument("--cost", type=int, default=0, metavar="N", help="also time both, N runs per frame")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    clips = Path(args.clips)
    if not any(clips.glob("*.avi")):
        print(f"--clips {clips}: no .avi clips there (run benchmarks.scenes to make them)", file=sys.stderr)
        return 2
    ref = load_from_git(args.ref, MODULES)
    n, bad = differences(ref, clips)
    print("\n".join(bad[:50]))
    print(f"{n} frames, prepare and prepare_all: {len(bad)} differ from {args.ref}")
    if args.cost > 0:
        c = cost(ref, clips, args.cost)
        out = results_dir(args.results) / "preprocess_same.json"
        write_summary(out, "preprocess_same", measured={"frames": n, "differing": len(bad)},
                      details={"ref": args.ref, "differences": bad[:50], "cost": c})
        print(f"single digit p50 vs {BASELINE}: {args.ref} {c['single_p50_vs_baseline']['ref']:.3f}x, today "
              f"{c['single_p50_vs_baseline']['new']:.3f}x; today vs {args.ref}: single p50 {c['single_p50_new_vs_ref']:.3f}x, "
              f"8 digits p50 {c['eight_p50_new_vs_ref']:.3f}x p99 {c['eight_p99_new_vs_ref']:.3f}x -> {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
