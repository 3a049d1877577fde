"""Benchmark for issue 13: reading digits in real scenes (shadows, paper edges, desks, ruled
paper, stray marks, small digits, several digits, numbers).

On the machine it runs on, one thread, the shipped model.  Every frame goes through the same
decode as ``device run`` (MJPG clips read back packet by packet, reduced grayscale at the Pi
camera's lores size, 320x240):

1. Scene clips (``device.scenes``) of the real dev photos, one per writer, single digits and
   numbers (2-8 digits, one or two lines), a tenth of the frames blank; a clip of MNIST test
   digits in the same scenes; a clip of blank scenes only.
2. Writers held out.  The preprocessing was designed (rounds 1 and 2 of the issue) looking at
   the MNIST scenes and the scenes of half the writers only (``DESIGN``: every other writer in
   name order); the other half were not looked at.  Round 3 looked at the held-out writers'
   failures by kind (a hairline pen; an open 4 read as a 1) and built each fix on generated
   data instead (fine pens drawn from the design writers' and MNIST glyphs, item 8; drawn open
   4s in the tests), so the held-out figure is no longer blind: item 8's held-out writers'
   fine-pen clips are the check.  Round 4 did the same: it looked at the hairline writer's
   sheet (its pale rows break into pieces) and at the design writers' number failures, and
   built each fix on drawn frames in the tests and on the design writers' and MNIST fine-pen
   and scene clips, the blank scenes guarding.  Round 5 looked at the failures of all writers
   by kind; its two changes, both in the number mode (a bold digit level 0 sees in pieces is
   one digit; a lone mark on a line of its own is no digit), came from the dev photos and the
   single-digit clips read in the number mode.  Round 6 looked at the hairline writer's sheet
   (a 5 whose broken bowl the closer look did not bridge) and at blank scenes generated with
   shadows and the sheet's edge in most frames (the tests' hostile options), where a step of
   the paper level was read as a digit; the scene clips guarded both changes.  Round 7 looked
   at the hairline writer's single-digit failures by kind (a pale line level 0 saw whole, too
   wide for the closer look under motion blur; that change was built on the design writers'
   and MNIST fine-pen clips, generated blank scenes guarding) and at one held-out writer's
   (z-yoscovits) number failures (a digit level 0 saw in pieces in line with the others; that
   change was checked on number clips of new scenes, seeds never scored before).  Round 8
   changed the cost alone (every output identical to round 7's on these clips).  Round 9
   looked at the design writers' and MNIST fine-pen clips' frames where nothing was found,
   by kind (dim light's grain in the closer look's copy, a line under the threshold), and
   chose the smoothed look's constants there, the blank and generated hostile blank scenes
   guarding (the held-out clips' totals were printed beside each trial; no held-out frame
   was looked at).  Round 10 looked at the hairline writer's (held-out) failures by kind: a 0
   whose top and bottom fell under the threshold (its sides two blobs), a digit as pale as the
   rulings it touches (one blob with them).  Both fixes were built on drawn and generated frames
   (the tests), their constants chosen on all scene clips' totals, and checked on scene clips of
   new seeds generated after the constants were set.  Round 11 looked at the hairline
   writer's (held-out) frames where nothing was found, by kind: on ruled paper the smoothed
   look's grain statistic lands on the rulings (its gains are in the fine-pen clips).  The fix's constants were chosen on all scene
   clips' totals (held-out ones included), the test is built on generated frames, and it was
   checked on scene clips of new seeds.  Round 12 looked at the digits missing from the
   held-out writers' numbers, by kind (broken or paler than the threshold, most at a line's
   ends), and chose the new look's constants on the design writers' and MNIST number clips
   (the held-out clips' totals printed beside each trial); each of its three steps checked on
   scene clips of a new seed.  Headline:
   two thresholds chosen from a small grid on the design writers + MNIST scenes, then the
   held-out writers scored with them.  Also 5 folds of 2 writers (thresholds chosen on the
   other 8 + MNIST scenes), pooled: these folds score design writers too.
3. The existing camera-like MNIST clip (``device.synth``, as ``benchmarks/device_loop.py``)
   and the 100 dev photos one by one (in the digit mode, and in the number mode: one digit
   each, nothing else).
4. A 3-3-3-1 sheet (rows 012/345/678/9) of each writer's photos.
5. Before: the previous round's preprocessing (``BEFORE``, read from git) on the same frames.
6. Cost, interleaved in one process so the ratios share the machine's load: per-frame total
   (preprocess + inference + postprocess) of the preprocessing before issue 13 (``BASELINE``,
   read from git) against today's, frame by frame, per clip kind (the camera-like clip is the
   typical frame), with how often the full analysis ran; 8-digit frames through
   ``prepare_all`` + ``Model.predict_batch`` interleaved with single-digit frames, wall and
   thread CPU time (CPU time leaves out the time the scheduler gave other processes on this
   shared machine); one batched invoke against one invoke per digit, N = 1..16.  The load
   average is recorded.
7. ``device run`` (a separate process) over a scene clip: peak RSS and its per-frame
   accuracy from ``--frames-out``.
8. Fine pens: the glyphs of the design writers, of the held-out writers and of MNIST digits
   redrawn with a ballpoint (``device.glyphs.with_pen``: 0.8-2 % of the digit's height wide,
   55-100 % opaque, black or blue), single digits and numbers in the same scenes.
9. Colour (round 14): the held-out writers' clips and the blank scenes read as a USB camera
   delivers frames (full-size BGR through OpenCV, not the reduced gray decoding of item 1),
   today's preprocessing against the previous round's, and the single-digit cost of the
   camera-like clip's frames in colour.
10. Noise (round 14): the held-out writers' single-digit clips and the blank scenes with
   Gaussian sensor noise added to the decoded frames (sigma 6 and 12 of 255), and frames of pure
   noise, which hold no digit; today's preprocessing against the previous round's.

Writes benchmarks/results/<machine>/scenes.json and scenes.md (+ the ``device run`` result).
    MNIST_DIR=../shared/data/mnist python -m benchmarks.scenes [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cv2

from benchmarks.harness import PHOTOS, ROOT, least_times, results_dir, single_digit, write_summary
from device.fsio import atomic_write_bytes
from device.preprocess import DEFAULT, PreprocessOptions, prepare, prepare_all
from device.runtime import Model
from device.glyphs import mnist_glyphs, photo_glyphs, with_pen
from device.scenes import SceneOptions, make_scene_clip, render_scene
from device.sources.video import VideoFile
from device.step import postprocess
from device.synth import make_clip
from device.system import machine_info
BASELINE = "5ae04b5"   # main before issue 13: the preprocessing whose cost is the reference
BEFORE = "178d84a"     # main after round 13 of issue 13: the "before" of round 14
BEFORE_NAME = "round 13"
TARGETS = {"scene_photos_accuracy": 0.98, "blank_no_digit": 0.97, "mnist_clip_accuracy": 0.99,
           "photos_accuracy": 0.99, "numbers_exact": 0.95, "numbers_per_digit": 0.99,
           "total_p50_vs_baseline": 1.1, "total_p50_vs_inference_stretch": 2.0,
           "eight_digit_total_p99_ms": 1.5, "peak_rss_mb": 80}
GRID = {"min_contrast": (32, 40, 48), "thick_contrast": (90, 110, 130)}
SHEET = ([0, 1, 2], [3, 4, 5], [6, 7, 8], [9])
PLAIN = SceneOptions(size=(480, 640), p_edge=0, p_shadow=0, p_ruled=0, p_squared=0, p_stray=0, p_spot=0,
                     p_glare=0, p_motion=0, p_lowlight=0, p_border=0)


def read_clip(path: Path, colour: bool = False) -> tuple[list[np.ndarray], dict]:
    """Frames exactly as ``device run --source`` gets them, and the labels document.
    ``colour``: full-size BGR frames instead, as a USB camera (OpenCV, V4L2) delivers them."""
    doc = json.loads(Path(str(path) + ".labels.json").read_text())
    with VideoFile(str(path), fast_decode=not colour) as src:
        return [f.image for f in src.frames()], doc


def edit_distance(a: str, b: str) -> int:
    d = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, cb in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (ca != cb))
    return d[-1]


def read_frame(model: Model, frame, mode: str, opts, pre=None):
    """What the device reads: a digit (or None), or the number's text ("" for none).
    ``pre``: another preprocessing module (``prepare``, ``prepare_all``) than today's."""
    if mode == "digit":
        p = (pre.prepare if pre else prepare)(frame, opts)
        return None if p.image is None else postprocess(model.predict(p.image))[0]
    found = (pre.prepare_all if pre else prepare_all)(frame, opts)
    if not found:
        return ""
    preds = model.predict_batch(np.stack([p.image for p in found])).argmax(axis=1)
    lines: dict[int, str] = {}
    for p, k in zip(found, preds):
        lines[p.line] = lines.get(p.line, "") + str(int(k))
    return " ".join(lines[k] for k in sorted(lines))


