"""fleet/deploy.yml and rollback.yml with ansible-playbook against five "Pis": local users of a
real OpenSSH server on 127.0.0.1 (host keys checked against the test's known_hosts), grouped
by board (pi5: three, pi4: two).  A host is sabotaged with an impossible budget (0.001 ms) so
that its gate fails: in the canary batch, and in a later batch.

The tests run in order on one fleet (each starts from the state the previous one left), as a
rollout does.
"""

import os
import shutil
import subprocess
import sys

import pytest

from device import schema
from tests import fleet_lab, sshd
from tests.conftest import GOLDEN_IMAGES, ROOT, SHIPPED

pytestmark = pytest.mark.slow

HOSTS = {"pi5-a": "pi5", "pi5-b": "pi5", "pi5-c": "pi5", "pi4-a": "pi4", "pi4-b": "pi4"}
OTHERS = ("pi5-b", "pi5-c", "pi4-b")        # not in the canary batch (pi5-a, pi4-a)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    why = sshd.available() or (None if shutil.which("ansible-playbook", path=os.path.dirname(sys.executable))
                               else "ansible-core is not installed (pip install -e '.[fleet]')")
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    f = fleet_lab.start(tmp_path_factory.mktemp("fleet"), HOSTS)
    yield f
    fleet_lab.stop(f)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Release A (the shipped model) and B (the same model, another manifest: another release
    with the same golden expectations)."""
    return {"A": str(SHIPPED), "B": fleet_lab.other_release(tmp_path_factory.mktemp("models") / "B", "release B")}


def deploy(fleet, *args, budgets=None, model=None, book="deploy.yml"):
    inv = fleet.inventory(budgets)
    extra = ["-e", f"reports={fleet.tmp / 'reports'}"] + (["-e", f"model={model}"] if model else [])
    r = fleet_lab.playbook(fleet, book, inv, *extra, *args)
    (fleet.tmp / "last.log").write_text(r.stdout + r.stderr)
    return r, fleet_lab.recap(r.stdout)


def outcome(fleet, host) -> schema.FleetOutcome:
    return schema.load(fleet.tmp / "reports" / host / "outcome.json", expect=("fleet_outcome",))


def content(release: str | None) -> str | None:
    """A release's content hash (its name's end): two packs of the same payload differ only by
    their time stamp."""
    return release and release.rsplit("-", 1)[1]


def rollout(fleet) -> schema.FleetRollout:
    return schema.load(fleet.tmp / "reports" / "rollout.json", expect=("fleet_rollout",))


def test_rollout_switches_every_pi_then_a_rerun_changes_nothing(fleet, models):
    r, rec = deploy(fleet)
    assert r.returncode == 0, r.stdout[-3000:]
    assert set(rec) >= set(HOSTS) and all(rec[h]["failed"] == 0 and rec[h]["changed"] > 0 for h in HOSTS)
    ro = rollout(fleet)
    assert ro.canary == ["pi5-a", "pi4-a"] and ro.hosts == list(HOSTS)
    first = {h: fleet.current(h) for h in HOSTS}
    assert len(set(first.values())) == 1 and None not in first.values()
    for h in HOSTS:
        o = outcome(fleet, h)
        assert (o.outcome, o.rollout, o.board, o.current) == ("switched", ro.rollout, HOSTS[h], first[h])
        assert o.gate["within_budget"] is True and o.gate["golden"]["status"] == "identical"
        # The Pi's own results came back, in the device's schema.
        for kind in ("bench", "run"):
            res = schema.load(fleet.tmp / "reports" / h / o.results[kind], expect=(kind,))
            assert res.model["sha256"] == ro.model_sha256

    # Again, nothing changed: changed=0 everywhere, and every Pi says it kept its release.
    r, rec = deploy(fleet)
    assert r.returncode == 0 and all(rec[h]["changed"] == 0 and rec[h]["failed"] == 0 for h in HOSTS), r.stdout[-3000:]
    assert {h: fleet.current(h) for h in HOSTS} == first
    assert all(outcome(fleet, h).outcome == "kept" for h in HOSTS)
    assert outcome(fleet, "pi4-b").gate["p99_ms"] is not None       # the figures of the switch stay

    # --check with another model: says what would happen on each Pi, changes nothing anywhere.
    before = {h: fleet.snapshot(h) for h in HOSTS}
    reports = sorted((p, p.stat().st_mtime_ns) for p in (fleet.tmp / "reports").rglob("*"))
    r, rec = deploy(fleet, "--check", model=models["B"])
    assert r.returncode == 0 and all(rec[h]["changed"] == 1 for h in HOSTS), r.stdout[-3000:]
    assert r.stdout.count("would send ") == len(HOSTS)
    assert {h: fleet.snapshot(h) for h in HOSTS} == before
    assert sorted((p, p.stat().st_mtime_ns) for p in (fleet.tmp / "reports").rglob("*")) == reports


def test_a_failing_canary_stops_the_rollout_before_other_hosts(fleet, models):
    before = {h: fleet.snapshot(h) for h in OTHERS}
    a = fleet.current("pi5-a")
    r, rec = deploy(fleet, budgets={"pi5-a": 0.001}, model=models["B"])
    assert r.returncode != 0
    assert "canary failed on pi5-a: rollout stopped" in r.stdout, r.stdout[-3000:]
    o = outcome(fleet, "pi5-a")
    assert o.outcome == "rolled back" and o.failed_step == "gate" and fleet.current("pi5-a") == a
    assert "over the 0.001 ms budget" in o.detail and o.gate["within_budget"] is False
    # The other canary (another board) passed its own gate and switched; nobody else was touched.
    assert outcome(fleet, "pi4-a").outcome == "switched" and fleet.current("pi4-a") != a
    assert {h: fleet.snapshot(h) for h in OTHERS} == before
    assert all(outcome(fleet, h).rollout != rollout(fleet).rollout for h in OTHERS)


def test_a_failing_host_in_a_batch_is_rolled_back_and_later_batches_stop(fleet, models):
    """Batches after the canary: [pi5-b, pi5-c], then [pi4-b].  pi5-b's gate fails: pi5-c (same
    batch) still switches, pi5-b keeps its release, and max_fail_percentage (0) stops the
    rollout before pi4-b."""
    a = fleet.current("pi5-b")
    before = fleet.snapshot("pi4-b")
    r, rec = deploy(fleet, "-e", '{"batches": [2, "100%"]}', budgets={"pi5-b": 0.001}, model=models["B"])
    assert r.returncode != 0
    b = content(fleet.current("pi4-a"))
    assert content(fleet.current("pi5-a")) == content(fleet.current("pi5-c")) == b != content(a)
    assert outcome(fleet, "pi5-a").outcome == "switched" and outcome(fleet, "pi4-a").outcome == "kept"
    assert outcome(fleet, "pi5-c").outcome == "switched"
    o = outcome(fleet, "pi5-b")
    assert o.outcome == "rolled back" and fleet.current("pi5-b") == a == o.current, o.detail
    assert rec["pi5-b"]["failed"] == 1 and rec["pi5-b"]["rescued"] == 1
    assert fleet.snapshot("pi4-b") == before and rec["pi4-b"]["changed"] == 0


def test_rollback_a_group_and_the_fleet_report(fleet, models, tmp_path):
    r, rec = deploy(fleet, model=models["B"])               # the rest catches up
    assert r.returncode == 0, r.stdout[-3000:]
    b = content(fleet.current("pi5-a"))
    assert {content(fleet.current(h)) for h in HOSTS} == {b}
    before = {h: fleet.snapshot(h) for h in HOSTS}
    r, rec = deploy(fleet, "--check", "-e", "fleet=pi4", book="rollback.yml")
    assert r.returncode == 0 and rec["pi4-a"]["changed"] == rec["pi4-b"]["changed"] == 1, r.stdout[-3000:]
    assert {h: fleet.snapshot(h) for h in HOSTS} == before
    r, rec = deploy(fleet, "-e", "fleet=pi4", book="rollback.yml")
    assert r.returncode == 0 and set(rec) == {"pi4-a", "pi4-b"}, r.stdout[-3000:]
    assert content(fleet.current("pi4-a")) != b and content(fleet.current("pi5-a")) == b
    assert outcome(fleet, "pi4-b").outcome == "rolled back" and outcome(fleet, "pi4-b").action == "rollback"

    # host report renders one row per Pi from reports/fleet.
    out = tmp_path / "fleet.html"
    md = tmp_path / "fleet.md"
    r = subprocess.run([sys.executable, "-m", "host.cli", "report", "--fleet", str(fleet.tmp / "reports"),
                        "--out", str(out), "--markdown", str(md)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in md.read_text().splitlines() if ln.startswith("| pi")]
    assert len(rows) == len(HOSTS)
    row = {ln.split("|")[1].strip(): ln for ln in rows}
    assert "| rolled back |" in row["pi4-a"] and "fleet/rollback.yml" in row["pi4-a"]
    assert "| kept |" in row["pi5-c"] and f"{GOLDEN_IMAGES}/{GOLDEN_IMAGES} identical" in row["pi5-c"] and "(budget 1000)" in row["pi5-c"]
    assert "pi4-a" in out.read_text()
