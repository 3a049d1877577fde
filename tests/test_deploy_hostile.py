"""deploy.sh against a hostile target: nothing the target says may run on the workstation.

The target is a real sshd user whose ForceCommand answers every `python3` call (the release
steps) with text the test prepared: `$(...)`, backticks, `;`, newlines, terminal escapes and
bash array subscripts such as `P[$(touch /tmp/pwned-...)]` (which bash arithmetic would run).
Everything else (mkdir, rsync, tar, cat) runs normally.  The workstation and the "Pi" are the
same machine, so a marker file appearing anywhere means a shell ran the target's text.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests import sshd
from tests.conftest import ROOT
from tests.test_deploy import assert_cleaned_up, mux_dirs

pytestmark = pytest.mark.slow

EVIL = "mnistedge-evil"
ANSWER_SH = """#!/bin/sh
# A hostile "Pi": its python3 says what the test prepared; everything else runs.
d="$HOME/.evil"
[ ! -e "$d/sleep" ] || sleep 60
case "$SSH_ORIGINAL_COMMAND" in
    *"'python3' '-' 'status'"*) cat "$d/status.out"; exit 0 ;;
    *python3*) cat "$d/step.out"; cat "$d/step.err" >&2; exit "$(cat "$d/step.rc")" ;;
    *) exec /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;
