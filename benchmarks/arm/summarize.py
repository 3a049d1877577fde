"""Collect the emulated board matrix into one file and a table (for NOTES.md).

    python -m benchmarks.arm.summarize            # reads benchmarks/results/<cell>/

Per cell: every step's exit status, the CPU check (uname -m, AT_HWCAP, which optional
instructions raise SIGILL), the runtime deployed and the one ``device.platforms`` chooses,
golden parity (with XNNPACK and without), photo and clip accuracy, and per-item parity of the
whole camera pipeline (photos and clip frames) against the same code on this x86 machine.
Writes ``benchmarks/results/arm-emulated/matrix.json``.  Timings are not collected: under
emulation they mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.arm.runtime_matrix import CPUS

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
OUT = RESULTS / "arm-emulated" / "matrix.json"
PHOTOS = REPO.parent / "shared" / "data" / "digit-photos"
CELLS = {  # cell -> (OS bits, QEMU CPU model)
    "pi3-a53-emulated": ("64-bit", "cortex-a53"),
    "pi4-a72-emulated": ("64-bit", "cortex-a72"),
    "pi5-a76-emulated": ("64-bit", "cortex-a76"),
    "pi2-a7-armv7l-emulated": ("32-bit", "cortex-a7"),
}


def _jsonl(path: Path) -> list[dict]:
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def x86_reference(clip: Path | None) -> dict:
    """Photo and clip predictions of the same device code on this machine."""
    ref = {"photos": {}, "clip": []}
    cmd = [sys.executable, "-m", "device.cli"]
    out = subprocess.run(cmd + ["classify", str(PHOTOS), "--labels", str(PHOTOS / "labels.csv"), "--json"],
                         cwd=REPO, capture_output=True, text=True).stdout
    ref["photos"] = {Path(r["file"]).name: r.get("prediction") for r in map(json.loads, out.splitlines())
                     if "file" in r}
    if clip and clip.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(cmd + ["run", "--source", str(clip), "--quiet", "--output", f"{tmp}/r.json",
                                  "--frames-out", f"{tmp}/f.jsonl"], cwd=REPO, capture_output=True)
            ref["clip"] = [r.get("prediction") for r in _jsonl(Path(tmp) / "f.jsonl")]
    return ref


def clip_accuracy(preds: list, labels: list) -> dict:
    pairs = [(p, l) for p, l in zip(preds, labels) if l is not None]
    ok = sum(p == l for p, l in pairs)
    return {"frames": len(preds), "digit_frames": len(pairs), "correct": ok,
            "accuracy": round(ok / len(pairs), 4) if pairs else None}


def golden_summary(doc: dict | None) -> dict | None:
    if not doc:
        return None
    return {k: doc.get(k) for k in ("status", "identical", "images", "outputs_identical", "runtime",
                                    "xnnpack", "differ", "mnist", "photos", "outputs_sha256")}


def cell_summary(cell: str, ref: dict, labels: list) -> dict:
    d = RESULTS / cell
    bits, cpu = CELLS[cell]
    steps = {s["step"]: s["rc"] for s in _jsonl(d / "steps.jsonl")}
    check = next((json.loads(l[7:]) for l in (d / "cpu-check.log").read_text().splitlines()
                  if l.startswith("RESULT ")), {}) if (d / "cpu-check.log").is_file() else {}
    info = "".join((d / n).read_text() for n in ("info.log", "info-choice.log") if (d / n).is_file())
    choice = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("runtime choice")), None)
    runtime = None if steps.get("deploy") else next(
        (l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("runtime:") and "not installed" not in l), None)
    rec = {"cell": cell, "os_bits": bits, "qemu_cpu": cpu, "board_cpuinfo": CPUS[cpu][1],
           "steps": steps, "uname_m": check.get("uname"), "hwcap": check.get("hwcap"),
           "instructions": check.get("instructions"), "runtime_deployed": runtime,
           "runtime_choice": choice}
    for name in ("golden", "golden-ref", "golden-choice", "golden-choice-ref"):
        g = golden_summary(_json(d / f"{name}.json"))
        if g:
            rec[name] = g
    for tag in ("", "-choice"):
        rows = [r for r in _jsonl(d / f"classify{tag}.jsonl") if "file" in r]
        if rows:
            preds = {Path(r["file"]).name: r.get("prediction") for r in rows}
            diff = sorted(k for k in preds if preds[k] != ref["photos"].get(k))
            summ = next((r for r in _jsonl(d / f"classify{tag}.jsonl") if r.get("summary")), {})
            rec[f"photos{tag}"] = {"correct": summ.get("correct"), "labelled": summ.get("labelled"),
                                   "same_as_x86": len(preds) - len(diff), "differ_from_x86": diff}
        frames = [r.get("prediction") for r in _jsonl(d / f"run-frames{tag}.jsonl")]
        if frames:
            same = sum(a == b for a, b in zip(frames, ref["clip"]))
            rec[f"clip{tag}"] = {**clip_accuracy(frames, labels), "same_as_x86": same,
                                 "x86": clip_accuracy(ref["clip"], labels)}
    return rec


def main() -> int:
    clip = Path.home() / ".cache" / "mnist-edge" / "bench-clip-s0.avi"
    labels = json.loads(Path(str(clip) + ".labels.json").read_text())["labels"] if clip.is_file() else []
    ref = x86_reference(clip)
    cells = [cell_summary(c, ref, labels) for c in CELLS if (RESULTS / c / "steps.jsonl").is_file()]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"label": "EMULATED (qemu-user 7.2 on x86_64): timings meaningless",
                               "cells": cells}, indent=1) + "\n")
    for c in cells:
        g = c.get("golden-choice") or c.get("golden") or {}
        print(f"{c['cell']:<24} {c['os_bits']} {c['qemu_cpu']:<11} uname {c['uname_m']}  steps "
              f"{' '.join(f'{k}={v}' for k, v in c['steps'].items())}  golden {g.get('identical')}/"
              f"{g.get('images')} ({g.get('runtime')})")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
