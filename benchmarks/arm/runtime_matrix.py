"""Which TFLite runtime works on which Raspberry Pi CPU: every candidate under every CPU model.

Run as root on the workstation, after ``benchmarks/arm/emulated_matrix.sh`` built the roots:

    sudo python -m benchmarks.arm.runtime_matrix [--cpus cortex-a53,...] [--runtimes NAME,...]

For each CPU model (QEMU_CPU, in a Debian bookworm root under qemu-user, with the board's
recorded /proc/cpuinfo bind-mounted over the root's, so code that reads it sees a Pi) and each
candidate runtime (installed with its dependencies under ``<root>/opt/rt/<name>/`` by
``emulated_matrix.sh``), ``probe_runtime.py`` loads the runtime step by step with and without
XNNPACK and runs the golden set.  Outcome per cell: ok (golden identical), wrong (loads, but
predictions differ), crash (signal and last step reached, with the Python stack
faulthandler printed), or error.  One cell at a time (2 shared cores).

Writes ``benchmarks/results/arm-emulated/runtimes.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORK = Path(os.environ.get("ARM_WORK", "/var/tmp/mnist-edge-arm"))
OUT = REPO / "benchmarks" / "results" / "arm-emulated" / "runtimes.json"
CPUINFO = REPO / "tests" / "data" / "cpuinfo"

# CPU model -> (root, board whose /proc/cpuinfo the root shows, python runtime names)
CPUS = {
    "cortex-a53": ("arm64", "pi3bplus-a53-aarch64.txt"),
    "cortex-a72": ("arm64", "pi4b-a72-aarch64.txt"),
    "cortex-a76": ("arm64", "pi5-a76-aarch64.txt"),
    "cortex-a7": ("armhf", "pi2b-a7-armv7l.txt"),
}
# candidate dir under <root>/opt/rt -> runtime name for device.runtime
RUNTIMES = {
    "arm64": {"litert-2.3.0": "ai-edge-litert", "litert-2.2.0": "ai-edge-litert",
              "litert-2.1.6": "ai-edge-litert", "litert-2.0.3": "ai-edge-litert",
              "litert-1.4.0": "ai-edge-litert", "tflite-2.14.0": "tflite-runtime"},
    "armhf": {"tflite-2.14.0": "tflite-runtime"},
}


class RootMounts:
    """/proc (a fresh instance), /sys, /dev inside the root, and the board's cpuinfo over
    <root>/proc/cpuinfo; undone on exit, innermost first."""

    def __init__(self, root: Path, cpuinfo: Path | None):
        self.root, self.cpuinfo, self.done = root, cpuinfo, []

    def _mount(self, *args: str, target: Path) -> None:
        subprocess.run(["mount", *args, str(target)], check=True)
        self.done.append(target)

    def __enter__(self):
        self._mount("-t", "proc", "proc", target=self.root / "proc")
        self._mount("--rbind", "/sys", target=self.root / "sys")
        self._mount("--bind", "/dev", target=self.root / "dev")
        if self.cpuinfo:
            self._mount("--bind", str(self.cpuinfo), target=self.root / "proc" / "cpuinfo")
        return self

    def __exit__(self, *exc):
        for target in reversed(self.done):
            subprocess.run(["umount", "-l", str(target)], check=False)
        return False


def install_code(root: Path) -> None:
    """A fresh copy of the device side and the probe into <root>/opt/mnist-edge."""
    dest = root / "opt" / "mnist-edge"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(REPO / "device", dest / "device", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(HERE / "probe_runtime.py", dest / "probe_runtime.py")


def in_root(root: Path, cpu: str, argv: list[str], pythonpath: str = "", timeout: int = 1800):
    """Run ``argv`` in the root under QEMU CPU model ``cpu``: (rc or -signal, stdout, stderr, s)."""
    env = ["QEMU_CPU=" + cpu, "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8",
           "PYTHONDONTWRITEBYTECODE=1", "PYTHONFAULTHANDLER=1"]
    if pythonpath:
        env.append("PYTHONPATH=" + pythonpath)
    t0 = time.monotonic()
    try:
        p = subprocess.run(["chroot", str(root), "/usr/bin/env", "-i", *env, *argv],
                           capture_output=True, text=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = "timeout", exc.stdout or "", exc.stderr or ""
        out, err = (s.decode() if isinstance(s, bytes) else s for s in (out, err))
    return rc, out, err, round(time.monotonic() - t0, 1)


def outcome(rc, out: str, err: str) -> dict:
    stages = [l.split(" ", 1)[1] for l in out.splitlines() if l.startswith("STAGE ")]
    result = next((json.loads(l[7:]) for l in out.splitlines() if l.startswith("RESULT ")), None)
    rec = {"last_stage": stages[-1] if stages else None, "result": result}
    if rc == 0 and result:
        g = (result.get("golden") or {}).get("status")
        rec["outcome"] = {"identical": "ok", "different": "wrong"}.get(g, g or "ok")
    elif isinstance(rc, int) and rc < 0:
        rec["outcome"] = "crash"
        rec["signal"] = signal.Signals(-rc).name
    elif isinstance(rc, int) and rc > 128 and rc - 128 in signal.Signals._value2member_map_:
        rec["outcome"] = "crash"
        rec["signal"] = signal.Signals(rc - 128).name
    else:
        rec["outcome"] = "timeout" if rc == "timeout" else "error"
        rec["rc"] = rc
    if rec["outcome"] != "ok":
        # faulthandler's Python stack and qemu's own message are the useful part
        rec["stderr_tail"] = [l for l in err.splitlines() if l.strip()][-12:]
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", default=",".join(CPUS), help="CPU models, comma-separated")
    ap.add_argument("--runtimes", help="candidate names (default: all for the root's architecture)")
    ap.add_argument("--host-cpuinfo", action="store_true",
                    help="leave the root's /proc/cpuinfo as qemu-user shows it (the host's)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (chroot, mount)", file=sys.stderr)
        return 2
    out_path = Path(args.out)
    doc = json.loads(out_path.read_text()) if out_path.is_file() else {"cells": {}}
    doc["label"] = "EMULATED (qemu-user); timings meaningless"
    doc["qemu"] = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True,
                                 text=True).stdout.splitlines()[0]
    for cpu in args.cpus.split(","):
        arch, board = CPUS[cpu]
        root = WORK / arch
        install_code(root)
        cpuinfo = None if args.host_cpuinfo else CPUINFO / board
        names = args.runtimes.split(",") if args.runtimes else list(RUNTIMES[arch])
        with RootMounts(root, cpuinfo):
            rc, out, err, _ = in_root(root, cpu, ["python3", "/opt/mnist-edge/probe_runtime.py", "isa"])
            isa = outcome(rc, out, err)["result"]
            print(f"== {cpu} ({arch}, cpuinfo {board if cpuinfo else 'host'}): {json.dumps(isa)}", flush=True)
            for name in names:
                if name not in RUNTIMES[arch]:
                    continue
                for mode in ("xnnpack", "ref"):
                    rc, out, err, secs = in_root(
                        root, cpu, ["python3", "/opt/mnist-edge/probe_runtime.py", RUNTIMES[arch][name], mode],
                        pythonpath=f"/opt/mnist-edge:/opt/rt/{name}")
                    rec = {**outcome(rc, out, err), "seconds": secs}
                    key = f"{cpu}/{'host-cpuinfo' if not cpuinfo else 'board-cpuinfo'}/{name}/{mode}"
                    doc["cells"][key] = {"cpu": cpu, "arch": arch, "cpuinfo": board if cpuinfo else "host",
                                         "isa": isa, "candidate": name, "mode": mode, **rec}
                    g = (rec.get("result") or {}).get("golden") or {}
                    detail = (f"{g.get('identical')}/{g.get('images')} identical" if g
                              else f"{rec.get('signal', rec.get('rc', ''))} at {rec['last_stage']}")
                    print(f"   {name:<14} {mode:<8} {rec['outcome']:<8} {detail}  ({secs} s)", flush=True)
                    out_path.parent.mkdir(parents=True, exist_ok=True)
                    out_path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
