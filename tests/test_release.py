"""device/release.py without SSH: the validator of a target's answers, the systemd quoting, the
release bookkeeping (switch, keep N, rollback) and the payload checks, on local folders."""

from __future__ import annotations

import copy
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from device import release
from device.manifest import sha256_file
from device.platforms import parse_cpuinfo
from tests.conftest import GOLDEN_IMAGES, ROOT, SHIPPED

RELPY = ROOT / "device" / "release.py"
CPUINFO = ROOT / "tests" / "data" / "cpuinfo"
NAME1 = "20250101T000000Z-abc1234-0123456789ab"
NAME2 = "20250102T000000Z-abc1234-bbbbbbbbbbbb"
NAME3 = "20250103T000000Z-abc1234-cccccccccccc"
NAME4 = "20250104T000000Z-abc1234-dddddddddddd"
PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4"""


def run_py(*args, cwd=None, stdin=None):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          input=stdin, timeout=300)


def status_answer(**facts) -> dict:
    f = {"machine": "aarch64", "python": "3.11", "pointer_bits": 64, "os": "Debian GNU/Linux 12 (bookworm)",
         "free_kb": 8_000_000, "rsync": True, "picamera2": "installed", "cpuinfo": PI4_CPUINFO}
    f.update(facts)
    return {"step": "status", "ok": True, "changed": False, "facts": f, "current": None, "up_to_date": False}


def check_lines(doc) -> dict:
    return dict(line.split("=", 1) for line in release.check_status(doc, "0123456789ab"))


# --- the validator: everything the target says is untrusted ---------------------------------

def test_check_accepts_this_machines_real_answer(tmp_path):
    doc = release.step_status(release.Root(str(tmp_path / "root")), "0123456789ab")
    lines = check_lines(json.loads(json.dumps(doc)))
    assert lines["up_to_date"] == "no" and lines["current"] == ""
    assert lines["display"].startswith(f"target: {os.uname().machine}, ")
    assert lines["transfer"] in ("rsync", "tar")


def test_check_decides_with_the_workstations_code():
    lines = check_lines(status_answer())
    assert "Cortex-A72" in lines["runtime"] and "ai-edge-litert==" in lines["requirements"]
    assert "numpy<2" in lines["requirements"]          # apt's picamera2 is there
    # The same board with 32-bit Pi OS (a 64-bit kernel still says aarch64): tflite-runtime.
    lines = check_lines(status_answer(pointer_bits=32))
    assert "tflite-runtime==" in lines["requirements"] and "+apt python3-numpy" in lines["requirements"]
    assert lines["display"] == ("target: aarch64, Debian GNU/Linux 12 (bookworm), Python 3.11, "
                                "7812 MB free, transfer by rsync")


HOSTILE = "P[$(touch /tmp/pwned-release-test)]"


@pytest.mark.parametrize("field,value", [
    ("machine", HOSTILE), ("machine", "aarch64\n"), ("machine", "x86_64; id"), ("machine", 7),
    ("python", HOSTILE), ("python", "3.11`id`"), ("python", "3"), ("python", "3.11.2"), ("python", 3.11),
    ("free_kb", HOSTILE), ("free_kb", "8000000"), ("free_kb", -1), ("free_kb", 1.5), ("free_kb", True),
    ("free_kb", 2 ** 64), ("pointer_bits", 16), ("pointer_bits", "64"), ("pointer_bits", None),
    ("rsync", "yes"), ("rsync", 1), ("rsync", HOSTILE),
    ("picamera2", "installed; id"), ("picamera2", None),
    ("cpuinfo", "x" * 70000), ("cpuinfo", ["Features: fp"]),
    ("os", 12), ("os", None),
])
def test_check_refuses_a_bad_fact_naming_it(field, value):
    with pytest.raises(release.Refused) as e:
        check_lines(status_answer(**{field: value}))
    msg = str(e.value)
    assert f"answered {field} = " in msg and "refusing" in msg
    assert msg.isprintable() and msg.isascii() and "\n" not in msg


@pytest.mark.parametrize("doc", [
    [], "x", {"facts": "x"}, {**status_answer(), "up_to_date": "yes"},
    {**status_answer(), "current": {"release": "../../etc"}},
    {**status_answer(), "current": {"release": "20250101T000000Z-a-0123456789ab\n"}},
    {**status_answer(), "current": "20250101T000000Z-abc1234-0123456789ab"},
])
def test_check_refuses_a_malformed_answer(doc):
    with pytest.raises(release.Refused, match="refusing"):
        check_lines(doc)


def test_check_makes_display_text_terminal_safe():
    evil = "Pi OS \x1b]0;owned\x07 \x1b[2J$(touch x)\u202e\nsecond line"
    lines = check_lines(status_answer(os=evil, cpuinfo="CPU part\t: 0xd08\nmodel name\t: \x1b[31mred\x9b"))
    for v in lines.values():
        assert v.isprintable() and v.isascii() and "\x1b" not in v
    assert "Pi OS ?]0;owned? ?[2J$(touch x)??second line" in lines["display"]


@pytest.mark.parametrize("facts,expected", [
    ({"machine": "riscv64"}, "unsupported architecture 'riscv64'"),
    ({"python": "3.8"}, "too old"),
    ({"machine": "armv7l", "python": "3.13"}, "needs Python <= 3.11"),
    ({"free_kb": 100_000}, "only 97 MB free on the target; 400 MB needed"),
])
def test_check_refuses_an_unsupported_target(facts, expected):
    with pytest.raises(release.Refused, match=expected.replace("(", r"\(").replace(")", r"\)")):
        check_lines(status_answer(**facts))


def test_check_reads_the_answer_on_stdin_as_ansible_passes_it():
    r = run_py(RELPY, "check", "-", "--content", "0123456789ab", stdin=json.dumps(status_answer()))
    assert r.returncode == 0 and "up_to_date=no" in r.stdout.splitlines(), r.stderr
    r = run_py(RELPY, "check", "-", "--content", "0123456789ab", stdin="\x1b[2J not json")
    assert r.returncode == 2 and "not JSON" in r.stderr and r.stdout == ""


def test_field_lines_sanitise_step_answers():
    doc = {"error": "bad \x1b]2;x\x07 $(id)\nnext", "p99_ms": 12.3456789, "n": 3, "ok": False,
           "nested": {"v": "a"}, "nan": float("nan"), "list": [1], "big": 1e300}
    assert release.field_lines(doc, ["error", "p99_ms", "n", "ok", "nested.v", "nan", "list", "big", "missing"]) \
        == ["bad ?]2;x? $(id)?next", "12.3457", "3", "no", "a", "", "", "", ""]


def test_status_sends_only_the_cpuinfo_lines_the_runtime_choice_reads():
    texts = [PI4_CPUINFO, Path("/proc/cpuinfo").read_text()]
    texts += [p.read_text() for p in sorted((ROOT / "tests" / "data" / "cpuinfo").glob("*.txt"))]
    assert len(texts) > 2, "the recorded cpuinfo of real boards (tests/data/cpuinfo/) is missing"
    for text in texts:
        kept = release.decisive_cpuinfo(text)
        assert parse_cpuinfo(kept) == parse_cpuinfo(text) and len(kept) < len(text)


# --- roots and systemd quoting ------------------------------------------------------------------

@pytest.mark.parametrize("root", ['a"b', "a'b", "a\\b", "a\nb", "a\x1bb", "", "~bob/x"])
def test_root_that_systemd_could_not_run_is_refused(root):
    with pytest.raises(release.Refused):
        release.check_root(root)


def test_root_relative_to_home():
    assert release.check_root("mnist edge;$x%h") == os.path.join(os.path.expanduser("~"), "mnist edge;$x%h")
    assert release.check_root("~/a/../b") == os.path.join(os.path.expanduser("~"), "b")
    assert release.check_root("/srv/x") == "/srv/x"


def test_exec_line_quotes_as_systemd_parses():
    assert release.exec_line(["/a b/c;d$e%f/bin/device", "run", "--output", 'x y;$HOME%h"q\\z']) == \
        '"/a b/c;d$e%%f/bin/device" "run" "--output" "x y;$$HOME%%h\\"q\\\\z"'
    for bad in (["rel/device"], ["/a'b/device"], ['/a"b/device'], ["/a\\b/device"], ["/a/device", "x\ny"]):
        with pytest.raises(release.Refused):
            release.exec_line(bad)


def systemd_verify(unit: Path) -> subprocess.CompletedProcess:
    if not shutil.which("systemd-analyze"):
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing (apt install systemd)")
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


def root_with_a_current_release(top: Path) -> "release.Root":
    """A root whose ``current`` release has an executable bin/device (systemd checks it exists)."""
    device = top / "releases" / NAME1 / "bin" / "device"
    device.parent.mkdir(parents=True)
    device.write_text("#!/bin/sh\nexit 0\n")
    device.chmod(0o755)
    (top / "current").symlink_to(f"releases/{NAME1}")
    return release.Root(str(top))


def test_unit_file_passes_systemd_analyze_for_an_awkward_root(tmp_path, monkeypatch):
    """systemd itself parses the unit: it must find ROOT/current/bin/device through the quoting
    (it checks that the program exists and is executable)."""
    top = tmp_path / "r oot;$(touch pwned)&%h|*x"
    root = root_with_a_current_release(top)
    unit = tmp_path / "mnist-edge.service"
    unit.write_text(release.unit_text(root))
    r = systemd_verify(unit)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RestartPreventExitStatus=2" in unit.read_text()
    # The control: the same unit without the quoting is broken, and systemd says so.
    naive = unit.read_text().replace('"', "").replace("%%", "%")
    unit.write_text(naive)
    assert systemd_verify(unit).returncode != 0
    assert not (tmp_path / "pwned").exists()


def test_unit_with_the_preview(tmp_path):
    """--preview: loopback by default; a LAN bind gets its token from a 0600 file made once
    (never on the command line); bad addresses are refused."""
    top = tmp_path / "root"
    root = root_with_a_current_release(top)
    unit = tmp_path / "mnist-edge.service"
    unit.write_text(release.unit_text(root, release.check_preview("8080")))
    assert '"--preview" "127.0.0.1:8080"' in unit.read_text() and "EnvironmentFile" not in unit.read_text()
    assert systemd_verify(unit).returncode == 0
    unit.write_text(release.unit_text(root, release.check_preview("0.0.0.0:8080")))
    env = top / "preview.env"
    assert f"EnvironmentFile={env}" in unit.read_text() and (env.stat().st_mode & 0o777) == 0o600
    token = env.read_text()
    assert token.startswith("MNIST_EDGE_PREVIEW_TOKEN=") and token.split("=", 1)[1].strip() not in unit.read_text()
    release.unit_text(root, release.check_preview("0.0.0.0:8080"))
    assert env.read_text() == token                      # kept: an open page reconnects
    assert systemd_verify(unit).returncode == 0
    for bad in ("a;b", "99999", "host:80", "1.2.3.4:", ":80"):
        with pytest.raises(release.Refused):
            release.check_preview(bad)


# --- release bookkeeping on a local root -------------------------------------------------------

def fake_release(top: Path, name: str, venv: str, smoke_ok: bool = True, good: bool = False):
    rel = top / "releases" / name
    rel.mkdir(parents=True)
    (top / "venvs" / venv).mkdir(parents=True, exist_ok=True)
    (rel / "venv").symlink_to(f"../../venvs/{venv}")
    (rel / "SMOKE.json").write_text(json.dumps({"ok": smoke_ok}))
    if good:
        (rel / "OK").touch()


def step(top, *args):
    """Run a step the way Ansible's command: does: the file, with a root, JSON on stdout."""
    r = run_py(RELPY, args[0], f"--root={top}", *args[1:])
    answer = json.loads(r.stdout)           # exactly one JSON object
    assert answer["step"] == args[0] and isinstance(answer["changed"], bool)
    return r.returncode, answer, r.stderr


