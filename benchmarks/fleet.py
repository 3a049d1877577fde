"""Fleet rollout timing: ``fleet/deploy.yml`` against loopback "Pis" (local users of one
OpenSSH server on 127.0.0.1, tests/fleet_lab.py), per host and per step, with forks 1, 2, 4, 8.

    python -m benchmarks.fleet [--hosts 8]        (root, openssh-server, ansible-core)

Runs, in order, on one fleet (boards pi5, pi4, pi3; canary = one per board, then 25 %, 100 %):
  first     a fresh fleet, forks 8: every host makes its venv (pip from a local wheel folder)
  forks=F   a new release (same model, another manifest) with F forks, venvs reused: transfer,
            install, smoke, gate (bench), switch on every host
  noop=F    the same release again (nothing to do): the controller's cost per host

Every "Pi" here shares this machine's 2 cores with the controller (and with whatever else
runs: the load average is recorded before and after each run), so the Pi-side steps are
contended and more forks cannot make them faster here; on a real fleet each Pi has its own
CPU.  What transfers to a real fleet is the controller's share: CPU seconds per host (children
of ansible-playbook: its workers, ssh clients, the local release.py check/record), and the
number of SSH operations per host.  Results: results/<machine>/fleet.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.harness import RESULTS, results_dir, write_summary
from device import schema
from tests import fleet_lab

CALLBACKS = Path(__file__).resolve().parent / "fleet_callbacks"
STEPS = ("status", "check the target's answer here (release.py check)", "folders", "transfer", "install",
         "smoke", "bench clip", "bench", "results to reports/fleet", "switch", "outcome record")


def boards(n: int) -> dict:
    """n hosts over three boards, in inventory order: pi5, pi4, pi3 (3/8, 3/8, 2/8)."""
    names = {}
    for i in range(n):
        board = "pi5" if i < (3 * n + 7) // 8 else "pi4" if i < (6 * n + 7) // 8 else "pi3"
        names[f"{board}-{i + 1}"] = board
    return names


def per_host(lines: list[dict]) -> dict:
    """host -> {"wall_s": first start to last end, "steps": {task: seconds}}."""
    out: dict = defaultdict(lambda: {"start": None, "end": None, "steps": defaultdict(float)})
    for ln in lines:
        h = out[ln["host"]]
        h["start"] = ln["start"] if h["start"] is None else min(h["start"], ln["start"])
        h["end"] = max(h["end"] or ln["end"], ln["end"])
        if ln["status"] != "skipped":
            task = next((s for s in STEPS if ln["task"].startswith(s)), "other")
            h["steps"][task] += ln["end"] - ln["start"]
    return {k: {"wall_s": round(v["end"] - v["start"], 2), "steps": {s: round(t, 2) for s, t in v["steps"].items()}}
            for k, v in out.items()}


def active(per_host_runs: dict, hosts) -> dict:
    """Per run: each host's busy time (its tasks' durations summed, waits for other hosts and
    batches left out): min / median / max, and the median per step."""
    out = {}
    for name, hosts_ in per_host_runs.items():
        busy = sorted(round(sum(h["steps"].values()), 2) for n, h in hosts_.items() if n in hosts)
        steps: dict = defaultdict(list)
        for n, h in hosts_.items():
            if n in hosts:
                for s, t in h["steps"].items():
                    steps[s].append(t)
        out[name] = {"host_busy_s": {"min": busy[0], "median": busy[len(busy) // 2], "max": busy[-1]},
                     "step_s_median": {s: sorted(v)[len(v) // 2] for s, v in steps.items()}}
    return out


def resummarize(path: Path) -> None:
    """Add the busy-time figures to a result written before they existed (same raw data)."""
    doc = schema.load(path, expect=("benchmark",))
    for name, fig in active(doc.details["per_host"], doc.details["boards"]).items():
        doc.measured[name].update(fig)
    doc.write(path)


def run(fleet, tag: str, forks: int, model: str | None, tmp: Path) -> dict:
    times = tmp / f"times-{tag}.jsonl"
    os.environ.update(MNIST_EDGE_TASK_TIMES=str(times), ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
                      ANSIBLE_CALLBACKS_ENABLED="task_times")
    inv = fleet.inventory()
    extra = ["-e", f"reports={tmp / 'reports'}"] + (["-e", f"model={model}"] if model else [])
    load0 = os.getloadavg()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = fleet_lab.playbook(fleet, "deploy.yml", inv, *extra, forks=forks, timeout=3600)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    (tmp / f"log-{tag}.txt").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"run {tag} failed (exit {r.returncode}); log: {tmp / f'log-{tag}.txt'}")
    lines = [json.loads(ln) for ln in times.read_text().splitlines()] if times.exists() else []
    hosts = per_host(lines)
    rec = fleet_lab.recap(r.stdout)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    n = len(fleet.hosts)
    walls = sorted(h["wall_s"] for name, h in hosts.items() if name in fleet.hosts)
    steps: dict = defaultdict(list)
    for name, h in hosts.items():
        if name in fleet.hosts:
            for s, t in h["steps"].items():
                steps[s].append(t)
    res = {"forks": forks, "wall_s": round(wall, 1), "controller_cpu_s": round(cpu, 1),
           "controller_cpu_s_per_host": round(cpu / n, 2), "loadavg_before": [round(x, 2) for x in load0],
           "loadavg_after": [round(x, 2) for x in os.getloadavg()],
           "changed": sum(rec[h]["changed"] for h in fleet.hosts),
           "host_wall_s": {"min": walls[0], "median": walls[len(walls) // 2], "max": walls[-1]},
           "step_s_median": {s: round(sorted(v)[len(v) // 2], 2) for s, v in steps.items()},
           "tasks_run_per_host": round(sum(1 for ln in lines if ln["status"] != "skipped" and ln["host"] in fleet.hosts)
                                       / n, 1),
           "per_host": hosts}
    print(f"{tag}: wall {res['wall_s']} s, controller CPU {res['controller_cpu_s']} s, host wall median "
          f"{res['host_wall_s']['median']} s, load {res['loadavg_before'][0]} -> {res['loadavg_after'][0]}", flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--forks", default="1,2,4,8")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--resummarize", metavar="FLEET.json", help="recompute the summary figures of a result")
    args = ap.parse_args(argv)
    if args.resummarize:
        resummarize(Path(args.resummarize))
        return 0
    forks = [int(f) for f in args.forks.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-", dir="/tmp"))
    fleet = fleet_lab.start(tmp, boards(args.hosts))
    runs = {}
    try:
        t0 = time.monotonic()
        runs["first"] = run(fleet, "first", max(forks), None, tmp)
        for f in forks:
            last = fleet_lab.other_release(tmp / "models" / f"f{f}", f"benchmark release f{f}")
            runs[f"forks={f}"] = run(fleet, f"forks={f}", f, last, tmp)
        for f in (forks[0], forks[-1]):
            runs[f"noop={f}"] = run(fleet, f"noop={f}", f, last, tmp)
        total = time.monotonic() - t0
        wheels = sum(p.stat().st_size for p in fleet.wheels.glob("*"))
    finally:
        fleet_lab.stop(fleet)
    measured = {name: {k: v for k, v in r.items() if k != "per_host"} for name, r in runs.items()}
    for name, fig in active({n: r["per_host"] for n, r in runs.items()}, fleet.hosts).items():
        measured[name].update(fig)
    out = results_dir(args.results) / "fleet.json"
    write_summary(out, "fleet", targets={"hosts": args.hosts, "forks": forks}, measured=measured,
                  details={"per_host": {name: r["per_host"] for name, r in runs.items()},
                           "boards": boards(args.hosts), "total_s": round(total, 1),
                           "note": "targets are local users of this machine: Pi-side steps share its 2 cores",
                           "bench_runs": 100, "wheel_folder_bytes": wheels})
    print(f"results: {out}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
