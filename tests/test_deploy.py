"""deploy.sh end to end against a real OpenSSH server on 127.0.0.1."""

import json
import os
import shutil
import subprocess
import time

import pytest

from device.fsio import atomic_write_json
from device.manifest import sha256_file
from tests import sshd
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    why = sshd.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    t = sshd.start(tmp_path_factory.mktemp("sshd"))
    yield t
    sshd.stop(t)


def deploy(target, *args, config=None, timeout=900):
    cmd = [str(ROOT / "deploy.sh"), "--ssh-config", str(config or target.config),
           "--port", str(target.port), "--identity", str(target.key), *args, target.dest]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def current(target) -> str:
    r = target.ssh("readlink mnist-edge/current")
    return r.stdout.strip()


def other_model(tmp_path, tiny_tflite):
    d = tmp_path / "other"
    d.mkdir(exist_ok=True)
    p = d / "model.tflite"
    shutil.copy(tiny_tflite["int8"], p)
    atomic_write_json(d / "model.json", {"manifest_version": 1, "sha256": sha256_file(p)})
    return p


def test_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed")
    r = subprocess.run(["shellcheck", str(ROOT / "deploy.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_deploy_with_bench_then_noop_then_failure_then_rollback(target, tmp_path, tiny_tflite):
    reports = tmp_path / "reports"
    r = deploy(target, "--bench", "--reports", str(reports))
    assert r.returncode == 0, r.stdout + r.stderr
    first = current(target)
    assert first.startswith("releases/")
    # Results came back, in the device's schema.
    files = sorted((reports / "127.0.0.1").glob("*.json"))
    assert {f.name.split("-")[0] for f in files} == {"bench", "run"}
    for f in files:
        res = json.loads(f.read_text())
        assert res["schema_version"] == 1 and res["model"]["sha256"] == sha256_file(
            ROOT / "device" / "models" / "model.tflite")
    run = json.loads(next(f for f in files if f.name.startswith("run")).read_text())
    assert run["frames"] > 100 and run["status"] == "ok"
    # The device side runs there, without TensorFlow.
    info = target.ssh("mnist-edge/current/bin/device info")
    assert info.returncode == 0 and "ai-edge-litert" in info.stdout
    tf = target.ssh("mnist-edge/current/venv/bin/python -c 'import tensorflow'")
    assert tf.returncode != 0
    # The model on the target is the one we shipped.
    sha = target.ssh("sha256sum mnist-edge/current/device/models/model.tflite").stdout.split()[0]
    assert sha == sha256_file(ROOT / "device" / "models" / "model.tflite")

    # Again, nothing changed: a no-op.
    r = deploy(target)
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr
    assert current(target) == first

    # A deploy that fails after the transfer (its model is corrupt, so the smoke test fails)
    # leaves the first release current.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.tflite").write_bytes(b"\x00" * 4 + b"TFL3" + b"\x00" * 100)
    atomic_write_json(bad / "model.json", {"manifest_version": 1, "sha256": sha256_file(bad / "model.tflite")})
    r = deploy(target, "--model", str(bad / "model.tflite"))
    assert r.returncode != 0
    assert "smoke-test" in r.stderr and "was not changed" in r.stderr, r.stderr
    assert current(target) == first

    # The budget gate: the target measures the new release before the switch; a budget it
    # cannot meet keeps the current release and says the measured figure.
    r = deploy(target, "--model", str(other_model(tmp_path, tiny_tflite)), "--gate", "--budget-ms", "0.001",
               "--reports", str(reports))
    assert r.returncode != 0
    assert "gate: p99 per-frame total" in r.stderr and "over the 0.001 ms budget" in r.stderr, r.stderr
    assert current(target) == first

    # A good second release, then roll back to the first.
    r = deploy(target, "--model", str(other_model(tmp_path, tiny_tflite)))
    assert r.returncode == 0, r.stdout + r.stderr
    second = current(target)
    assert second != first
    # The failed and refused releases are cleaned up; the good ones stay for rollback.
    releases = target.ssh("ls mnist-edge/releases").stdout.split()
    assert sorted(releases) == sorted([first.split("/")[1], second.split("/")[1]]), releases
    r = deploy(target, "--rollback")
    assert r.returncode == 0, r.stderr
    assert current(target) == first


def test_closed_port_fails_fast(target):
    port = sshd.free_port()
    t0 = time.monotonic()
    r = subprocess.run([str(ROOT / "deploy.sh"), "--ssh-config", str(target.config), "--port", str(port),
                        "--identity", str(target.key), target.dest], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert time.monotonic() - t0 < 15
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0], r.stderr


def test_unknown_host_key_is_refused_unless_accepted(target, tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text(f"Host 127.0.0.1\n  UserKnownHostsFile {tmp_path / 'empty_known_hosts'}\n  LogLevel ERROR\n")
    r = deploy(target, "--dry-run", config=cfg)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "host key" in lines[0] and "--accept-new-host-key" in lines[0]
    r = deploy(target, "--dry-run", "--accept-new-host-key", config=cfg)
    assert r.returncode == 0, r.stderr
    assert "dry run" in r.stdout
    assert "127.0.0.1" in (tmp_path / "empty_known_hosts").read_text()


def test_bad_arguments():
    r = subprocess.run([str(ROOT / "deploy.sh")], capture_output=True, text=True)
    assert r.returncode == 2 and "user@host" in r.stderr
    r = subprocess.run([str(ROOT / "deploy.sh"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--rollback" in r.stdout