def test_switch_keep_and_rollback(tmp_path):
    top = tmp_path / "root"
    fake_release(top, NAME1, "v1", good=True)
    fake_release(top, NAME2, "v2", smoke_ok=False)          # failed its smoke test
    fake_release(top, NAME3, "v3")
    (top / "incoming" / "stale").mkdir(parents=True)
    rc, a, err = step(top, "switch", f"--release={NAME2}")
    assert rc == 2 and "smoke" in a["error"] and not (top / "current").exists()
    rc, a, _ = step(top, "switch", f"--release={NAME3}", "--keep=2")
    assert rc == 0 and a["changed"] and a["current"] == NAME3 and a["previous"] is None
    assert os.readlink(top / "current") == f"releases/{NAME3}"
    assert a["removed"] == [NAME2] and a["venvs_removed"] == ["v2"] and a["service"] == "not installed"
    assert sorted(p.name for p in (top / "releases").iterdir()) == [NAME1, NAME3]
    assert not (top / "incoming" / "stale").exists()
    rc, a, _ = step(top, "switch", f"--release={NAME3}")     # again: nothing to do
    assert rc == 0 and not a["changed"]
    fake_release(top, NAME4, "v4")
    rc, a, _ = step(top, "switch", f"--release={NAME4}", "--keep=2")
    assert a["removed"] == [NAME1] and a["venvs_removed"] == ["v1"]
    # Roll back: to the newest good release older than current; --from makes it safe to repeat.
    # --dry-run (Ansible's --check) names the same target and changes nothing.
    rc, a, _ = step(top, "rollback", "--dry-run")
    assert rc == 0 and not a["changed"] and a["would_change"] and (a["previous"], a["current"]) == (NAME4, NAME3)
    assert os.readlink(top / "current") == f"releases/{NAME4}"
    rc, a, _ = step(top, "rollback", f"--from={NAME4}")
    assert rc == 0 and a["changed"] and (a["previous"], a["current"]) == (NAME4, NAME3)
    rc, a, _ = step(top, "rollback", f"--from={NAME4}")
    assert rc == 0 and not a["changed"] and a["current"] == NAME3
    rc, a, err = step(top, "rollback")
    assert rc == 1 and "no good release older than" in a["error"] and err.count("\n") == 1


