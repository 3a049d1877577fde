"""The real pipeline on a small budget: float training, pruning + prune-preserving QAT,
full-INT8 conversion, evaluation of the .tflite with the device runtime, artifacts."""

import json

import pytest

from device.manifest import sha256_file
from device.cli import main as device_main
from host.artifacts import RECORD
from host.cli import main

pytestmark = pytest.mark.slow


def test_train_qat_end_to_end(tmp_path, mnist, capsys):
    out = tmp_path / "run"
    assert main(["train-qat", "--limit", "4000", "--epochs", "2", "--qat-epochs", "1",
                 "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"model.tflite", "model.json", "float.h5", "qat.h5", "history.json"} <= names
    assert not [n for n in names if n.startswith(".staging")], names  # no staging left behind
    record = json.loads((out / RECORD).read_text())
    assert record["verb"] == "train-qat" and set(record["files"]) == names - {RECORD}
    m = json.loads((out / "model.json").read_text())
    assert m["sha256"] == sha256_file(out / "model.tflite")
    assert m["input"]["dtype"] == "int8" and m["output"]["dtype"] == "int8"
    assert m["params"] > 0 and m["macs"] > 0 and m["training"]["limit"] == 4000
    assert m["accuracy"]["test_images"] == 10000
    assert m["accuracy"]["tflite"] > 0.9, m["accuracy"]
    # QAT makes the Keras model and the INT8 file agree closely.
    assert abs(m["accuracy"]["tflite"] - m["accuracy"]["keras_qat"]) < 0.01
    assert sum(map(sum, m["confusion_matrix"])) == 10000
    text = capsys.readouterr().out
    assert "tflite accuracy" in text
    # It ends with the targets: a short run misses the accuracy one, which is a result
    # (exit 0 above), not an error; the edge model always meets the size one.
    acc_line, size_line = text.strip().splitlines()[-2:]
    assert acc_line == (f"target: INT8 accuracy {100 * m['accuracy']['tflite']:.2f} % >= 99.5 %: "
                        + ("PASS" if m["accuracy"]["tflite"] >= 0.995 else "FAIL")), acc_line
    assert size_line == f"target: model size {m['bytes']:,} bytes <= 65,536 bytes (64 KB): PASS", size_line
    # The golden expectations travel with the model, and the device reproduces them.
    assert len(m["golden"]["predictions"]) == m["golden"]["images"] >= 2100
    assert device_main(["golden", "--model", str(out / "model.tflite")]) == 0
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["float"]["loss"]) == 2 and len(hist["qat"]["loss"]) == 1


def test_sparsity_prune_preserving_qat_and_convert_modes(tmp_path, mnist):
    out = tmp_path / "sparse"
    assert main(["train-qat", "--limit", "3000", "--epochs", "1", "--qat-epochs", "1",
                 "--prune-epochs", "1", "--sparsity", "0.5", "--io", "uint8", "--out", str(out)]) == 0
    m = json.loads((out / "model.json").read_text())
    assert m["input"]["dtype"] == "uint8"
    assert 0.45 <= m["sparsity"] <= 0.55, m["sparsity"]
    assert "prune-preserving" in m["conversion"]
    # The zeros survive QAT and conversion: the file compresses far better than a dense one.
    assert m["gzip_bytes"] < 0.8 * m["bytes"]
    conv = tmp_path / "f16"
    from host.cli import main as host_main

    assert host_main(["convert", str(out / "float.h5"), "--mode", "float16", "--out", str(conv)]) == 0
    f16 = json.loads((conv / "model.json").read_text())
    # The same verification as train-qat: the converted file scores what the Keras model does.
    assert f16["input"]["dtype"] == "float32" and f16["conversion"] == "float16"
    assert f16["accuracy"]["test_images"] == 10000
    assert abs(f16["accuracy"]["tflite"] - f16["accuracy"]["keras"]) < 0.01
    assert f16["golden"]["set_sha256"] == m["golden"]["set_sha256"]


def test_train_then_prune(tmp_path, mnist, capsys):
    out = tmp_path / "float"
    assert main(["train", "--limit", "2000", "--epochs", "1", "--augment", "geometric", "--out", str(out)]) == 0
    assert (out / "float.h5").is_file() and json.loads((out / "history.json").read_text())["float"]["loss"]
    pruned = tmp_path / "pruned"
    assert main(["prune", str(out / "float.h5"), "--sparsity", "0.6", "--epochs", "1", "--limit", "2000",
                 "--out", str(pruned)]) == 0
    rep = json.loads((pruned / "prune.json").read_text())
    assert 0.55 <= rep["sparsity"] <= 0.65
    assert rep["gzip_bytes_after"] < rep["gzip_bytes_before"]
    text = capsys.readouterr().out
    assert "overall sparsity" in text and "b2a_conv" in text
