"""host distill, prune-channels, export-onnx and explain: exactness checks of the pieces
(channel surgery, distillation loss) and each verb on a tiny real budget."""

import json

import numpy as np
import pytest

from device.schema import load
from host.cli import main


# -- fast: the pieces -------------------------------------------------------------------------
def test_channel_surgery_is_exact():
    """The shrunk model computes exactly what the full model does with the dropped channels
    switched off (BN gamma = beta = 0, so they output ReLU(0) = 0)."""
    from host.channels import BLOCKS, channel_scores, edge_widths, keep_indices, shrink
    from host.models import build_edge

    rng = np.random.default_rng(0)
    full = build_edge()
    for b in BLOCKS:
        bn = full.get_layer(f"{b}_bn")
        n = bn.get_weights()[0].shape[0]
        bn.set_weights([rng.uniform(0.1, 2, n).astype("f4"), rng.normal(0, 0.2, n).astype("f4"),
                        rng.normal(0, 0.1, n).astype("f4"), rng.uniform(0.5, 2, n).astype("f4")])
    idx = keep_indices(channel_scores(full), 0.5)
    assert edge_widths(full) == (16, 24, 32, 48, 64)
    assert [len(idx[b]) for b in BLOCKS] == [8, 12, 16, 24, 32]
    # The kept channels are the largest |gamma| ones.
    g = np.abs(full.get_layer("b2a_bn").get_weights()[0])
    assert g[idx["b2a"]].min() >= np.delete(g, idx["b2a"]).max()
    small = shrink(full, idx)
    assert edge_widths(small) == (8, 12, 16, 24, 32)
    assert small.count_params() < full.count_params() / 3
    for b in BLOCKS:
        bn = full.get_layer(f"{b}_bn")
        gamma, beta, mean, var = bn.get_weights()
        off = np.setdiff1d(np.arange(len(gamma)), idx[b])
        gamma[off], beta[off] = 0, 0
        bn.set_weights([gamma, beta, mean, var])
    x = rng.uniform(0, 1, (8, 28, 28, 1)).astype("f4")
    np.testing.assert_allclose(small(x, training=False).numpy(), full(x, training=False).numpy(), atol=1e-5)


def test_distillation_loss():
    from host.distill import distillation_loss
    import tensorflow as tf
    import tf_keras

    y = tf.constant([3, 1])
    s = tf.constant([[0.05] * 3 + [0.55] + [0.05] * 6, [0.1] * 10])
    t = tf.constant([[0.02] * 3 + [0.82] + [0.02] * 6, [0.01, 0.91] + [0.01] * 8])
    ce = tf_keras.losses.sparse_categorical_crossentropy(y, s).numpy()
    # alpha = 1: plain cross-entropy on the labels.
    np.testing.assert_allclose(distillation_loss(y, s, t, 4.0, 1.0).numpy(), ce, rtol=1e-5)
    # alpha = 0: soft cross-entropy, smallest when the student matches the teacher.
    assert np.all(distillation_loss(y, t, t, 4.0, 0.0).numpy() < distillation_loss(y, s, t, 4.0, 0.0).numpy())
    v = tf.Variable(tf.math.log(s))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(distillation_loss(y, tf.nn.softmax(v), t, 4.0, 0.0))
    step = v - 0.1 * tape.gradient(loss, v)  # one gradient step moves the student toward the teacher
    assert np.all(np.abs(tf.nn.softmax(step).numpy() - t.numpy()).sum(1) < np.abs(s.numpy() - t.numpy()).sum(1))


def test_distiller_reports_epoch_means():
    """val_loss (what early stopping watches) is the mean cross-entropy over the whole
    validation set, not the last batch's."""
    import tf_keras

    from host.distill import Distiller
    from host.models import build_edge

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (64, 28, 28, 1)).astype("f4")
    y = rng.integers(0, 10, 64)
    student, teacher = build_edge(), build_edge(name="teacher")
    d = Distiller(student, teacher, 4.0, 0.3)
    d.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    logs = d.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    probs = student.predict(x, verbose=0)
    ce = -np.log(probs[np.arange(64), y])
    assert set(logs) == {"loss", "accuracy"}
    np.testing.assert_allclose(logs["loss"], ce.mean(), rtol=1e-4)
    assert logs["accuracy"] == np.mean(probs.argmax(1) == y)
    hist = d.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y)).history
    assert set(hist) == {"loss", "accuracy", "val_loss", "val_accuracy"}


