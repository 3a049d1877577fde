"""A change to the preprocessing checked on scenes nobody has looked at: clips of new seeds.

Each round of issue 13 chose its constants on the scenes benchmark's clips (``benchmarks.scenes``),
so those clips flatter the round that tuned on them.  This makes clips of the same kinds from a
seed given on the command line (pick one never used before; the README lists those used) and
scores a reference commit's preprocessing (read from git, as ``benchmarks.preprocess_same`` does)
and today's on the same frames, frame by frame, with the shipped model:

- single digits, read in the digit mode (300 frames each, no blank frame): the held-out writers'
  photos, those glyphs redrawn with fine pens, MNIST test digits redrawn with fine pens;
- blank scenes (400 frames) and hostile blank scenes (400: shadows and the sheet's edge in most
  frames, rulings, stray marks, glare), right when "no digit";
- numbers of 2-8 digits, read in the number mode (200 frames each, a tenth blank): the held-out
  writers, MNIST digits, and both redrawn with fine pens.

Per clip: frames right by each, and the frames today's code gained and lost (a total that does
not move can hide both).  Exit 0; the figures are for the reader to weigh.

    MNIST_DIR=../shared/data/mnist python -m benchmarks.new_seeds --ref de491bf --seed 31000 [--colour]

Writes benchmarks/results/<machine>/new_seeds-<seed>.json; the clips stay in runs/new-seeds-<seed>/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import PHOTOS, ROOT, results_dir, write_summary
from benchmarks.preprocess_same import MODULES
from benchmarks.scenes import design_and_held_out, fine_pens, load_from_git, read_clip, read_frame
from device.errors import UsageError
from device.glyphs import mnist_glyphs, photo_glyphs
from device.preprocess import PreprocessOptions
from device.runtime import Model
from device.scenes import HOSTILE, SceneOptions, make_scene_clip


def plan(seed: int, quick: bool) -> list[tuple]:
    """(clip name, glyph source, frames, mode, blank_every, scene options, pen seed or None) per clip."""
    n1, nb, nn = (30, 40, 20) if quick else (300, 400, 200)
    return [("digit-held", "held", n1, "digit", 0, None, None),
            ("pens-held", "held", n1, "digit", 0, None, seed + 1),
            ("pens-mnist", "mnist", n1, "digit", 0, None, seed + 2),
            ("blank", "mnist", nb, "digit", 1, None, None),
            ("blank-hostile", "mnist", nb, "digit", 1, SceneOptions(**HOSTILE), None),
            ("number-held", "held", nn, "number", 10, None, None),
            ("number-mnist", "mnist", nn, "number", 10, None, None),
            ("pens-number-held", "held", nn, "number", 10, None, seed + 3),
            ("pens-number-mnist", "mnist", nn, "number", 10, None, seed + 4)]


def make_clips(work: Path, seed: int, quick: bool) -> list[tuple[str, str, Path]]:
    """The clips of ``seed`` in ``work`` (made when missing): (name, mode, path)."""
    from host.data import load_mnist

    photos = photo_glyphs(PHOTOS)
    held = [g for g in photos if g.source in design_and_held_out(photos)[1]]
    mnist = None
    out = []
    for k, (name, source, n, mode, blank_every, opts, pen) in enumerate(plan(seed, quick)):
        path = work / f"{name}.avi"
        if not Path(str(path) + ".labels.json").is_file():
            if source == "mnist" and mnist is None:
                m = load_mnist()
                mnist = mnist_glyphs(m.x_test[:2000], m.y_test[:2000])
            glyphs = held if source == "held" else mnist
            if pen is not None:
                glyphs = fine_pens(glyphs, pen)
            make_scene_clip(path, glyphs, n, mode, blank_every=blank_every, seed=seed + 10 + k,
                            **({"opts": opts} if opts else {}))
        out.append((name, mode, path))
    return out


def compare(ref, clips: list[tuple[str, str, Path]], colour: bool = False) -> dict:
    """``colour``: the frames full-size in BGR, as a USB camera delivers them."""
    model, opts = Model(None, threads=1), PreprocessOptions()
    out = {}
    for name, mode, path in clips:
        frames, doc = read_clip(path, colour=colour)
        r = {"frames": len(frames), "ref": 0, "new": 0, "gained": [], "lost": []}
        for i, (f, lab) in enumerate(zip(frames, doc["labels"])):
            want = lab if mode == "digit" else (lab or "")
            a = read_frame(model, f, mode, opts, ref) == want
            b = read_frame(model, f, mode, opts) == want
            r["ref"] += a
            r["new"] += b
            if a != b:
                r["gained" if b else "lost"].append(i)
        out[name] = r
        print(f"{name:18s} {len(frames):4d} frames  ref {r['ref']:4d}  today {r['new']:4d}  "
              f"(+{len(r['gained'])} / -{len(r['lost'])})", flush=True)
    return out


def _seed(text: str) -> int:
    """A seed: an integer from 0 (numpy's generators take no negative seed)."""
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer from 0, got {text!r}")
    return v


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the commit to compare with")
    ap.add_argument("--seed", type=_seed, required=True, help="the clips' seed (one never used before)")
    ap.add_argument("--quick", action="store_true", help="a tenth of the frames (a smoke run)")
    ap.add_argument("--work", default=None, help="where the clips go (default runs/new-seeds-<seed>)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--colour", action="store_true",
                    help="read the clips full-size in BGR (a USB camera's frames) instead of the device's reduced "
                         "gray decoding; results in new_seeds-<seed>-colour.json")
    args = ap.parse_args(argv)
    try:
        ref = load_from_git(args.ref, MODULES)
    except subprocess.CalledProcessError:
        print(f"new_seeds: --ref {args.ref}: no device/{MODULES[0]}.py at that commit (a commit of this repository?)",
              file=sys.stderr)
        return 2
    suffix = f"{args.seed}{'-quick' if args.quick else ''}"
    try:
        # (The results folder first: a scoring of minutes is not lost to an unwritable folder.)
        out = results_dir(args.results) / f"new_seeds-{suffix}{'-colour' if args.colour else ''}.json"
        work = Path(args.work or ROOT / "runs" / f"new-seeds-{suffix}")
        work.mkdir(parents=True, exist_ok=True)
        clips = make_clips(work, args.seed, args.quick)
    except (UsageError, OSError) as e:
        print(f"new_seeds: {e}", file=sys.stderr)
        return 2
    res = compare(ref, clips, args.colour)
    measured = {name: {"ref": r["ref"], "new": r["new"], "frames": r["frames"]} for name, r in res.items()}
    write_summary(out, "new_seeds", quick=args.quick, measured=measured,
                  details={"ref": args.ref, "seed": args.seed, "colour": args.colour, "clips": res})
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
