"""Every verb answers --help without TensorFlow; user errors give one line and exit 2, and
leave nothing behind (the bad values themselves: test_bad_inputs_host.py)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT, blocked_python


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


HOST_VERBS = ("train", "train-qat", "distill", "prune-channels", "export-onnx", "explain", "prune", "convert",
              "evaluate", "report")


@pytest.mark.parametrize("prog,verb", [("host.cli", v) for v in HOST_VERBS]
                         + [("device.cli", v) for v in ("run", "bench", "classify", "info", "make-clip")])
def test_help(prog, verb):
    # Without TensorFlow: help (like argument errors) must answer before the 10 s import.
    code = f"import sys; from {prog} import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run(blocked_python(code) + [verb, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "usage:" in out.stdout, out.stderr
    assert "(default: None)" not in out.stdout and "(default: False)" not in out.stdout


def test_training_defaults_are_the_configs():
    """One place for the defaults: `host train-qat` with no flags trains TrainConfig()."""
    from host import config
    from host.cli import build_parser

    for verb in ("train", "train-qat", "distill"):
        args = build_parser().parse_args([verb])
        assert config.from_args(verb, args) == config.TrainConfig(), verb
    args = build_parser().parse_args(["prune-channels", "tests/conftest.py"])
    assert config.from_args("prune-channels", args) == config.defaults("prune-channels")
    args = build_parser().parse_args(["prune", "tests/conftest.py", "--epochs", "3", "--limit", "500"])
    cfg = config.from_args("prune", args)
    assert (cfg.prune_epochs, cfg.limit, cfg.epochs) == (3, 500, config.TrainConfig().epochs)
    with pytest.raises(Exception):
        cfg.epochs = 2  # frozen


def test_cli_names_match_the_training_code():
    from host import augment, config, models

    assert set(config.ARCH_NAMES) == set(models.ARCHS)
    assert set(config.AUGMENT_MODES) == set(augment.MODES)


def _one_line_exit_2(out, needle):
    assert out.returncode == 2, out.stderr
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_missing_data_names_the_options(tmp_path):
    out = _run("host.cli", "train-qat", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    _one_line_exit_2(out, "MNIST_DIR")


def test_evaluate_and_convert_reject_non_tflite(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_text("nope")
    _one_line_exit_2(_run("host.cli", "evaluate", str(bad)), "not a TFLite model")
    _one_line_exit_2(_run("host.cli", "convert", str(ROOT / "device" / "models" / "model.tflite"),
                          "--out", str(tmp_path / "c")), "already a TFLite model")
    bad.with_suffix(".h5").write_text("not HDF5")
    _one_line_exit_2(_run("host.cli", "convert", str(bad.with_suffix(".h5")), "--out", str(tmp_path / "c")),
                     "cannot load Keras model")


def test_evaluate_json(mnist):
    import json

    out = _run("host.cli", "evaluate", str(ROOT / "device" / "models" / "model.tflite"), "--json")
    assert out.returncode == 0, out.stderr
    ev = json.loads(out.stdout)
    assert ev["images"] == 10000 and len(ev["confusion_matrix"]) == 10