def score(model, frames, doc, mode, opts, pre=None) -> dict:
    """Per-frame scores of one clip: digit frames right, blank frames "no digit"; for numbers
    also the exact-number rate and per-digit accuracy (digits matched in an optimal alignment);
    and per condition tag."""
    rows = []
    for f, lab, rec in zip(frames, doc["labels"], doc["records"]):
        got = read_frame(model, f, mode, opts, pre)
        if lab is None:
            rows.append({"blank": True, "ok": got in (None, ""), "tags": rec["tags"]})
        elif mode == "digit":
            rows.append({"blank": False, "ok": got == lab, "tags": rec["tags"], "digits": 1, "right": int(got == lab)})
        else:
            truth, flat = lab.replace(" ", ""), got.replace(" ", "")
            rows.append({"blank": False, "ok": got == lab, "tags": rec["tags"], "digits": len(truth),
                         "right": max(0, len(truth) - edit_distance(flat, truth))})
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    digit = [r for r in rows if not r["blank"]]
    blank = [r for r in rows if r["blank"]]
    tags = sorted({t for r in digit for t in r["tags"]})
    out = {"frames": len(digit), "correct": sum(r["ok"] for r in digit),
           "digits": sum(r["digits"] for r in digit), "digits_right": sum(r["right"] for r in digit),
           "blank_frames": len(blank), "blank_ok": sum(r["ok"] for r in blank),
           "by_tag": {t: [sum(r["ok"] for r in digit if t in r["tags"]), sum(t in r["tags"] for r in digit)]
                      for t in tags}}
    out["accuracy"] = out["correct"] / max(1, out["frames"])
    out["per_digit"] = out["digits_right"] / max(1, out["digits"])
    out["blank_no_digit"] = out["blank_ok"] / max(1, out["blank_frames"]) if blank else None
    return out


def pool(parts: list[dict]) -> dict:
    """Sum of several ``summarise`` results."""
    keys = ("frames", "correct", "digits", "digits_right", "blank_frames", "blank_ok")
    out = {k: sum(p[k] for p in parts) for k in keys}
    tags = sorted({t for p in parts for t in p["by_tag"]})
    out["by_tag"] = {t: [sum(p["by_tag"].get(t, [0, 0])[0] for p in parts),
                         sum(p["by_tag"].get(t, [0, 0])[1] for p in parts)] for t in tags}
    out["accuracy"] = out["correct"] / max(1, out["frames"])
    out["per_digit"] = out["digits_right"] / max(1, out["digits"])
    out["blank_no_digit"] = out["blank_ok"] / max(1, out["blank_frames"]) if out["blank_frames"] else None
    return out


def design_and_held_out(photos) -> tuple[list[str], list[str]]:
    """The writers of the dev photos, in name order, split as the preprocessing was designed:
    every other one from the first (looked at in rounds 1-2) and the rest (held out)."""
    writers = sorted({g.source for g in photos})
    return writers[0::2], writers[1::2]


