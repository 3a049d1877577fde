"""The fleet's records without a fleet: ``release.py record`` turning the steps' (untrusted)
answers into a host's outcome, and ``host report --fleet`` rendering a row per Pi from them.
The playbooks themselves run in tests/test_fleet.py (slow)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from device import release, schema
from tests.conftest import ROOT

RELPY = ROOT / "device" / "release.py"
OLD = "20250101T000000Z-abc1234-0123456789ab"
NEW = "20250102T000000Z-abc1234-bbbbbbbbbbbb"
RUN = ROOT / "benchmarks" / "results" / "amd-epyc-vm" / "run-clip.json"


def answers(**steps) -> dict:
    """Raw stdout of each step, as the playbook registers it."""
    base = {"status": {"step": "status", "ok": True, "changed": False, "root": "/home/pi/mnist-edge",
                       "facts": {"machine": "aarch64", "python": "3.11", "os": "Debian GNU/Linux 12 (bookworm)"},
                       "current": {"release": OLD, "runtime": "ai-edge-litert"}, "up_to_date": False}}
    base.update({"install": INSTALL, **steps})
    return {k: json.dumps(v) if isinstance(v, dict) else v for k, v in base.items()}


INSTALL = {"step": "install", "ok": True, "changed": True, "release": NEW, "runtime": "ai-edge-litert"}
BENCH = {"step": "bench", "ok": True, "changed": False, "p50_ms": 0.8, "p99_ms": 2.5, "frames": 132,
         "within_budget": True, "golden": {"status": "identical", "images": 2200, "identical": 2200},
         "results": {"bench": f"reports/bench-{NEW}.json", "run": f"reports/run-{NEW}.json"}}


def outcome(failed_step=None, error=None, **steps) -> dict:
    return release.fleet_outcome({"host": "pi", "rollout": "r1", "action": "deploy", "release": NEW,
                                  "failed_step": failed_step, "error": error, "answers": answers(**steps)})


def test_switched_kept_rolled_back_failed():
    o = outcome(bench=BENCH, switch={"ok": True, "changed": True, "current": NEW, "previous": OLD})
    assert (o["outcome"], o["current"], o["previous"]) == ("switched", NEW, OLD)
    assert o["gate"]["p99_ms"] == 2.5 and o["gate"]["golden"]["identical"] == 2200
    assert o["results"] == {"bench": f"bench-{NEW}.json", "run": f"run-{NEW}.json"}
    assert o["machine"]["arch"] == "aarch64" and o["runtime"] == "ai-edge-litert"

    up = answers()["status"].replace('"up_to_date": false', '"up_to_date": true')
    o = outcome(status=up)
    assert o["outcome"] == "kept" and o["current"] == OLD and "up to date" in o["detail"]

    # The gate refused before the switch: the previous release never stopped being current.
    gate = {**BENCH, "ok": False, "p99_ms": 9.0, "within_budget": False,
            "error": "gate: p99 per-frame total is 9.000 ms, over the 5 ms budget"}
    o = outcome("gate", gate["error"], bench=gate,
                rollback={"ok": True, "changed": False, "current": OLD, "previous": None})
    assert o["outcome"] == "rolled back" and o["current"] == OLD and o["gate"]["within_budget"] is False
    assert o["detail"].startswith("gate: p99 per-frame total is 9.000 ms") and "never went live" in o["detail"]

    # A step after the switch failed: rollback --from switched back.
    o = outcome("service", "non-zero return code", bench=BENCH,
                switch={"ok": True, "changed": True, "current": NEW, "previous": OLD},
                failed={"ok": False, "error": "systemctl --user daemon-reload failed"},
                rollback={"ok": True, "changed": True, "current": OLD, "previous": NEW})
    assert o["outcome"] == "rolled back" and o["current"] == OLD
    assert o["detail"] == f"service: systemctl --user daemon-reload failed; current switched back to {OLD}"

    # Refused before anything was installed (an unsupported board): nothing changed.
    o = outcome("check the target's answer here (release.py check)", "armv6l: not supported", install="",
                rollback={"ok": True, "changed": False, "current": OLD})
    assert o["outcome"] == "failed" and o["current"] == OLD and "nothing installed, current stays" in o["detail"]

    # A first deploy that failed: nothing to fall back to.
    first = answers()["status"].replace(f'{{"release": "{OLD}", "runtime": "ai-edge-litert"}}', "null")
    o = outcome("smoke", "device golden: predictions differ", status=first,
                rollback={"ok": True, "changed": False, "current": None})
    assert o["outcome"] == "failed" and o["current"] is None and "no previous release" in o["detail"]


@pytest.mark.parametrize("field,value", [
    ("p99_ms", float("nan")), ("p99_ms", "1; rm -rf /"), ("frames", -1), ("within_budget", "yes"),
    ("results", {"run": "../../../etc/passwd"}), ("golden", {"status": "\x1b[2Jidentical"}),
])
def test_hostile_answer_values_are_recorded_as_missing(field, value):
    o = outcome(bench={**BENCH, field: value}, switch={"ok": True, "changed": True, "current": NEW})
    flat = json.dumps(o)
    assert "\x1b" not in flat and "passwd" not in flat and "rm -rf" not in flat
    if field in ("p99_ms", "frames", "within_budget"):
        assert o["gate"][field] is None
    json.loads(json.dumps(o), parse_constant=lambda c: pytest.fail(f"{c} in a record"))


def test_hostile_display_text_and_names():
    o = outcome("gate", None, bench={"ok": False, "error": "\x1b]0;pwned\x07gate: over"},
                status=answers()["status"].replace(OLD, "../../x"),
                rollback={"ok": True, "changed": False, "current": "$(id)"})
    assert o["current"] is None and o["previous"] is None and o["outcome"] == "failed"
    assert all(" " <= c <= "~" for c in o["detail"])


def record(kind, doc, out):
    return subprocess.run([sys.executable, str(RELPY), "record", kind, "--out", str(out)], input=json.dumps(doc),
                          capture_output=True, text=True, timeout=60)


def host_doc(host, rollout, **kw):
    return {"host": host, "board": "pi4", "rollout": rollout, "action": "deploy", "release": NEW,
            "budget_ms": 5, "answers": answers(**kw)}


def make_fleet(tmp_path):
    """reports/fleet as the playbook leaves it after a rollout that stopped: a switched, b
    rolled back (gate), c not reached (its outcome is from an older rollout)."""
    top = tmp_path / "fleet"
    r = record("rollout", {"rollout": "r2", "action": "deploy", "hosts": ["a", "b", "c"], "canary": ["a", "b"],
                           "release": NEW}, top / "rollout.json")
    assert r.returncode == 0, r.stderr
    switch = {"ok": True, "changed": True, "current": NEW, "previous": OLD}
    assert record("outcome", host_doc("a", "r2", bench=BENCH, switch=switch), top / "a" / "outcome.json").returncode == 0
    shutil.copy(RUN, top / "a" / f"run-{NEW}.json")
    gate = {**BENCH, "ok": False, "p99_ms": 9.0, "within_budget": False, "error": "gate: over the 5 ms budget"}
    rb = {"ok": True, "changed": False, "current": OLD}
    assert record("outcome", host_doc("b", "r2", bench=gate, rollback=rb, failed="") | {"failed_step": "gate"},
                  top / "b" / "outcome.json").returncode == 0
    up = answers()["status"].replace('"up_to_date": false', '"up_to_date": true')
    assert record("outcome", host_doc("c", "r1", status=up), top / "c" / "outcome.json").returncode == 0
    # d, another group, was not in rollout r2 at all: its own last outcome stands.
    assert record("outcome", host_doc("d", "r1", status=up), top / "d" / "outcome.json").returncode == 0
    return top


def test_record_writes_through_the_schema_and_keeps_the_figures_when_kept(tmp_path):
    top = make_fleet(tmp_path)
    o = schema.load(top / "a" / "outcome.json", expect=("fleet_outcome",))
    assert o.outcome == "switched" and o.gate["p99_ms"] == 2.5
    # A re-run: a is up to date now; its record keeps the gate figures measured at the switch.
    status = answers()["status"].replace(OLD, NEW).replace('"up_to_date": false', '"up_to_date": true')
    assert record("outcome", host_doc("a", "r3", status=status), top / "a" / "outcome.json").returncode == 0
    o = schema.load(top / "a" / "outcome.json", expect=("fleet_outcome",))
    assert o.outcome == "kept" and o.rollout == "r3" and o.gate["p99_ms"] == 2.5 and o.results["run"]
    r = record("outcome", {**host_doc("a", "r3"), "action": "nonsense"}, top / "a" / "x.json")
    assert r.returncode == 2 and "fleet action" in r.stderr and not (top / "a" / "x.json").exists()


def test_host_report_fleet_table(tmp_path):
    top = make_fleet(tmp_path)
    md = tmp_path / "fleet.md"
    r = subprocess.run([sys.executable, "-m", "host.cli", "report", "--fleet", str(top), "--out",
                        str(tmp_path / "fleet.html"), "--markdown", str(md)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {ln.split("|")[1].strip(): ln for ln in md.read_text().splitlines() if ln.startswith("| ") and
            ln.split("|")[1].strip() in "abcd"}
    assert set(rows) == {"a", "b", "c", "d"}
    assert "| kept | up to date" in rows["d"]
    assert "| switched |" in rows["a"] and "0.800 / 2.500 (budget 5)" in rows["a"] and "2200/2200 identical" in rows["a"]
    assert "ai_edge_litert" in rows["a"] or "ai-edge-litert" in rows["a"]
    assert "| rolled back |" in rows["b"] and "OVER" in rows["b"] and OLD in rows["b"]
    assert "kept (not reached)" in rows["c"] and "rollout r2 stopped before this host" in rows["c"]
    assert "Rollout r2 (deploy of" in r.stdout and "1 switched, 1 rolled back, 1 kept (not reached)." in r.stdout
    html = (tmp_path / "fleet.html").read_text()
    assert "<h2>Fleet</h2>" in html and html.count("<tr>") >= 4