@pytest.mark.parametrize("args", [
    ["smoke", "--release=../../etc"], ["switch", f"--release={NAME1}/.."], ["bench", "--release=x"],
    ["switch", f"--release={NAME1}", "--keep=0"], ["status", "--content=$(id)"], ["nosuchstep"],
    ["install"], ["switch", f"--release={NAME1}", "--root=a'b"],
])
def test_bad_arguments_get_one_line_and_one_json_answer(tmp_path, args):
    r = run_py(RELPY, *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    answer = json.loads(r.stdout)
    assert answer["ok"] is False and answer["error"]
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def python39() -> str | None:
    """A Python 3.9 (Bullseye's), if this machine has one: the oldest the target steps support."""
    found = [*sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3"))), shutil.which("python3.9")]
    return next((p for p in found if p and subprocess.run([p, "-c", ""], capture_output=True).returncode == 0), None)


def test_target_steps_run_on_python_3_9(tmp_path):
    py = python39()
    if not py:
        pytest.skip("no Python 3.9 here")
    top = tmp_path / "root"
    fake_release(top, NAME1, "v1", good=True)
    fake_release(top, NAME2, "v2")
    r = subprocess.run([py, "-", "status", f"--root={top}"], input=RELPY.read_text(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["facts"]["python"] == "3.9", r.stderr
    for args in (["switch", f"--release={NAME2}"], ["rollback"]):
        r = subprocess.run([py, str(RELPY), *args, f"--root={top}"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and json.loads(r.stdout)["changed"], r.stderr
    assert os.readlink(top / "current") == f"releases/{NAME1}"


def test_status_runs_from_stdin_and_changes_nothing(tmp_path):
    r = run_py("-", "status", f"--root={tmp_path / 'none'}", stdin=RELPY.read_text(), cwd="/")
    assert r.returncode == 0, r.stderr
    a = json.loads(r.stdout)
    assert a["current"] is None and a["up_to_date"] is False and a["facts"]["machine"] == os.uname().machine
    assert not (tmp_path / "none").exists()


# --- payloads --------------------------------------------------------------------------------

def pack(tmp_path, model=SHIPPED, name="payload"):
    r = run_py(RELPY, "pack", "--model", model, "--out", tmp_path / name)
    return r, (json.loads(r.stdout) if r.stdout else None)


def test_pack_is_content_addressed(tmp_path):
    r1, a1 = pack(tmp_path, name="p1")
    r2, a2 = pack(tmp_path, name="p2")
    assert r1.returncode == 0 and a1["content"] == a2["content"], r1.stderr
    assert a1["model_sha256"] == json.loads(SHIPPED.with_suffix(".json").read_text())["sha256"]
    p = tmp_path / "p1"
    assert (p / "device" / "release.py").is_file() and (p / "device" / "models" / "model.json").is_file()
    assert os.access(p / "bin" / "device", os.X_OK) and not list(p.rglob("__pycache__"))
    assert sorted(x.name for x in (p / "device" / "models").iterdir()) == ["model.json", "model.tflite"]


@pytest.mark.parametrize("breakage,expected", [
    ("malformed", "cannot read manifest"), ("missing", "manifest) not found"),
    ("other-sha", "does not match"), ("list", "not an mnist-edge model manifest"),
])
def test_pack_refuses_a_bad_manifest_in_one_line(tmp_path, breakage, expected):
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(SHIPPED, d / "model.tflite")
    man = d / "model.json"
    good = json.loads(SHIPPED.with_suffix(".json").read_text())
    man.write_text({"malformed": '{"sha256": "ab", ', "missing": "", "list": "[1, 2]",
                    "other-sha": json.dumps({**good, "sha256": "0" * 64})}[breakage])
    if breakage == "missing":
        man.unlink()
    r, a = pack(tmp_path, d / "model.tflite")
    assert r.returncode == 2 and expected in a["error"]
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_pack_does_not_overwrite_a_folder_that_is_not_a_payload(tmp_path):
    (tmp_path / "payload").mkdir()
    (tmp_path / "payload" / "thesis.tex").write_text("x")
    r, a = pack(tmp_path)
    assert r.returncode == 2 and "not overwriting" in a["error"]
    assert (tmp_path / "payload" / "thesis.tex").exists()


def test_install_refuses_a_tampered_payload(tmp_path):
    top = tmp_path / "root"
    (top / "incoming").mkdir(parents=True)
    a_name = "p"
    r, a = pack(top / "incoming", name=a_name)
    p = top / "incoming" / a_name
    model = p / "device" / "models" / "model.tflite"
    data = bytearray(model.read_bytes())
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    rc, ans, err = step(top, "install", f"--payload=incoming/{a_name}")
    assert rc == 2 and "content hash" in ans["error"] and not (top / "releases").exists()
    # A payload whose record was rewritten to match: the manifest still catches the model.
    meta = json.loads((p / "RELEASE.json").read_text())
    meta["content"] = release.content_hash(str(p))
    (p / "RELEASE.json").write_text(json.dumps(meta))
    rc, ans, err = step(top, "install", f"--payload=incoming/{a_name}")
    assert rc == 2 and "does not match its manifest" in ans["error"], ans
    assert "Traceback" not in err and not (top / "releases").exists()


def armv7l_install(tmp_path, monkeypatch, sudo_ok: bool):
    """step_install on a recorded Pi 2 (32-bit Pi OS) that has apt's numpy but not its OpenCV;
    apt and pip are stood in for (what they would run is recorded), the rest is the real step."""
    top = tmp_path / "root"
    r, _ = pack(top / "incoming", name="p")
    assert r.returncode == 0, r.stderr
    facts = {"machine": "armv7l", "python": "3.11", "pointer_bits": 32, "os": "Raspbian GNU/Linux 12 (bookworm)",
             "free_kb": 8_000_000, "rsync": True, "picamera2": "absent",
             "cpuinfo": release.decisive_cpuinfo((CPUINFO / "pi2b-a7-armv7l.txt").read_text())}
    calls = []
    monkeypatch.setattr(sys, "path", list(sys.path))            # step_install puts the payload first
    monkeypatch.setattr(release, "gather_facts", lambda root: dict(facts))
    monkeypatch.setattr(release, "apt_installed", lambda p: p == "python3-numpy")
    monkeypatch.setattr(release, "_run", lambda cmd, timeout=20: calls.append(cmd) or subprocess.CompletedProcess(
        cmd, 0 if sudo_ok else 1, "", "" if sudo_ok else "sudo: a password is required"))
    monkeypatch.setattr(release, "ensure_venv", lambda root, f, reqs: calls.append(["pip", *reqs]) or ("k", True))
    return top, calls, lambda: release.step_install(release.Root(str(top)), "incoming/p")


def test_32bit_target_without_apt_opencv_is_refused_in_one_line_before_any_venv(tmp_path, monkeypatch):
    top, calls, install = armv7l_install(tmp_path, monkeypatch, sudo_ok=False)
    with pytest.raises(release.Refused) as e:
        install()
    msg = str(e.value)
    assert "needs python3-opencv from apt" in msg and "run 'sudo apt install python3-opencv'" in msg
    assert "\n" not in msg and calls == [["sudo", "-n", "true"]]
    assert not (top / "releases").exists() and not (top / "venvs").exists()


def test_32bit_target_gets_apt_opencv_through_sudo_then_the_tflite_runtime_venv(tmp_path, monkeypatch):
    top, calls, install = armv7l_install(tmp_path, monkeypatch, sudo_ok=True)
    res = install()
    assert res["changed"] and res["runtime"] == "tflite-runtime"
    assert res["system_packages"] == ["python3-numpy", "python3-opencv"]
    apt = [c for c in calls if "apt-get" in c]
    assert len(apt) == 1 and apt[0][:2] == ["sudo", "-n"] and apt[0][-1] == "python3-opencv"   # numpy was there
    assert ["pip", "numpy<2", "tflite-runtime==2.14.0"] in calls
    rec = json.loads((top / "releases" / res["release"] / "RELEASE.json").read_text())
    assert rec["machine"] == "armv7l" and "Cortex-A7" in rec["reason"]


@pytest.mark.slow
def test_install_smoke_switch_status_as_ansible_would(tmp_path):
    """The steps run as files from the payload (Ansible's command:), with a venv made here
    without pip (this Python's packages through --system-site-packages)."""
    top = tmp_path / "root"
    r, a = pack(top / "incoming", name="p")
    name = a["release"]
    facts = release.gather_facts(str(top))
    choice = release.choose(facts)
    venv = top / "venvs" / release.venv_key(facts, choice.requirements)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv], check=True)
    (venv / ".complete").touch()
    payload_py = top / "incoming" / "p" / "device" / "release.py"
    r = run_py(payload_py, "install", f"--root={top}", "--payload=incoming/p", cwd="/")
    a = json.loads(r.stdout)
    assert r.returncode == 0 and a["changed"] and a["release"] == name and not a["venv_created"], r.stderr
    rel = top / "releases" / name
    rec = json.loads((rel / "RELEASE.json").read_text())
    assert rec["runtime"] == choice.runtime and rec["reason"] == choice.reason and rec["facts_key"]
    rc, a, err = step(top, "smoke", f"--release={name}")
    assert rc == 0 and a["checks"]["golden"]["status"] == "identical", err
    # The fleet's gate: budget and golden agreement in one step; an unverified golden check
    # (a model without expectations) does not pass it.
    clip = top / "bench" / "clip.avi"
    clip.parent.mkdir()
    subprocess.run([sys.executable, "-m", "device.cli", "make-clip", str(clip), "--digits", "10", "--hold", "2"],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    rc, a, err = step(top, "bench", f"--release={name}", "--runs=20", "--budget-ms=100000", "--gate",
                      "--golden-identical")
    assert rc == 0 and a["within_budget"] and a["golden"] == {"status": "identical", "images": GOLDEN_IMAGES,
                                                             "identical": GOLDEN_IMAGES}, err
    smoke = json.loads((rel / "SMOKE.json").read_text())
    (rel / "SMOKE.json").write_text(json.dumps({**smoke, "checks": {**smoke["checks"], "golden": {"status": "unverified"}}}))
    rc, a, err = step(top, "bench", f"--release={name}", "--runs=20", "--budget-ms=100000", "--gate",
                      "--golden-identical")
    assert rc == 1 and "golden-set predictions not shown identical" in a["error"] and a["within_budget"], err
    (rel / "SMOKE.json").write_text(json.dumps(smoke))
    rc, a, _ = step(top, "switch", f"--release={name}")
    assert rc == 0 and a["changed"]
    rc, a, _ = step(top, "status", f"--content={rec['content']}")
    assert a["up_to_date"] and a["current"]["release"] == name
    # The same payload again: install says so and changes nothing.
    r, _ = pack(top / "incoming", name="again")
    r = run_py(top / "incoming" / "again" / "device" / "release.py", "install", f"--root={top}",
               "--payload=incoming/again")
    a = json.loads(r.stdout)
    assert r.returncode == 0 and not a["changed"] and a["release"] == name
    assert not (top / "incoming" / "again").exists()
    # A corrupt model that matches its manifest installs, and fails the smoke test.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.tflite").write_bytes(b"\x00" * 4 + b"TFL3" + b"\x00" * 100)
    man = copy.deepcopy(json.loads(SHIPPED.with_suffix(".json").read_text()))
    man["sha256"] = sha256_file(bad / "model.tflite")
    (bad / "model.json").write_text(json.dumps(man))
    r, a = pack(top / "incoming", bad / "model.tflite", name="bad")
    rc, a, _ = step(top, "install", "--payload=incoming/bad")
    assert rc == 0
    rc, a, _ = step(top, "smoke", f"--release={a['release']}")
    assert rc == 1 and "device bench failed" in a["error"] and a["checks"] == {"info": "ok"}
    rc, a, _ = step(top, "switch", f"--release={a['release']}")
    assert rc == 2 and "has not passed the smoke test" in a["error"]
    assert os.readlink(top / "current") == f"releases/{name}"
