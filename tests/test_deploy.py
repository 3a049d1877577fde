"""deploy.sh end to end against a real OpenSSH server on 127.0.0.1, and its argument checks.

The deploy flow uses a remote root with a space, `;`, `$(...)`, `&` and `%` in its name: every
step, the rsync/tar transfer and the systemd unit must carry it quoted, or a marker file
appears (the "Pi" is this machine) or the unit does not verify.
"""

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from device import schema
from device.fsio import atomic_write_json
from device.manifest import sha256_file
from tests import sshd
from tests.conftest import GOLDEN_IMAGES, ROOT, SHIPPED

DEPLOY = str(ROOT / "deploy.sh")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = sshd.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    s = sshd.start(tmp_path_factory.mktemp("sshd"))
    yield s
    sshd.stop(s)


@pytest.fixture
def target(server):
    return server.target()


def deploy(target, *args, config=None, tmpdir=None, timeout=900):
    """Run deploy.sh with its temporary files in ``tmpdir`` (checked empty afterwards)."""
    cmd = [DEPLOY, "--ssh-config", str(config or target.config), "--port", str(target.port),
           "--identity", str(target.key), *args, target.dest]
    env = {**os.environ, "TMPDIR": str(tmpdir)} if tmpdir else None
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def short_tmp():
    """A TMPDIR short enough for deploy's ssh control socket to live in it (a long one makes
    deploy put the socket in /tmp/mnist-edge-ssh.*: see test_unknown_host_key...)."""
    d = Path(tempfile.mkdtemp(prefix="dt", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def mux_dirs() -> set:
    return set(glob.glob("/tmp/mnist-edge-ssh.*"))


def assert_cleaned_up(tmpdir: Path, mux_before: set | None = None):
    """No payload copy, no control socket, no ssh master left behind."""
    assert list(tmpdir.iterdir()) == []
    new = mux_dirs() - mux_before if mux_before is not None else set()
    assert not new, f"control socket folders left behind: {new}"
    for _ in range(30):
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        if str(tmpdir) not in ps and not any(d in ps for d in new):
            return
        time.sleep(0.1)
    pytest.fail(f"an ssh process for {tmpdir} is still running")


def other_model(tmp_path) -> Path:
    """The shipped model with another manifest: another release, same golden expectations."""
    d = tmp_path / "other"
    d.mkdir(exist_ok=True)
    p = d / "model.tflite"
    shutil.copy(SHIPPED, p)
    man = json.loads(SHIPPED.with_suffix(".json").read_text())
    atomic_write_json(d / "model.json", {**man, "note": "second release"})
    return p


def test_shellcheck():
    if not shutil.which("shellcheck"):
        if os.environ.get("CI"):
            pytest.fail("shellcheck is missing")
        pytest.skip("shellcheck not installed")
    r = subprocess.run(["shellcheck", DEPLOY], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.slow
def test_deploy_bench_noop_smoke_failure_gate_service_rollback(target, tmp_path, short_tmp):
    marker = Path(f"/tmp/pwned-dir-{uuid.uuid4().hex[:8]}")
    rdir = f"mnist edge;$(touch {marker})&%h"
    top = target.home / rdir
    tmpdir = short_tmp
    reports = tmp_path / "reports"

    # The key and ssh_config in a folder with a quote, a space and $(...) in its name: they
    # reach ssh directly and rsync through its -e wrapper.
    odd = tmp_path / f"k ey'$(touch {marker})"
    odd.mkdir(parents=True)
    shutil.copy(target.key, odd / "client")
    shutil.copy(target.config, odd / "ssh config")
    target = dataclasses.replace(target, key=odd / "client", config=odd / "ssh config")

    def run(*args):
        r = deploy(target, "--dir", rdir, *args, tmpdir=tmpdir)
        assert_cleaned_up(tmpdir)
        assert not marker.exists(), "a shell ran the --dir name"
        return r

    def current():
        return os.readlink(top / "current")

    r = run("--bench", "--reports", str(reports))
    assert r.returncode == 0, r.stdout + r.stderr
    first = current()
    assert first.startswith("releases/")
    assert f"golden {GOLDEN_IMAGES}/{GOLDEN_IMAGES} identical predictions" in r.stderr
    # Results came back, in the device's schema.
    files = sorted((reports / "127.0.0.1").glob("*.json"))
    assert {f.name.split("-")[0] for f in files} == {"bench", "run"}
    for f in files:
        res = schema.load(f, expect=(f.name.split("-")[0],))        # validated by the device's schema
        assert res.schema_version == schema.SCHEMA_VERSION and res.model["sha256"] == sha256_file(SHIPPED)
    run_res = schema.load(next(f for f in files if f.name.startswith("run")))
    assert run_res.frames > 100 and run_res.status == "ok"
    # The device side runs there, without TensorFlow, and says why this runtime.
    rec = json.loads((top / "current" / "RELEASE.json").read_text())
    assert rec["runtime"] == "ai-edge-litert" and rec["reason"].startswith("x86_64")
    tf = target.ssh("'mnist edge;$(touch " + str(marker) + ")&%h/current/venv/bin/python' -c 'import tensorflow'")
    assert tf.returncode != 0
    assert sha256_file(top / "current" / "device" / "models" / "model.tflite") == sha256_file(SHIPPED)

    # Again, nothing changed: a no-op.
    r = run()
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr
    assert current() == first

    # A deploy that fails after the transfer (its model is corrupt, so the smoke test fails)
    # leaves the first release current, and says so.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.tflite").write_bytes(b"\x00" * 4 + b"TFL3" + b"\x00" * 100)
    atomic_write_json(bad / "model.json", {"manifest_version": 1, "sha256": sha256_file(bad / "model.tflite")})
    r = run("--model", str(bad / "model.tflite"))
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("deploy: error: smoke test of") and "device bench failed" in last
    assert "[step smoke-test; `current` on 127.0.0.1 was not changed]" in last, r.stderr
    assert current() == first

    # The budget gate: the target measures the new release before the switch; a budget it
    # cannot meet keeps the current release and says the measured figure.
    r = run("--model", str(other_model(tmp_path)), "--gate", "--budget-ms", "0.001", "--reports", str(reports))
    assert r.returncode == 1
    assert "gate: p99 per-frame total on 127.0.0.1 is" in r.stderr and "over the 0.001 ms budget" in r.stderr
    assert current() == first

    # A good second release; --service then fails (no systemd user manager here): the error
    # says that `current` already points to the new release.
    r = run("--model", str(other_model(tmp_path)), "--service")
    assert r.returncode == 1
    second = current()
    assert second != first
    last = r.stderr.strip().splitlines()[-1]
    assert "systemctl --user" in last and f"now points to the new release {second.split('/')[1]}" in last, last
    # The unit it wrote carries the root quoted: systemd finds the program through it.
    unit = target.home / ".config" / "systemd" / "user" / "mnist-edge.service"
    if shutil.which("systemd-analyze"):
        v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert v.returncode == 0, v.stdout + v.stderr
    assert "RestartPreventExitStatus=2" in unit.read_text()
    # The failed and refused releases are cleaned up; the good ones stay for rollback.
    assert sorted(p.name for p in (top / "releases").iterdir()) == sorted([first[9:], second[9:]])
    r = run("--rollback")
    assert r.returncode == 0, r.stderr
    assert current() == first and f"{second[9:]} -> {first[9:]}" in r.stdout


@pytest.mark.slow
def test_closed_port_fails_fast(target, tmp_path):
    port = sshd.free_port()
    t0 = time.monotonic()
    r = subprocess.run([DEPLOY, "--ssh-config", str(target.config), "--port", str(port),
                        "--identity", str(target.key), target.dest], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert r.returncode == 2
    assert time.monotonic() - t0 < 15
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0], r.stderr
    assert_cleaned_up(tmp_path)


@pytest.mark.slow
def test_unknown_host_key_is_refused_unless_accepted(target, tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text(f"Host 127.0.0.1\n  UserKnownHostsFile {tmp_path / 'empty_known_hosts'}\n  LogLevel ERROR\n")
    # A TMPDIR too long for a unix socket path: the socket goes to /tmp, and is cleaned too.
    tmpdir = tmp_path / ("long-" * 12)
    tmpdir.mkdir()
    before = mux_dirs()
    r = deploy(target, "--dry-run", config=cfg, tmpdir=tmpdir)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "host key" in lines[0] and "--accept-new-host-key" in lines[0]
    assert_cleaned_up(tmpdir, before)
    r = deploy(target, "--dry-run", "--accept-new-host-key", config=cfg, tmpdir=tmpdir)
    assert r.returncode == 0, r.stderr
    assert "dry run" in r.stdout
    assert "127.0.0.1" in (tmp_path / "empty_known_hosts").read_text()
    assert_cleaned_up(tmpdir, before)


# --- refused before connecting: one line, exit 2, nothing left behind --------------------------

def bad_manifest_model(tmp_path, text):
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(SHIPPED, d / "model.tflite")
    (d / "model.json").write_text(text)
    return str(d / "model.tflite")


@pytest.mark.parametrize("args,expected", [
    (["--port"], "--port needs a number, e.g. --port 22"),
    (["pi@host", "--port"], "--port needs a number, e.g. --port 22"),
    (["--dir"], "--dir needs a value"),
    (["--port", "x22", "pi@host"], "--port must be a number 1-65535"),
    (["--port", "99999", "pi@host"], "--port must be a number 1-65535"),
    (["--port", "P[$(touch {marker})]", "pi@host"], "--port must be a number"),
    (["--keep", "1", "pi@host"], "--keep must be a number >= 2"),
    (["--budget-ms", "nan", "pi@host"], "--budget-ms must be a number > 0"),
    (["--budget-ms", "0", "pi@host"], "--budget-ms must be a number > 0"),
    (["-oProxyCommand=touch {marker}"], "unknown option"),
    (["pi@host;touch {marker}"], "bad target"),
    (["pi@-oProxyCommand=x"], "bad target"),
    (["pi@host:2222"], "give the port with --port 2222 (target pi@host)"),
    ([], "give the target as user@host"),
    (["a@b", "c@d"], "one target only"),
    (["--dir", "it's", "pi@127.0.0.1"], "has a quote or backslash"),
    (["--model", "/nonexistent/m.tflite", "pi@127.0.0.1"], "not found"),
    (["--model", "{malformed}", "pi@127.0.0.1"], "cannot read manifest"),
])
def test_bad_arguments_one_line_before_connecting(tmp_path, args, expected):
    marker = tmp_path / "pwned"
    subst = {"{marker}": str(marker)}
    if "{malformed}" in args:
        subst["{malformed}"] = bad_manifest_model(tmp_path, '{"sha256": ')
    for k, v in subst.items():
        args = [a.replace(k, v) for a in args]
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    # Port 1 on 127.0.0.1 is closed: had deploy connected, it would say "refused".
    port = [] if any(a.startswith("--port") for a in args) else ["--port", "1"]
    r = subprocess.run([DEPLOY, *port, *args], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "TMPDIR": str(tmpdir)})
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("deploy:")]
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "refused" not in r.stderr
    assert not marker.exists() and list(tmpdir.iterdir()) == []


def test_help():
    r = subprocess.run([DEPLOY, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--rollback" in r.stdout
