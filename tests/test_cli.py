"""Every verb answers --help; user errors give one line and exit 2, and leave nothing behind."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("prog,verb", [("host.cli", v) for v in ("train", "train-qat", "prune", "convert", "evaluate", "report")]
                         + [("device.cli", v) for v in ("run", "bench", "classify", "info", "make-clip")])
def test_help(prog, verb):
    out = _run(prog, verb, "--help")
    assert out.returncode == 0 and "usage:" in out.stdout


def _one_line_exit_2(out, needle):
    assert out.returncode == 2, out.stderr
    lines = [l for l in out.stderr.splitlines() if l.startswith(("host:", "device:"))]
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_arch(tmp_path):
    out = _run("host.cli", "train-qat", "--arch", "vgg", "--out", str(tmp_path / "o"))
    _one_line_exit_2(out, "unknown --arch 'vgg'")
    assert not any((tmp_path / "o").glob("model.*"))


def test_missing_data_names_the_options(tmp_path):
    out = _run("host.cli", "train-qat", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    _one_line_exit_2(out, "MNIST_DIR")


def test_unwritable_out(tmp_path):
    ro = tmp_path / "ro"
    ro.write_text("a file, not a folder")
    out = _run("host.cli", "train-qat", "--out", str(ro / "sub"))
    _one_line_exit_2(out, "is not writable")


def test_evaluate_and_convert_reject_non_tflite(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_text("nope")
    _one_line_exit_2(_run("host.cli", "evaluate", str(bad)), "not a TFLite model")
    _one_line_exit_2(_run("host.cli", "convert", str(ROOT / "device" / "models" / "model.tflite"),
                          "--out", str(tmp_path / "c")), "already a TFLite model")
    _one_line_exit_2(_run("host.cli", "convert", str(bad.with_suffix(".h5")), "--out", str(tmp_path / "c")),
                     "cannot load Keras model")


def test_evaluate_json(mnist):
    import json

    out = _run("host.cli", "evaluate", str(ROOT / "device" / "models" / "model.tflite"), "--json")
    assert out.returncode == 0, out.stderr
    ev = json.loads(out.stdout)
    assert ev["images"] == 10000 and len(ev["confusion_matrix"]) == 10