# -- slow: each verb on a tiny real budget ----------------------------------------------------
@pytest.fixture(scope="module")
def float_model(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("float")
    assert main(["train", "--limit", "4000", "--epochs", "2", "--out", str(out)]) == 0
    return out / "float.h5"


@pytest.mark.slow
def test_export_onnx_matches_tflite(float_model, tmp_path, capsys):
    import onnx

    out = tmp_path / "onnx"
    assert main(["export-onnx", str(float_model), "--out", str(out)]) == 0
    onnx.checker.check_model(onnx.load(str(out / "model.onnx")))
    res = load(out / "onnx.json", expect=("technique",))
    doc = res.figures
    assert res.technique == "export_onnx" and doc["images"] == 10_000
    assert doc["pass"] and doc["agreement"] >= 0.999
    assert abs(doc["accuracy"]["onnx"] - doc["accuracy"]["tflite_float32"]) <= 0.001
    assert doc["latency_ms"]["onnxruntime"]["p50"] > 0 and doc["latency_ms"]["tflite_float32"]["p50"] > 0
    assert "same prediction on" in capsys.readouterr().out
    # A .tflite is not a Keras model: one line, exit 2.
    assert main(["export-onnx", str(out / "float32.tflite"), "--out", str(tmp_path / "x")]) == 2
    assert "cannot load Keras model" in capsys.readouterr().err


@pytest.mark.slow
def test_explain_writes_a_grid(float_model, tmp_path, capsys):
    import cv2

    from tests.conftest import ROOT

    photos = ROOT.parent / "shared" / "data" / "digit-photos"
    out = tmp_path / "cam.png"
    files = sorted(photos.glob("*.png"))[:3]
    assert main(["explain", str(float_model), *map(str, files), "--labels", str(photos / "labels.csv"),
                 "--mnist-index", "0,7", "--mnist-errors", "2", "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 100 and img.std() > 10
    text = capsys.readouterr().out
    assert "Grad-CAM on layer b3a_relu" in text and "7 image(s)" in text
    # --wrong-only keeps just the misread: the MNIST errors are misread by definition.
    wrong = tmp_path / "wrong.png"
    assert main(["explain", str(float_model), "--mnist-errors", "2", "--wrong-only",
                 "--out", str(wrong)]) == 0
    assert cv2.imread(str(wrong)) is not None and "2 image(s)" in capsys.readouterr().out
    for bad, msg in ((["--layer", "nope", "--mnist-index", "0"], "no layer 'nope'"),
                     ([str(files[0]), "--wrong-only"], "--wrong-only needs labels"),
                     ([], "nothing to explain"), (["--mnist-index", "x"], "comma-separated integers"),
                     (["--mnist-index", "99999"], "outside 0..9999")):
        assert main(["explain", str(float_model), *bad, "--out", str(tmp_path / "b.png")]) == 2
        assert msg in capsys.readouterr().err


def test_grad_cam_maps():
    from host.explain import grad_cam
    from host.models import build_edge

    model = build_edge()
    x = np.zeros((3, 28, 28), np.float32)
    x[:, 6:22, 12:16] = 1
    heat, probs = grad_cam(model, x)
    assert heat.shape == (3, 28, 28) and probs.shape == (3, 10)
    assert heat.min() >= 0 and heat.max() <= 1
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


@pytest.mark.slow
def test_prune_channels_makes_a_smaller_faster_model(float_model, tmp_path, capsys):
    out = tmp_path / "ch"
    assert main(["prune-channels", str(float_model), "--keep", "0.5", "--epochs", "1", "--limit", "3000",
                 "--repeats", "3", "--out", str(out)]) == 0
    res = load(out / "prune_channels.json", expect=("technique",))
    doc = res.figures
    assert res.technique == "prune_channels" and doc["widths_after"] == [8, 12, 16, 24, 32]
    b, a = doc["before"], doc["after"]
    assert a["macs"] < b["macs"] / 3 and a["params"] < b["params"] / 3 and a["bytes"] < b["bytes"] / 2
    assert len(doc["latency_ms_single_thread"]["speedup"]["per_repeat"]) == 3
    for d in (out, out / "before"):
        m = json.loads((d / "model.json").read_text())
        assert m["accuracy"]["test_images"] == 10_000 and m["input"]["dtype"] == "int8"
    assert json.loads((out / "model.json").read_text())["widths"] == [8, 12, 16, 24, 32]
    assert "faster" in capsys.readouterr().out
    # The result renders as a line of the benchmark report.
    md = tmp_path / "r.md"
    assert main(["report", str(out / "prune_channels.json"), "--out", str(tmp_path / "r.html"),
                 "--markdown", str(md)]) == 0
    assert "| channel pruning | BatchNorm \\|gamma\\| per channel, keep 50%" in md.read_text()
    assert main(["prune-channels", str(float_model), "--keep", "1.5", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.slow
def test_distill_trains_both_students_alike(float_model, tmp_path, capsys):
    out = tmp_path / "kd"
    assert main(["distill", "--teacher", str(float_model), "--limit", "3000", "--epochs", "1",
                 "--temperature", "3", "--alpha", "0.5", "--out", str(out)]) == 0
    res = load(out / "distill.json", expect=("technique",))
    doc = res.figures
    assert res.technique == "distill" and doc["temperature"] == 3 and doc["alpha"] == 0.5
    assert set(doc["students"]) == {"plain", "distilled"}
    for d in (out, out / "baseline"):
        hist = json.loads((d / "history.json").read_text())
        assert len(hist["float"]["loss"]) == 1 and len(hist["qat"]["loss"]) == 1
        assert json.loads((d / "model.json").read_text())["accuracy"]["test_images"] == 10_000
    assert json.loads((out / "model.json").read_text())["training"]["distillation"]["alpha"] == 0.5
    assert json.loads((out / "baseline" / "model.json").read_text())["training"]["distillation"] is None
    # The same data, the same epochs, the same initial weights: only the loss differs.
    assert doc["gain_int8"] == doc["students"]["distilled"]["int8_accuracy"] - doc["students"]["plain"]["int8_accuracy"]
    assert "distillation changed INT8 accuracy" in capsys.readouterr().out
    assert main(["distill", "--alpha", "2", "--out", str(tmp_path / "x")]) == 2
