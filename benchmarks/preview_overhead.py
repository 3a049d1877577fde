"""Benchmark: does the live preview slow the loop?  (issue 14: p50 within 5 % with a viewer.)

One process runs the real loop (the shipped model, one thread, a 640x480 camera-like clip of
MNIST test digits, looped) in segments of ``--segment-s`` seconds under three conditions,
interleaved in a shuffled order within each of ``--cycles`` cycles, so that the load of this
shared machine drifts over all of them alike:

  off     no preview at all (no observer, no server);
  idle    ``--preview`` on (the hub observes every frame, the server listens), nobody watching;
  viewer  as idle, plus a client in another process reading ``/stream.mjpg`` and ``/events``
          as the page does (MJPEG frames and SSE JSON; the preview encodes at 10 fps).

Both pacings are measured: ``unpaced`` (frames as fast as the loop takes them: the loop owns a
core, the worst case for sharing it) and ``30fps`` (paced like a camera).  The figure is the
per-frame ``total`` (preprocess + inference + postprocess, what the budget is about): p50 and
p99 per condition pooled over cycles, and the per-cycle ratio of p50s (viewer/idle, the
issue's "with and without a connected browser"; viewer/off and idle/off besides), min /
median / max over cycles.  The viewer runs on this machine too, so its own CPU use counts
against the preview: a browser on another computer would cost the device less.

    python -m benchmarks.preview_overhead [--quick]

Writes benchmarks/results/<machine>/preview_overhead.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import results_dir, write_summary
from device.system import machine_info

ROOT = Path(__file__).resolve().parent.parent
TARGET_P50_RATIO = 1.05
CONDITIONS = ("off", "idle", "viewer")
SKIP_FRAMES = 20   # each segment restarts the clip: its first frames warm caches again


# -- the viewer (a separate process, started with --viewer URL) ------------------------------
def viewer(port: int) -> int:
    """Read both streams until SIGTERM; print what arrived as JSON."""
    import signal

    counts = {"jpeg_frames": 0, "jpeg_bytes": 0, "sse_events": 0, "sse_bytes": 0}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def read(path, on_chunk):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path)
        r = conn.getresponse()
        assert r.status == 200, r.status
        ready.release()
        while not stop.is_set():
            chunk = r.fp.read1(65536)
            if not chunk:
                break
            on_chunk(chunk)

    def on_mjpeg(chunk):
        counts["jpeg_bytes"] += len(chunk)
        counts["jpeg_frames"] += chunk.count(b"Content-Type: image/jpeg")

    def on_sse(chunk):
        counts["sse_bytes"] += len(chunk)
        counts["sse_events"] += chunk.count(b"event: ")

    ready = threading.Semaphore(0)
    for path, fn in (("/stream.mjpg", on_mjpeg), ("/events", on_sse)):
        threading.Thread(target=read, args=(path, fn), daemon=True).start()
    ready.acquire()
    ready.acquire()
    print("ready", flush=True)
    stop.wait()
    print(json.dumps(counts), flush=True)
    return 0


# -- the measurement --------------------------------------------------------------------------
class Totals:
    """Observer keeping every frame's total (the same cost in every condition)."""

    def __init__(self):
        self.ns: list[int] = []

    def __call__(self, frame, record):
        self.ns.append(record.total_ns)