def leave_writers_out(model, clips: dict, mnist_clips: dict, writers: list[str], folds: list[list[str]],
                      cache: dict) -> dict:
    """Per fold (its writers held out): the grid point best on the other writers plus MNIST
    scenes (single-digit accuracy + blank rate + number exact rate), scored on the fold; and
    the held-out scores pooled.  ``cache``: clip scores per (clip, options), shared between
    calls."""
    grid = [PreprocessOptions(min_contrast=a, thick_contrast=b) for a, b in itertools.product(*GRID.values())]

    def run(key, opts):
        k = (key, opts)
        if k not in cache:
            frames, doc, mode = (clips | mnist_clips)[key]
            cache[k] = score(model, frames, doc, mode, opts)
        return cache[k]

    out = {"folds": [], "grid": {k: list(v) for k, v in GRID.items()}}
    held: dict[str, list] = {"digit": [], "number": []}
    for fold in folds:
        train = [w for w in writers if w not in fold]

        def fit(opts):
            s = pool([run((w, "digit"), opts) for w in train] + [run(("mnist", "digit"), opts)])
            n = pool([run((w, "number"), opts) for w in train] + [run(("mnist", "number"), opts)])
            return s["accuracy"] + s["blank_no_digit"] + n["accuracy"]

        best = max(grid, key=fit)
        test = {m: pool([run((w, m), best) for w in fold]) for m in ("digit", "number")}
        for m in held:
            held[m].append(test[m])
        out["folds"].append({"held_out": fold, "chosen": {k: getattr(best, k) for k in GRID},
                             "digit": test["digit"], "number": test["number"],
                             "per_writer": {w: {m: run((w, m), best)["accuracy"] for m in ("digit", "number")}
                                            for w in fold}})
    out["digit"] = pool(held["digit"])
    out["number"] = pool(held["number"])
    return out


