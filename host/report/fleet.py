"""``host report --fleet reports/fleet``: one row per Pi of a fleet rollout.

fleet/deploy.yml and rollback.yml leave, in ``reports/fleet/``, the rollout's record
(``rollout.json``) and per host a folder with its outcome (``outcome.json``, both kinds of
:mod:`device.schema`, written by ``device/release.py record``) and the bench / run results the
Pi measured in its gate.  A host the last rollout names without an outcome of that rollout was
not reached (the rollout stopped before it, or it was unreachable): it kept its release.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from device import schema
from device.errors import UsageError
from host.report import load
from host.report.load import DeviceResult
from host.report.tables import Table, _num


@dataclass
class Pi:
    host: str
    outcome: schema.FleetOutcome | None
    run: DeviceResult | None
    reached: bool              # False: named by the last rollout, without an outcome of it


@dataclass
class Fleet:
    rollout: schema.FleetRollout | None
    pis: list[Pi]


def _record(path: Path, kind: str, problems: list[str]):
    try:
        return schema.load(path, expect=(kind,))
    except UsageError as exc:
        problems.append(f"{exc}; skipped")
        return None


def load_fleet(folder, problems: list[str]) -> Fleet:
    """The rollout, and every host folder with an outcome (plus the rollout's hosts without
    one), in the rollout's host order.  UsageError when the folder holds no fleet record."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--fleet {folder}: no such folder (fleet/deploy.yml writes reports/fleet)")
    ro = _record(folder / "rollout.json", "fleet_rollout", problems) if (folder / "rollout.json").exists() else None
    names = list(ro.hosts) if ro else []
    names += sorted(p.parent.name for p in folder.glob("*/outcome.json") if p.parent.name not in names)
    if not names:
        raise UsageError(f"--fleet {folder}: no rollout.json nor HOST/outcome.json; run fleet/deploy.yml first")
    pis = []
    for host in names:
        d = folder / host
        o = _record(d / "outcome.json", "fleet_outcome", problems) if (d / "outcome.json").exists() else None
        run_name = (o.results.get("run") if o else None) or (o and o.current and f"run-{o.current}.json")
        run = None
        if run_name and (d / run_name).exists():
            try:
                doc = load.load_one(d / run_name, problems)
                run = doc.data if doc.kind == "run" else None
            except UsageError as exc:
                problems.append(f"{host}: {exc}; skipped")
        # A host the last rollout did not aim at (a rollback of one group) shows its own last outcome.
        pis.append(Pi(host, o, run, reached=bool(o and (ro is None or host not in ro.hosts
                                                       or o.rollout == ro.rollout))))
    return Fleet(ro, pis)


def _golden(g: dict) -> str:
    g = g.get("golden") or {}
    if g.get("status") == "identical":
        return f"{g.get('identical')}/{g.get('images')} identical"
    return g.get("status") or "-"


def _latency(o: schema.FleetOutcome | None, run: DeviceResult | None) -> str:
    """The gate's p50 / p99 per-frame total; without a gate this time (a rollback), the current
    release's own replay run, against the budget it ran with."""
    if o and o.gate.get("p99_ms") is not None:
        p50, p99, budget, within = o.gate.get("p50_ms"), o.gate["p99_ms"], o.budget_ms, o.gate.get("within_budget")
    elif run and run.stages.get("total") and run.stages["total"].p99 is not None:
        p50, p99, budget = run.stages["total"].p50, run.stages["total"].p99, run.budget_ms
        within = None if budget is None else p99 <= budget
    else:
        return "-"
    return f"{_num(p50, '.3f')} / {p99:.3f} (budget {_num(budget, 'g')}{', OVER' if within is False else ''})"


def _outcome(pi: Pi, ro) -> tuple[str, str]:
    if pi.outcome is None:
        return "kept (not reached)", "no outcome recorded: unreachable, or the rollout stopped first"
    if not pi.reached:
        return ("kept (not reached)", f"rollout {ro.rollout} stopped before this host; its last outcome "
                f"({pi.outcome.rollout}): {pi.outcome.outcome}, {pi.outcome.detail}")
    return pi.outcome.outcome, pi.outcome.detail


def fleet_table(fleet: Fleet) -> Table:
    t = Table(["Pi", "board", "CPU", "runtime", "release", "p50 / p99 ms per frame", "golden set",
               "peak RSS MB", "outcome", "detail"],
              caption="One row per Pi: its gate (the replay run's per-frame total and the golden-set "
                      "check, measured on the Pi before the switch) and what the rollout did.")
    for pi in fleet.pis:
        o, run = pi.outcome, pi.run
        m = run.machine if run else (o.machine if o else {})
        board = " / ".join(str(b) for b in (o and o.board, m.get("board")) if b) or "-"
        cpu = m.get("cpu") or m.get("arch") or "-"
        runtime = (run and run.model.get("runtime")) or (o and o.runtime) or "-"
        outcome, detail = _outcome(pi, fleet.rollout)
        t.rows.append([pi.host, board, cpu, runtime, (o and o.current) or "-", _latency(o, run),
                       _golden(o.gate) if o else "-", _num(run and run.peak_rss_mb, ".1f"), outcome, detail])
    return t


def fleet_notes(fleet: Fleet) -> list[str]:
    ro = fleet.rollout
    counts: dict[str, int] = {}
    for pi in fleet.pis:
        if ro and pi.host not in ro.hosts:
            continue
        o = _outcome(pi, ro)[0]
        counts[o] = counts.get(o, 0) + 1
    tally = ", ".join(f"{n} {o}" for o, n in counts.items())
    head = (f"Rollout {ro.rollout} ({ro.action}{' of ' + ro.release if ro.release else ''}) to "
            f"{len(ro.hosts)} Pi(s)" + (f", canary {', '.join(ro.canary)}" if ro.canary else "") if ro
            else "No rollout.json: outcomes as last recorded")
    notes = [f"{head}: {tally}."]
    if not any(pi.run and pi.run.machine.get("is_raspberry_pi") for pi in fleet.pis):
        notes.append("No host in this fleet reported a Raspberry Pi board: these figures are not Pi figures.")
    return notes