def segment(step, source, hub, condition: str, seconds: float, budget_ms: float, port: int) -> dict:
    from device.loop import Limits, run_loop
    from device.recorder import Recorder, RecordOptions

    totals = Totals()
    observers = [totals] + ([hub] if condition != "off" else [])
    client = None
    published0 = hub.published
    if condition == "viewer":
        client = subprocess.Popen([sys.executable, "-m", "benchmarks.preview_overhead", "--viewer", str(port)],
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "ready"
    recorder = Recorder(RecordOptions(budget_ms=budget_ms, quiet=True), {}, {})
    t0 = time.perf_counter()
    result = run_loop(step, source, recorder, Limits(duration=seconds), observers)
    elapsed = time.perf_counter() - t0
    received = None
    if client is not None:
        client.terminate()
        received = json.loads(client.communicate(timeout=30)[0].strip().splitlines()[-1])
    ns = np.array(totals.ns[SKIP_FRAMES:], dtype=np.int64)
    return {"condition": condition, "frames": int(len(totals.ns)), "fps": len(totals.ns) / elapsed,
            "p50_ms": float(np.percentile(ns, 50) / 1e6), "p99_ms": float(np.percentile(ns, 99) / 1e6),
            "mean_ms": float(ns.mean() / 1e6), "status": result.status,
            "published": hub.published - published0, "received": received, "ns": ns}


def details(args, load: dict, model: dict, modes: dict) -> dict:
    """Everything besides the headline: the set-up, the load and each cycle's segments."""
    return {"load_average": {k: [round(x, 2) for x in v] for k, v in load.items()},  # other jobs here
            "model": model, "clip": {"file": "clip.avi", "size": [640, 480]},
            "cycles": args.cycles, "segment_s": args.segment_s, "skip_frames_per_segment": SKIP_FRAMES,
            "preview_fps": 10, "budget_ms": args.budget_ms,
            "per_cycle": {name: m.get("cycles", []) for name, m in modes.items()}}


def run_mode(args, step, clip: Path, realtime: bool) -> dict:
    from device.preview import PreviewHub, PreviewServer
    from device.sources.video import VideoFile

    hub = PreviewHub(args.budget_ms, fps=10)
    rng = random.Random(args.seed)
    cycles = []
    with VideoFile(str(clip), realtime=realtime, loop=True) as source, \
            PreviewServer("127.0.0.1", 0, hub) as server:
        hub.start()
        port = server.port
        segment(step, source, hub, "idle", min(2.0, args.segment_s), args.budget_ms, port)   # warm-up
        for c in range(args.cycles):
            order = list(CONDITIONS)
            rng.shuffle(order)
            segs = {cond: segment(step, source, hub, cond, args.segment_s, args.budget_ms, port) for cond in order}
            cycles.append({"order": order, "segments": segs})
            s = {k: f"{v['p50_ms']:.4f}" for k, v in segs.items()}
            print(f"  {'30fps' if realtime else 'unpaced'} cycle {c + 1}/{args.cycles}: p50 ms {s}", flush=True)
    pooled = {}
    for cond in CONDITIONS:
        ns = np.concatenate([cy["segments"][cond]["ns"] for cy in cycles])
        segs = [cy["segments"][cond] for cy in cycles]
        pooled[cond] = {"frames": int(len(ns)), "p50_ms": float(np.percentile(ns, 50) / 1e6),
                        "p90_ms": float(np.percentile(ns, 90) / 1e6),
                        "p99_ms": float(np.percentile(ns, 99) / 1e6), "mean_ms": float(ns.mean() / 1e6),
                        "fps_median": float(np.median([s["fps"] for s in segs])),
                        "published_per_s": float(np.median([s["published"] / args.segment_s for s in segs]))}
    viewers = [cy["segments"]["viewer"]["received"] for cy in cycles]
    pooled["viewer"]["received_per_s"] = {k: float(np.median([v[k] for v in viewers]) / args.segment_s)
                                          for k in viewers[0]}

    def ratios(a, b, q="p50_ms"):
        r = [cy["segments"][a][q] / cy["segments"][b][q] for cy in cycles]
        return {"median": float(np.median(r)), "min": float(min(r)), "max": float(max(r))}

    for cy in cycles:
        for seg in cy["segments"].values():
            seg.pop("ns")
    return {"pooled": pooled,
            "p50_ratio": {"viewer/idle": ratios("viewer", "idle"), "viewer/off": ratios("viewer", "off"),
                          "idle/off": ratios("idle", "off")},
            "p99_ratio": {"viewer/idle": ratios("viewer", "idle", "p99_ms"),
                          "viewer/off": ratios("viewer", "off", "p99_ms")},
            "cycles": cycles}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 cycles of 2 s (a smoke run)")
    ap.add_argument("--cycles", type=int, default=16)
    ap.add_argument("--segment-s", type=float, default=2.5)
    ap.add_argument("--budget-ms", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-preview"))
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--viewer", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.viewer:
        return viewer(args.viewer)
    if args.quick:
        args.cycles, args.segment_s = 2, 2.0

    from device.runtime import Model
    from device.step import Step
    from device.synth import load_sample, make_clip

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    clip = work / "clip.avi"
    if not clip.is_file():
        x, y = load_sample()
        make_clip(x, y, clip, n_digits=60, hold=3, seed=0)
    model = Model(threads=1)
    step = Step(model)
    machine = machine_info()
    load = {"before": os.getloadavg()}
    modes = {}
    for name, realtime in (("unpaced", False), ("30fps", True)):
        modes[name] = run_mode(args, step, clip, realtime)
    load["after"] = os.getloadavg()
    target = {name: m["p50_ratio"]["viewer/idle"]["median"] <= TARGET_P50_RATIO for name, m in modes.items()}
    out_dir = results_dir(args.results, machine)
    out = out_dir / f"preview_overhead{'-quick' if args.quick else ''}.json"
    write_summary(out, "preview_overhead", quick=args.quick, machine=machine,
                  targets={"p50_ratio_viewer_vs_idle_max": TARGET_P50_RATIO},
                  measured={"pass": target, **{name: {k: m[k] for k in ("pooled", "p50_ratio", "p99_ratio")}
                                               for name, m in modes.items()}},
                  details=details(args, load, model.describe(), modes))
    for name, m in modes.items():
        p = m["pooled"]
        print(f"{name}: total p50 off {p['off']['p50_ms']:.4f} / idle {p['idle']['p50_ms']:.4f} / viewer "
              f"{p['viewer']['p50_ms']:.4f} ms; p99 {p['off']['p99_ms']:.4f} / {p['idle']['p99_ms']:.4f} / "
              f"{p['viewer']['p99_ms']:.4f} ms; p50 viewer/idle {m['p50_ratio']['viewer/idle']['median']:.3f} "
              f"(min {m['p50_ratio']['viewer/idle']['min']:.3f}, max {m['p50_ratio']['viewer/idle']['max']:.3f}), "
              f"viewer/off {m['p50_ratio']['viewer/off']['median']:.3f}; "
              f"viewer got {p['viewer']['received_per_s']['jpeg_frames']:.1f} JPEG/s")
    print(f"results: {out}; pass: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