def load_from_git(commit: str, modules: tuple[str, ...] = ("preprocess",)):
    """The preprocessing module of ``commit`` (with the ``device`` modules it imports from the
    same commit, ``modules``, last one returned), loaded from git under private names."""
    tmp = Path(tempfile.mkdtemp())
    tag = f"at_{commit}_"
    mod = None
    for name in modules:
        src = subprocess.run(["git", "show", f"{commit}:device/{name}.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        for other in modules:
            src = src.replace(f"from device.{other} import", f"from {tag}{other} import")
        path = tmp / f"{tag}{name}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(tag + name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod   # dataclasses and later modules look it up there
        spec.loader.exec_module(mod)
    return mod


def load_baseline():
    """The preprocessing before issue 13 (``BASELINE``): the cost reference."""
    return load_from_git(BASELINE)


PEN_INKS = [(0.10, 0.10, 0.10), (0.55, 0.30, 0.18), (0.45, 0.20, 0.10), (0.25, 0.22, 0.22)]   # BGR


def fine_pens(glyphs, seed: int, variants: int = 3) -> list:
    """Each glyph redrawn with ``variants`` ballpoints (photo glyphs) or one (MNIST glyphs,
    whose ink the scene colours): 0.8-2 % of the digit's height wide, 55-100 % opaque, black
    or blue."""
    rng = np.random.default_rng(seed)
    out = []
    for g in glyphs:
        for _ in range(1 if g.source == "mnist" else variants):
            ink = None if g.source == "mnist" else PEN_INKS[rng.integers(len(PEN_INKS))]
            out.append(with_pen(g, rng.uniform(0.008, 0.02), ink, rng.uniform(0.55, 1.0)))
    return out


def pct(ns: list, qs=(50, 90, 99)) -> dict:
    a = np.asarray(ns, dtype=np.float64) / 1e6
    return {f"p{q}": float(np.percentile(a, q)) for q in qs} | {"mean": float(a.mean()), "n": len(a)}


def _timed(fn):
    """(fn's result, wall ns, this thread's CPU ns)."""
    w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    out = fn()
    return out, time.perf_counter_ns() - w0, time.thread_time_ns() - c0


def single_cost(model, kinds: dict, repeats: int) -> dict:
    """The preprocessing before issue 13 and today's, single-digit per-frame totals
    (preprocess + inference + postprocess), interleaved frame by frame (which one runs first
    alternates), per clip kind
    (``kinds``: name -> frames); with how often today's cheap tier decided alone."""
    old = load_baseline()

    def run(fn, f):
        p = fn(f)
        t1 = time.perf_counter_ns()
        if p.image is not None:
            postprocess(model.predict(p.image))
        return p, time.perf_counter_ns() - t1

    out = {}
    for kind, frames in kinds.items():
        t = {"baseline": [], "new": []}
        inference, paths = [], {"quick": 0, "full": 0, "fine": 0}
        for r in range(repeats):
            for j, f in enumerate(frames):
                # Which goes first alternates: the second finds the frame in the cache (a fixed
                # order favoured the second by ~2 % here).
                pair = (("baseline", old.prepare), ("new", prepare))
                for name, fn in (pair if (r + j) % 2 == 0 else pair[::-1]):
                    (p, inf), wall, _ = _timed(lambda: run(fn, f))
                    t[name].append(wall)
                    if name == "new":
                        paths[p.path] += 1
                        if p.image is not None:
                            inference.append(inf)
        r = {k: pct(v) for k, v in t.items()}
        r["inference_new"] = pct(inference)
        r["total_p50_vs_baseline"] = r["new"]["p50"] / r["baseline"]["p50"]
        r["total_p50_vs_inference"] = r["new"]["p50"] / r["inference_new"]["p50"]
        r["full_analysis_share"] = (paths["full"] + paths["fine"]) / max(1, sum(paths.values()))
        out[kind] = r
    return out


def number_cost(model, frames, labels, single: list, repeats: int, before=None) -> dict:
    """Per-frame total of the number mode on frames with 8 digits (prepare_all, one batched
    invoke, postprocess; and the same with one invoke per digit), interleaved with a typical
    single-digit frame through the digit mode, so the three share the machine's load.  Wall
    time and this thread's CPU time: on a shared machine the wall-time tail is mostly time
    the scheduler gave other processes.  Also each 8-digit frame's least CPU time over the
    repeats (``cpu_least``): what the frame itself costs, without the cache and frequency
    noise of a shared VM, whose CPU-time tail is ~2x its median even for a single digit.
    ``before``: the previous round's preprocessing module, batched, in the same turns
    (``before_batched``): this round's cost as a ratio, which the VM's speed (it has varied 2x
    between runs of one day) does not move."""
    eight = [f for f, lab in zip(frames, labels) if lab and len(lab.replace(" ", "")) == 8]
    kinds = ("batched", "per_digit", "single_digit") + (("before_batched",) if before else ())
    t = {k: {"wall": [], "cpu": []} for k in kinds}
    found_counts = []

    def number(f, batched, pre=None):
        found = (pre.prepare_all if pre else prepare_all)(f)
        if found:
            x = np.stack([p.image for p in found])
            [postprocess(s) for s in (model.predict_batch(x) if batched else model.predict_many(x))]
        return len(found)

    def digit(f):
        p = prepare(f)
        if p.image is not None:
            postprocess(model.predict(p.image))

    i = 0
    for r in range(repeats):
        for j, f in enumerate(eight):
            for name in (kinds if (r + j) % 2 == 0 else kinds[::-1]):   # (the order alternates: see single_cost)
                if name == "single_digit":
                    _, wall, cpu = _timed(lambda: digit(single[i % len(single)]))
                    i += 1
                elif name == "before_batched":
                    _, wall, cpu = _timed(lambda: number(f, True, before))
                else:
                    n, wall, cpu = _timed(lambda: number(f, name == "batched"))
                    found_counts.append(n)
                t[name]["wall"].append(wall)
                t[name]["cpu"].append(cpu)
    out = {"frames": len(eight), "repeats": repeats,
           "digits_found_mean": float(np.mean(found_counts)) if found_counts else None,
           **{k: {c: pct(v) for c, v in d.items()} for k, d in t.items()}}
    for k in (k for k in kinds if k != "single_digit"):   # samples are repeat-major: repeat r, frame j at r * n + j
        out[k]["cpu_least"] = pct(np.asarray(t[k]["cpu"]).reshape(repeats, len(eight)).min(axis=0))
    if before:
        out["batched_vs_before"] = {q: out["batched"]["cpu_least"][q] / out["before_batched"]["cpu_least"][q]
                                    for q in ("p50", "p90", "p99", "mean")}
    out["batched_vs_single_digit"] = {c: {q: out["batched"][c][q] / out["single_digit"][c][q] for q in ("p50", "p99")}
                                      for c in ("wall", "cpu")}
    return out


def batch_cost(model, repeats: int = 300) -> dict:
    """One invoke for N digits against N invokes, N = 1..16 (inference alone)."""
    rng = np.random.default_rng(0)
    out = {}
    for n in (1, 2, 3, 4, 6, 8, 12, 16):
        x = rng.random((n, 28, 28), dtype=np.float32)
        t = {"batched": [], "per_digit": []}
        for _ in range(repeats):
            for name in t:
                t0 = time.perf_counter_ns()
                model.predict_batch(x) if name == "batched" else model.predict_many(x)
                t[name].append(time.perf_counter_ns() - t0)
        out[str(n)] = {k: pct(v, (50, 99)) for k, v in t.items()}
        out[str(n)]["speedup_p50"] = out[str(n)]["per_digit"]["p50"] / out[str(n)]["batched"]["p50"]
    return out


def colour(model, paths: dict, render_clip: Path, before, repeats: int) -> dict:
    """The held-out writers' clips and the blank scenes read as a USB camera delivers frames
    (full-size BGR), by today's preprocessing and ``before``'s (``paths``: name -> (clip
    paths, mode); one clip in memory at a time, a 640x480 colour frame is 0.9 MB); and the
    single-digit total (preprocess + inference + postprocess) of the camera-like clip's
    frames in colour, today's against ``before``'s, each frame's least thread CPU time of
    ``repeats``, the two interleaved (which goes first alternates)."""
    out: dict = {}
    for name, (group, mode) in paths.items():
        parts: dict = {"now": [], "before": []}
        for path in group:
            frames, doc = read_clip(path, colour=True)
            out["frame_size"] = list(frames[0].shape)
            parts["now"].append(score(model, frames, doc, mode, DEFAULT))
            parts["before"].append(score(model, frames, doc, mode, DEFAULT, before))
        out[name] = {k: pool(v) for k, v in parts.items()}

    cost = least_times({"now": single_digit(model, prepare), "before": single_digit(model, before.prepare)},
                       read_clip(render_clip, colour=True)[0], repeats)
    cost["p50_vs_before"] = cost["now"]["p50"] / cost["before"]["p50"]
    return out | {"cost_camera_like_clip": cost}


NOISE_SIGMAS = (6, 12)   # sensor noise added to the decoded gray frames (0-255)


def noise(model, groups: dict, before) -> dict:
    """Frames with sensor-like noise: ``groups`` (name -> [(frames, doc)], single digits) with
    Gaussian noise of each of NOISE_SIGMAS added to the decoded gray frames (seeded), and frames
    of pure noise (uniform 0-255, gray 80x60 and 320x240, BGR 640x480; 20 each), which hold no
    digit: today's preprocessing against ``before``'s, in the digit mode (the pure noise also in
    the number mode)."""
    out: dict = {}
    for sigma in NOISE_SIGMAS:
        for name, parts in groups.items():
            res: dict = {"now": [], "before": []}
            for k, (frames, doc) in enumerate(parts):
                rng = np.random.default_rng([sigma, k])
                noisy = [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]
                res["now"].append(score(model, noisy, doc, "digit", DEFAULT))
                res["before"].append(score(model, noisy, doc, "digit", DEFAULT, before))
            out[f"{name}, sigma {sigma}"] = {k: pool(v) for k, v in res.items()}
    rng = np.random.default_rng(13)
    pure = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((60, 80), (240, 320), (480, 640, 3)) for _ in range(20)]
    out["pure noise"] = {"frames": len(pure), **{
        f"{who} {mode}": sum(read_frame(model, f, mode, DEFAULT, pre) in (None, "") for f in pure)
        for who, pre in (("now", None), ("before", before)) for mode in ("digit", "number")}}
    return out


def sheets(model, glyphs, pre=None) -> dict:
    """Each writer's ten photos as a 3-3-3-1 sheet on plain paper: does it read as its rows?"""
    out = {}
    for i, who in enumerate(sorted({g.source for g in glyphs})):
        by = {g.label: g for g in glyphs if g.source == who}
        frame, _ = render_scene([[by[d] for d in row] for row in SHEET], np.random.default_rng(i), PLAIN)
        out[who] = read_frame(model, frame, "number", PreprocessOptions(), pre)
    expected = " ".join("".join(map(str, r)) for r in SHEET)
    return {"expected": expected, "read": out, "correct": sum(v == expected for v in out.values()), "sheets": len(out)}


def device_run(clip: Path, out_dir: Path, work: Path, labels: list, name: str, model: str | None) -> dict:
    res, frames_out = out_dir / f"run-{name}.json", work / f"run-{name}.jsonl"
    subprocess.run([sys.executable, "-m", "device.cli", "run", "--source", str(clip), "--threads", "1",
                    "--quiet", "--output", str(res), "--frames-out", str(frames_out)]
                   + (["--model", str(model)] if model else []),
                   cwd=ROOT, check=True, capture_output=True, text=True)
    doc = json.loads(res.read_text())
    rows = [json.loads(line) for line in frames_out.read_text().splitlines()]
    digit = [(r["prediction"], lab) for r, lab in zip(rows, labels) if lab is not None]
    blank = [r["prediction"] for r, lab in zip(rows, labels) if lab is None]
    return {"result": res.name, "frames": len(rows), "peak_rss_mb": doc["memory"]["peak_rss_kb"] / 1024,
            "accuracy": float(np.mean([p == lab for p, lab in digit])),
            "blank_no_digit": float(np.mean([p is None for p in blank])),
            "total_ms": {q: doc["stages"]["total"][q] for q in ("p50", "p90", "p99")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small clips, few repeats (CI smoke run)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-scenes"))
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--model", help="the .tflite to read with (default: the shipped model)")
    ap.add_argument("--name", default="scenes",
                    help="result files NAME.json / NAME.md / run-NAME.json (default: scenes), to keep "
                         "runs with another --model beside the default one")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    out_dir = results_dir(args.results, machine)
    suffix = "-quick" if args.quick else ""
    if args.model and not Path(args.model).is_file():
        raise SystemExit(f"--model {args.model}: no such file")
    per_writer, per_writer_numbers = (12, 6) if args.quick else (110, 50)

    from host.data import load_mnist

    mnist = load_mnist()
    photos = photo_glyphs(PHOTOS)
    writers = sorted({g.source for g in photos})
    mglyphs = mnist_glyphs(mnist.x_test, mnist.y_test)

    def clip(name, glyphs, frames, mode, seed, blank_every=10):
        """The clip's path, rendered first when it is not there (``glyphs``: a list, or a
        function making it, called only then)."""
        path = work / f"{name}{suffix}.avi"
        if not Path(str(path) + ".labels.json").is_file():
            make_scene_clip(path, glyphs() if callable(glyphs) else glyphs, frames, mode,
                            blank_every=blank_every, seed=seed)
        return path

    t_start = time.monotonic()
    clips = {}
    for i, who in enumerate(writers):
        mine = [g for g in photos if g.source == who]
        for mode, n, base in (("digit", per_writer, 1000), ("number", per_writer_numbers, 2000)):
            frames, doc = read_clip(clip(f"scenes-{mode}-{who}", mine, n, mode, base + i))
            clips[(who, mode)] = (frames, doc, mode)
    mnist_clips = {("mnist", m): (*read_clip(clip(f"scenes-{m}-mnist", mglyphs, n, m, s)), m)
                   for m, n, s in (("digit", 10 * per_writer, 3000), ("number", 4 * per_writer_numbers, 3001))}
    blank_frames, blank_doc = read_clip(clip("scenes-blank", mglyphs, 30 if args.quick else 400, "digit", 3002, 1))
    render_clip = work / f"clip{suffix}.avi"
    if not Path(str(render_clip) + ".labels.json").is_file():
        make_clip(mnist.x_test, mnist.y_test, render_clip, n_digits=40 if args.quick else 300, hold=3, seed=0)
    render_frames, render_doc = read_clip(render_clip)
    render_doc["records"] = [{"tags": []} for _ in render_doc["labels"]]
    design, held_out = design_and_held_out(photos)
    pen_sources = {"design writers": lambda: [g for g in photos if g.source in design],
                   "held-out writers": lambda: [g for g in photos if g.source in held_out],
                   "MNIST": lambda: mglyphs[5000:5300]}
    pen_clips = {}
    for k, (name, source) in enumerate(pen_sources.items()):
        tag = name.split()[0].lower()
        for mode, n, seed in (("digit", 30 if args.quick else 300, 4000 + 10 * k),
                              ("number", 10 if args.quick else 100, 4001 + 10 * k)):
            path = clip(f"pens-{mode}-{tag}", lambda source=source, k=k: fine_pens(source(), k), n, mode, seed)
            pen_clips[(name, mode)] = (*read_clip(path), mode)
    clip_s = time.monotonic() - t_start

    model = Model(args.model, threads=1)
    load_start = os.getloadavg()
    cache: dict = {}
    default = PreprocessOptions()
    result = {
        "model": model.describe(), "baseline": BASELINE, "before_commit": BEFORE, "before_name": BEFORE_NAME, "clip_seconds": round(clip_s, 1),
        "decode": "gray/2 (320x240)", "design_writers": design, "held_out_writers": held_out,
        "held_out": leave_writers_out(model, clips, mnist_clips, writers, [held_out], cache),
        "leave_writers_out": leave_writers_out(model, clips, mnist_clips, writers,
                                               [writers[i:i + 2] for i in range(0, len(writers), 2)], cache),
        "default_options": {k: getattr(default, k) for k in GRID},
        "mnist_scenes": {m: score(model, *mnist_clips[("mnist", m)][:2], m, default) for m in ("digit", "number")},
    }

    def accuracy(pre=None) -> dict:
        """Everything scored with default options by today's preprocessing or ``pre``."""
        out = {m: pool([score(model, *clips[(w, m)][:2], m, default, pre) for w in held_out])
               for m in ("digit", "number")}
        out["blank_scenes"] = score(model, blank_frames, blank_doc, "digit", default, pre)
        out["mnist_render_clip"] = score(model, render_frames, render_doc, "digit", default, pre)
        wrong: dict[str, list] = {"digit": [], "number": []}
        files = sorted(PHOTOS.glob("*.png"))
        for f in files:
            lab = int(f.stem.rsplit("-", 1)[1])
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            # The number mode on a photo of one digit: that digit, and nothing else.
            for mode, want in (("digit", lab), ("number", str(lab))):
                got = read_frame(model, img, mode, default, pre)
                if got != want:
                    wrong[mode].append({"file": f.name, "label": want, "prediction": got})

        def scored(w: list) -> dict:
            return {"correct": len(files) - len(w), "accuracy": (len(files) - len(w)) / max(1, len(files)), "wrong": w}

        out["photos"] = {"images": len(files), **scored(wrong["digit"]), "number_mode": scored(wrong["number"])}
        out["sheets"] = sheets(model, photos, pre)
        out["fine_pens"] = {name: {m: score(model, *pen_clips[(name, m)][:2], m, default, pre) for m in ("digit", "number")}
                            for name in pen_sources}
        return out

    now = accuracy()
    result.update({k: now[k] for k in ("blank_scenes", "mnist_render_clip", "photos", "sheets", "fine_pens")})
    result["held_out_default_options"] = {m: now[m] for m in ("digit", "number")}
    before = load_from_git(BEFORE, ("blobs", "levels", "preprocess"))
    result["before"] = accuracy(before)
    result["colour"] = colour(model, {
        "held-out single digits": ([work / f"scenes-digit-{w}{suffix}.avi" for w in held_out], "digit"),
        "held-out numbers": ([work / f"scenes-number-{w}{suffix}.avi" for w in held_out], "number"),
        "blank scenes": ([work / f"scenes-blank{suffix}.avi"], "digit")}, render_clip, before, 2 if args.quick else 5)
    result["noise"] = noise(model, {"held-out single digits": [clips[(w, "digit")][:2] for w in held_out],
                                    "blank scenes": [(blank_frames, blank_doc)]}, before)
    repeats = 2 if args.quick else 5
    scenes = [f for w in writers for f in clips[(w, "digit")][0][:30]]
    result["cost_single"] = single_cost(model, {"camera-like clip": render_frames,
                                                "MNIST scenes": mnist_clips[("mnist", "digit")][0],
                                                "photo scenes": scenes}, repeats)
    number_clips = [mnist_clips[("mnist", "number")]] + [clips[(w, "number")] for w in writers]
    result["cost_eight_digits"] = number_cost(model, [f for c in number_clips for f in c[0]],
                                              [lab for c in number_clips for lab in c[1]["labels"]],
                                              render_frames, repeats, before)
    result["cost_batch"] = batch_cost(model, 50 if args.quick else 300)
    result["load_average"] = {"start": list(load_start), "end": list(os.getloadavg()), "cpus": os.cpu_count()}
    run_clip = work / f"scenes-digit-{writers[0]}{suffix}.avi"
    result["device_run"] = device_run(run_clip, out_dir, work, clips[(writers[0], "digit")][1]["labels"],
                                      args.name + suffix, args.model)
    result["pass"] = passes(result)
    write(out_dir / f"{args.name}{suffix}.json", result, args.quick, machine)
    return 0


TYPICAL = "camera-like clip"   # the typical single-digit frame the cost targets are about


def headline(r: dict) -> dict:
    """The figures the targets are about, from the details (the 8-digit p99 is thread CPU
    time, the wall-time one beside it)."""
    held, cs, ce = r["held_out"], r["cost_single"][TYPICAL], r["cost_eight_digits"]["batched"]
    return {"scene_photos_accuracy": held["digit"]["accuracy"], "blank_no_digit": r["blank_scenes"]["blank_no_digit"],
            "mnist_clip_accuracy": r["mnist_render_clip"]["accuracy"], "photos_accuracy": r["photos"]["accuracy"],
            "numbers_exact": held["number"]["accuracy"], "numbers_per_digit": held["number"]["per_digit"],
            "total_p50_vs_baseline": cs["total_p50_vs_baseline"],
            "total_p50_vs_inference_stretch": cs["total_p50_vs_inference"],
            "eight_digit_total_p99_ms": ce["cpu"]["p99"], "eight_digit_total_p99_ms_wall": ce["wall"]["p99"],
            "eight_digit_total_p99_ms_least": ce["cpu_least"]["p99"],
            "peak_rss_mb": r["device_run"]["peak_rss_mb"], "sheets_read": r["sheets"]["correct"] / r["sheets"]["sheets"],
            "five_fold_accuracy": r["leave_writers_out"]["digit"]["accuracy"],
            "fine_pen_held_out_accuracy": r["fine_pens"]["held-out writers"]["digit"]["accuracy"],
            "fine_pen_mnist_accuracy": r["fine_pens"]["MNIST"]["digit"]["accuracy"],
            "five_fold_numbers_exact": r["leave_writers_out"]["number"]["accuracy"]}


def passes(r: dict) -> dict:
    m = headline(r)
    at_most = ("total_p50_vs_baseline", "total_p50_vs_inference_stretch", "eight_digit_total_p99_ms", "peak_rss_mb")
    out = {k: (m[k] <= t if k in at_most else m[k] >= t) for k, t in TARGETS.items()}
    out["sheets"] = m["sheets_read"] == 1.0
    return out


def write(path: Path, details: dict, quick: bool, machine: dict) -> None:
    """The summary through the project's schema (kind "benchmark", name "scenes") and the
    readable report beside it."""
    write_summary(path, "scenes", quick=quick, targets=TARGETS, measured=headline(details), details=details,
                  machine=machine)
    text = report(details, json.loads(path.read_text())["created"], quick, machine)
    atomic_write_bytes(path.with_suffix(".md"), text.encode())
    print(text)


def report(r: dict, created: str, quick: bool, machine: dict) -> str:
    """The readable summary beside the JSON."""
    held, lwo, b1, bname = r["held_out"], r["leave_writers_out"], r["before"], r["before_name"]
    cs, ce = r["cost_single"], r["cost_eight_digits"]
    typ = cs[TYPICAL]
    ok = {True: "met", False: "**not met**"}
    p = r["pass"]
    la = r["load_average"]

    def frac(d, key="accuracy", n="correct", of="frames"):
        return f"{d[key]:.2%} ({d[n]}/{d[of]})"

    lines = [f"# Reading digits in real scenes ({created}{', quick' if quick else ''})", "",
             f"Machine: {machine.get('cpu', '?')}, {la['cpus']} CPUs shared with other jobs (load average "
             f"{la['start'][0]:.1f} at the start, {la['end'][0]:.1f} at the end); model {r['model']['sha256'][:12]}, "
             f"one thread; frames decoded as `device run` does, {r['decode']}.", "",
             f"Held-out writers (not looked at while designing rounds 1-2): {', '.join(r['held_out_writers'])}; "
             f"thresholds {held['folds'][0]['chosen']} chosen on the design writers ({', '.join(r['design_writers'])}) "
             "+ MNIST scenes (rounds 3-5 looked at their failures by kind: see the benchmark's docstring).  Before: "
             f"{bname}'s preprocessing ({r['before_commit']}) on the same frames, default "
             "options.", "",
             f"| target | before ({bname}) | now | |", "|---|---|---|---|",
             f"| held-out writers' scene clips, single digit, per frame >= 98 % | {frac(b1['digit'])} | "
             f"{frac(held['digit'])} | {ok[p['scene_photos_accuracy']]} |",
             f"| blank scene frames 'no digit' >= 97 % | {frac(b1['blank_scenes'], 'blank_no_digit', 'blank_ok', 'blank_frames')} | "
             f"{frac(r['blank_scenes'], 'blank_no_digit', 'blank_ok', 'blank_frames')} | {ok[p['blank_no_digit']]} |",
             f"| camera-like MNIST clip >= 99 % | {b1['mnist_render_clip']['accuracy']:.2%} | "
             f"{r['mnist_render_clip']['accuracy']:.2%} | {ok[p['mnist_clip_accuracy']]} |",
             f"| dev photos >= 99 % | {b1['photos']['accuracy']:.0%} | {r['photos']['accuracy']:.0%} | {ok[p['photos_accuracy']]} |",
             f"| dev photos read in number mode (one digit each) | {b1['photos']['number_mode']['accuracy']:.0%} | "
             f"{r['photos']['number_mode']['accuracy']:.0%} | |",
             f"| numbers, held-out writers: exact >= 95 % | {frac(b1['number'])} | {frac(held['number'])} | "
             f"{ok[p['numbers_exact']]} |",
             f"| numbers: per digit >= 99 % | {b1['number']['per_digit']:.2%} | {held['number']['per_digit']:.2%} | "
             f"{ok[p['numbers_per_digit']]} |",
             f"| single-digit total p50 <= 1.1x the preprocessing before issue 13 (typical frame: the camera-like clip) "
             f"| | {typ['new']['p50']:.3f} / {typ['baseline']['p50']:.3f} ms = {typ['total_p50_vs_baseline']:.2f}x | "
             f"{ok[p['total_p50_vs_baseline']]} |",
             f"| stretch: total p50 <= 2x inference p50 | | {typ['new']['p50']:.3f} / {typ['inference_new']['p50']:.3f} ms = "
             f"{typ['total_p50_vs_inference']:.2f}x | {ok[p['total_p50_vs_inference_stretch']]} |",
             f"| 8-digit frame total p99 <= 1.5 ms (thread CPU time; wall below) | | {ce['batched']['cpu']['p99']:.3f} ms "
             f"(p50 {ce['batched']['cpu']['p50']:.3f}) | {ok[p['eight_digit_total_p99_ms']]} |",
             f"| peak RSS of device run <= 80 MB | | {r['device_run']['peak_rss_mb']:.1f} MB | {ok[p['peak_rss_mb']]} |",
             f"| 3-3-3-1 sheets read as rows | {b1['sheets']['correct']}/{b1['sheets']['sheets']} | "
             f"{r['sheets']['correct']}/{r['sheets']['sheets']} | {ok[p['sheets']]} |",
             "", "Per held-out writer (chosen thresholds): "
             + ", ".join(f"{w} {v['digit']:.1%} / numbers {v['number']:.1%}" for w, v in held["folds"][0]["per_writer"].items()),
             "", "5 folds of 2 writers, thresholds chosen on the other 8 + MNIST scenes "
             f"(these folds also score the design writers): single digit {frac(lwo['digit'])}, numbers exact "
             f"{frac(lwo['number'])}, per digit {lwo['number']['per_digit']:.2%}.", "",
             "| held out | chosen | single digit | blank | numbers exact | per digit |", "|---|---|---|---|---|---|"]
    for f in lwo["folds"]:
        lines.append(f"| {', '.join(f['held_out'])} | {f['chosen']} | {f['digit']['accuracy']:.1%} | "
                     f"{f['digit']['blank_no_digit']:.1%} | {f['number']['accuracy']:.1%} | {f['number']['per_digit']:.1%} |")
    lines += ["", f"Fine pens (glyphs redrawn with a ballpoint, same scenes; before = {bname}'s preprocessing):", "",
              "| glyphs | single digit before / now | numbers exact before / now | per digit before / now |",
              "|---|---|---|---|"]
    for name, v in r["fine_pens"].items():
        w = b1["fine_pens"][name]
        lines.append(f"| {name} | {frac(w['digit'])} / {frac(v['digit'])} | {w['number']['accuracy']:.1%} / "
                     f"{v['number']['accuracy']:.1%} | {w['number']['per_digit']:.1%} / {v['number']['per_digit']:.1%} |")
    if "colour" in r:   # (results before round 14 have no colour part)
        col = r["colour"]
        size = "x".join(str(v) for v in col["frame_size"][1::-1])
        lines += ["", f"The same clips read as a USB camera delivers frames ({size} BGR, not the device's reduced gray "
                  f"decoding; before = {bname}'s preprocessing):", "",
                  "| clips | before | now |", "|---|---|---|"]
        for name in ("held-out single digits", "held-out numbers"):
            lines.append(f"| {name} | {frac(col[name]['before'])} | {frac(col[name]['now'])} |")
        b = col["blank scenes"]
        lines.append(f"| blank scenes 'no digit' | {frac(b['before'], 'blank_no_digit', 'blank_ok', 'blank_frames')} | "
                     f"{frac(b['now'], 'blank_no_digit', 'blank_ok', 'blank_frames')} |")
        c = col["cost_camera_like_clip"]
        lines += ["", f"Their cost: the camera-like clip in colour, single-digit total (each frame's least thread CPU "
                  f"time, interleaved) p50 {c['now']['p50']:.3f} ms now, {c['before']['p50']:.3f} ms "
                  f"before = {c['p50_vs_before']:.2f}x."]
    if "noise" in r:   # (results before round 14 have no noise part)
        nz = r["noise"]
        lines += ["", f"With sensor noise added to the decoded gray frames (Gaussian, sigma of 255; before = {bname}'s "
                  "preprocessing):", "", "| clips | before | now |", "|---|---|---|"]
        for name, v in nz.items():
            if name == "pure noise":
                continue
            key = ("blank_no_digit", "blank_ok", "blank_frames") if name.startswith("blank") else ("accuracy", "correct", "frames")
            extra = "" if name.startswith("blank") else (f"; blank frames {v['before']['blank_ok']} / "
                                                         f"{v['now']['blank_ok']} of {v['now']['blank_frames']}")
            lines.append(f"| {name} | {frac(v['before'], *key)} | {frac(v['now'], *key)}{extra} |")
        pn = nz["pure noise"]
        lines += ["", f"Frames of pure noise (uniform; {pn['frames']}) read as \"no digit\": digit mode {pn['before digit']} "
                  f"before, {pn['now digit']} now; number mode {pn['before number']} before, {pn['now number']} now."]
    lines += ["", "Single digit by condition (held-out writers):", "", "| condition | right | frames |", "|---|---|---|"]
    for t, (k, n) in held["digit"]["by_tag"].items():
        lines.append(f"| {t} | {k / max(1, n):.1%} | {n} |")
    lines += ["", "Single-digit cost per clip kind (total = preprocess + inference + postprocess, ms, interleaved "
              "frame by frame with the preprocessing before issue 13; full analysis: share of frames the cheap tier "
              "left to it):", "",
              "| clip | before p50 / p90 / p99 | now p50 / p90 / p99 | p50 ratio | full analysis |", "|---|---|---|---|---|"]
    for kind, v in cs.items():
        lines.append(f"| {kind} | {v['baseline']['p50']:.3f} / {v['baseline']['p90']:.3f} / {v['baseline']['p99']:.3f} | "
                     f"{v['new']['p50']:.3f} / {v['new']['p90']:.3f} / {v['new']['p99']:.3f} | "
                     f"{v['total_p50_vs_baseline']:.2f}x | {v['full_analysis_share']:.0%} |")
    lines += ["", f"8-digit frames ({ce['frames']} frames x {ce['repeats']}, {ce['digits_found_mean']:.1f} digits found "
              "on average), interleaved with single-digit frames of the camera-like clip, ms:", "",
              "| | wall p50 / p90 / p99 | CPU p50 / p90 / p99 |", "|---|---|---|"]
    for k in ("batched", "per_digit", "single_digit", "before_batched"):
        if k not in ce:
            continue
        w, c = ce[k]["wall"], ce[k]["cpu"]
        name = f"{r.get('before_name', 'before')}'s preprocessing, batched" if k == "before_batched" else k.replace('_', ' ')
        lines.append(f"| {name} | {w['p50']:.3f} / {w['p90']:.3f} / {w['p99']:.3f} | "
                     f"{c['p50']:.3f} / {c['p90']:.3f} / {c['p99']:.3f} |")
    least = ce["batched"]["cpu_least"]
    lines += ["", f"Each 8-digit frame's least CPU time over its {ce['repeats']} runs (batched), over the {ce['frames']} "
              f"frames: p50 {least['p50']:.3f}, p90 {least['p90']:.3f}, p99 {least['p99']:.3f} ms (what the frames "
              "cost without the shared VM's noise; the target is judged on the row above)."]
    if "batched_vs_before" in ce:
        v = ce["batched_vs_before"]
        lines += ["", f"Against {r.get('before_name', 'before')}'s preprocessing in the same turns (each frame's least CPU "
                  f"time): p50 {v['p50']:.2f}x, p90 {v['p90']:.2f}x, p99 {v['p99']:.2f}x, mean {v['mean']:.2f}x."]
    rat = ce["batched_vs_single_digit"]
    lines += ["", f"8 digits (batched) against one digit: CPU p50 {rat['cpu']['p50']:.1f}x, p99 {rat['cpu']['p99']:.1f}x; "
              f"wall p50 {rat['wall']['p50']:.1f}x, p99 {rat['wall']['p99']:.1f}x.", "",
              "Batched inference against one invoke per digit (inference only, p50 ms):", "",
              "| N | batched | per digit | speed-up |", "|---|---|---|---|"]
    for n, v in r["cost_batch"].items():
        lines.append(f"| {n} | {v['batched']['p50']:.3f} | {v['per_digit']['p50']:.3f} | {v['speedup_p50']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