esac
"""
ESCAPES = "\x1b[2J\x1b]0;owned\x07\x9b31m"


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    why = sshd.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    home = sshd.ensure_user(EVIL)
    script = home / ".evil" / "answer.sh"        # the user must be able to run it: not in root's tmp
    server = sshd.start(tmp_path_factory.mktemp("sshd-evil"), users=(EVIL,), force_commands={EVIL: script})
    script.parent.mkdir(exist_ok=True)
    script.write_text(ANSWER_SH)
    script.chmod(0o755)
    yield server.target(EVIL)
    sshd.stop(server)


@pytest.fixture
def markers():
    """hostile(field) -> a hostile text whose every trick touches /tmp/pwned-<id>-<field>."""
    tag = f"/tmp/pwned-{uuid.uuid4().hex[:10]}"

    def hostile(field):
        m = f"{tag}-{field}"
        return f"{ESCAPES}P[$(touch {m}a)]`touch {m}b`;touch {m}c\n$(touch {m}d)"

    yield hostile
    found = glob.glob(f"{tag}*")
    for f in found:
        os.unlink(f)
    assert not found, f"the target's text ran here: {found}"


def real_status() -> dict:
    """This machine's own status answer (a valid one), to spoil one field at a time."""
    r = subprocess.run(["python3", str(ROOT / "device" / "release.py"), "status", "--root=/nonexistent/x"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def answer(target, status, step_out="", step_err="", step_rc=1):
    d = target.home / ".evil"
    (d / "status.out").write_bytes(status if isinstance(status, bytes) else json.dumps(status).encode())
    (d / "step.out").write_text(step_out)
    (d / "step.err").write_text(step_err)
    (d / "step.rc").write_text(str(step_rc))


def deploy(target, *args):
    tmpdir = Path(tempfile.mkdtemp(prefix="dh", dir="/tmp"))
    before = mux_dirs()
    try:
        r = subprocess.run([str(ROOT / "deploy.sh"), "--ssh-config", str(target.config), "--port",
                            str(target.port), "--identity", str(target.key), *args, target.dest],
                           capture_output=True, text=True, timeout=300, cwd=ROOT,
                           env={**os.environ, "TMPDIR": str(tmpdir)})
        assert_cleaned_up(tmpdir, before)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert "\x1b" not in r.stdout + r.stderr and "\x07" not in r.stdout + r.stderr
    return r


def test_every_field_hostile(evil, markers):
    st = real_status()
    st["facts"] = {k: markers(k) for k in st["facts"]}
    st.update(up_to_date=markers("up_to_date"), current={"release": markers("release"), "content": markers("c")},
              root=markers("root"))
    answer(evil, st)
    r = deploy(evil, "--dry-run")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploy: error: the target answered machine = '\\x1b[2J\\x1b]0;")
    assert lines[0].isprintable() and "refusing" in lines[0]


# (machine is refused first in test_every_field_hostile; tests/test_release.py checks each field
# of the validator on its own, fast)
@pytest.mark.parametrize("path", ["python", "free_kb", "up_to_date", "current.release"])
def test_one_hostile_decision_field_is_refused_by_name(evil, markers, path):
    st = real_status()
    if path == "current.release":
        st["current"] = {"release": markers(path)}
    elif path == "up_to_date":
        st["up_to_date"] = markers(path)
    else:
        st["facts"][path] = markers(path)
    answer(evil, st)
    r = deploy(evil)          # not a dry run: it must stop before sending anything
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"the target answered {path} = " in lines[0], r.stderr
    assert not (evil.home / "mnist-edge").exists()


def test_hostile_display_text_is_shown_harmless(evil, markers):
    st = real_status()
    st["facts"]["os"] = markers("os")
    st["facts"]["machine"] = "aarch64"        # its runtime reason names the CPU from cpuinfo
    st["facts"]["cpuinfo"] = f"CPU implementer\t: 0x41\nmodel name\t: {markers('cpuinfo')}"
    answer(evil, st)
    r = deploy(evil, "--dry-run")
    assert r.returncode == 0, r.stderr
    for what in ("target: aarch64, ", "runtime: aarch64 ("):
        shown = [ln for ln in r.stdout.splitlines() if ln.startswith(f"deploy: {what}?[2J?]0;owned?")]
        assert len(shown) == 1 and shown[0].isprintable() and "31mP[$(touch " in shown[0], r.stdout


@pytest.mark.parametrize("raw", [
    b"aarch64\nDebian\n3.11\nP[$(touch /tmp/pwned-raw-a)]\nrsync\npicam\npicam-installed\n",
    b"\x1b]0;owned\x07{not json",
    b'{"facts": {"machine": "aarch64"' + b" " * 1_100_000 + b"}}",
    b"",
], ids=["lines", "escapes", "huge", "empty"])
def test_an_answer_that_is_not_json_is_refused(evil, raw):
    answer(evil, raw)
    r = deploy(evil)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "the target's answer is not JSON" in lines[0], r.stderr
    assert not os.path.exists("/tmp/pwned-raw-a")


def test_hostile_answers_after_the_preflight(evil, markers):
    """A target that passes the preflight and then answers the release steps with hostile
    JSON and hostile messages: shown sanitised, used for nothing, deploy stops."""
    st = real_status()
    st.update(current=None, up_to_date=False)
    step_out = json.dumps({"step": "install", "ok": False, "changed": markers("changed"),
                           "error": markers("error"), "release": markers("release")})
    step_err = f"release: {markers('stderr')}\nrelease: error: {markers('stderr2')}\n"
    answer(evil, st, step_out, step_err, 1)
    r = deploy(evil, "--bench", "--service", "--reports", "/nonexistent/reports")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("deploy: error: ?[2J?]0;owned?") and "31mP[$(touch " in last and last.isprintable()
    assert "[step install; `current` on 127.0.0.1 was not changed]" in last
    assert "release: ?[2J?]0;owned???31mP[$(touch" in r.stderr    # shown, sanitised byte by byte
    # It got the payload (the transfer ran), nothing more.
    assert list((evil.home / "mnist-edge" / "incoming").iterdir())


def test_ctrl_c_cleans_up(evil):
    """Ctrl-C while the target stalls: exit 130, no temp folder, no ssh master left."""
    answer(evil, real_status())
    (evil.home / ".evil" / "sleep").touch()
    tmpdir = Path(tempfile.mkdtemp(prefix="dh", dir="/tmp"))
    before = mux_dirs()
    try:
        p = subprocess.Popen([str(ROOT / "deploy.sh"), "--ssh-config", str(evil.config), "--port", str(evil.port),
                              "--identity", str(evil.key), evil.dest], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={**os.environ, "TMPDIR": str(tmpdir)})
        for _ in range(300):            # until the ssh master is up and the status call hangs
            if glob.glob(f"{tmpdir}/*/mux"):
                break
            time.sleep(0.1)
        time.sleep(1)
        os.killpg(p.pid, signal.SIGINT)   # what a terminal's Ctrl-C does: the whole foreground group
        out, err = p.communicate(timeout=30)
        assert p.returncode == 130, err
        assert_cleaned_up(tmpdir, before)
    finally:
        (evil.home / ".evil" / "sleep").unlink()
        shutil.rmtree(tmpdir, ignore_errors=True)
