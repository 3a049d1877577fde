"""host finetune: collections (the device's format and the dev photos), the shipped model
rebuilt from its INT8 weights, the MNIST mix, bad inputs, and a tiny real fine-tune."""

import csv
import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from device.errors import UsageError
from host.cli import main
from tests.conftest import ROOT, SHIPPED, blocked_python

HEADER = ["file", "label", "prediction", "confidence", "source", "created"]


def make_collection(folder, photos, rows):
    """A collection as ``device collect`` writes it: each crop (a dev photo here) with its
    28x28 ``.input.png`` made by the device's preprocessing, and labels.csv with the full
    header.  ``rows``: [(photo name or a new file name, label, write the .input.png?)]."""
    from device.preprocess import prepare

    folder.mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for name, label, with_input in rows:
            src = photos / name
            if src.is_file():
                shutil.copy(src, folder / name)
                if with_input:
                    x = prepare(cv2.imread(str(src))).image
                    cv2.imwrite(str(folder / (src.stem + ".input.png")), np.rint(x * 255).astype(np.uint8))
            w.writerow([name, label, "", "", "test", "2026-01-01T00:00:00Z"])
    return folder


def photo_rows(photos, writers, with_input=True):
    rows = []
    for line in csv.DictReader(open(photos / "labels.csv")):
        if any(line["file"].startswith(wr + "-") for wr in writers):
            rows.append((line["file"], line["label"], with_input))
    return rows


# -- fast -------------------------------------------------------------------------------------
def test_collection_reads_device_inputs_and_preprocesses_photos(tmp_path, photos_dir):
    from device.preprocess import prepare
    from host.collection import read_collection, read_collections, split_holdout

    rows = photo_rows(photos_dir, ["aj148"], with_input=True)
    rows += photo_rows(photos_dir, ["mhw32"], with_input=False)
    rows += [("blank-0001.png", "none", False), ("later-0002.png", "", False), ("evicted-0003.png", "4", False)]
    col = make_collection(tmp_path / "col", photos_dir, rows)
    # A .input.png that differs from what the preprocessing would make: it is used as given.
    given = col / "aj148-b9c7ade-3.input.png"
    marked = cv2.imread(str(given), cv2.IMREAD_GRAYSCALE)
    marked[0, 0] = 77
    cv2.imwrite(str(given), marked)
    samples, counts = read_collection(col)
    assert counts.to_json() == {"from_input_png": 10, "preprocessed": 10, "not_a_digit": 1, "unlabelled": 1,
                                "missing": 1, "no_digit_found": 0, "unreadable": 0, "used": 20}
    assert samples.x.shape == (20, 28, 28) and samples.x.dtype == np.uint8
    i = samples.names.index("col/aj148-b9c7ade-3.png")
    np.testing.assert_array_equal(samples.x[i], marked)
    assert samples.y[i] == 3
    j = samples.names.index("col/mhw32-56ad1c8-7.png")
    expected = prepare(cv2.imread(str(photos_dir / "mhw32-56ad1c8-7.png"))).image
    np.testing.assert_array_equal(samples.x[j], np.rint(expected * 255).astype(np.uint8))
    # The dev photos folder is a collection as it is.
    photos, info = read_collections([photos_dir])
    # (All but one: a marker's 9 filling its photo, no digit found; test_golden says more.)
    assert len(photos) == 99 and info["total"]["preprocessed"] == 99 and info["total"]["no_digit_found"] == 1
    train, held = split_holdout(photos, 0.2, seed=0)
    assert len(held) == 20 and len(train) == 79
    assert sorted(np.bincount(held.y, minlength=10)) == [2] * 10
    assert not set(train.names) & set(held.names)


def test_collection_bad_label_names_the_row(tmp_path):
    from host.collection import read_collection

    (tmp_path / "labels.csv").write_text("file,label\na.png,7\nb.png,seven\n")
    with pytest.raises(UsageError, match=r"row 3: label 'seven' is not 0-9, none or empty"):
        read_collection(tmp_path)


def test_mix_keeps_the_ratio(mnist):
    from host.collection import Samples
    from host.finetune import mix_pool

    train = Samples(np.full((90, 28, 28), 255, np.uint8), np.arange(90) % 10, [f"c/{i}" for i in range(90)])
    for ratio in (0.1, 0.25, 0.5):
        pool, desc = mix_pool(mnist, train, ratio, 12000, seed=0)
        assert abs(desc["collected_share"] - ratio) < 0.01
        assert len(pool.x_train) == len(pool.y_train) == desc["pool"]
        assert np.sum(pool.x_train.reshape(len(pool.x_train), -1).min(axis=1) == 255) == 90 * desc["copies"]
        assert pool.x_test is mnist.x_test
    _, desc = mix_pool(mnist, train, 0.25, 100, seed=0)
    assert desc["copies"] == 1   # never fewer than one copy of each sample


def test_shipped_model_rebuilt_from_int8(mnist):
    """The float model rebuilt from the shipped .tflite predicts what the .tflite does, and
    its calibrated BatchNorms give nearly the same output in training mode (batch
    statistics), so fine-tuning starts from the shipped model and not from a wrecked one."""
    import tf_keras as keras

    from host import models
    from host.augment import to_float
    from host.rebuild import agreement, edge_from_tflite

    manifest = json.loads(SHIPPED.with_suffix(".json").read_text())
    model = edge_from_tflite(SHIPPED, mnist.x_train[:1000])
    assert models.count_params(model) == manifest["params"]
    assert models.count_macs(model) == manifest["macs"]
    assert agreement(model, SHIPPED, mnist.x_test[:500]) >= 0.99
    x, y = to_float(mnist.x_test[500:628]), mnist.y_test[500:628]
    ce = keras.losses.SparseCategoricalCrossentropy()
    infer, train = float(ce(y, model(x, training=False))), float(ce(y, model(x, training=True)))
    assert infer < 0.1 and train < 2 * infer + 0.02


def test_bad_inputs_one_line_before_tensorflow(tmp_path, photos_dir):
    """Missing collection, no labelled rows, bad options and --base files: one line, exit 2,
    nothing written, with TensorFlow unimportable (they are refused before it loads)."""
    empty = tmp_path / "unlabelled"
    empty.mkdir()
    (empty / "labels.csv").write_text(",".join(HEADER) + "\nx.png,,3,0.4,cam,t\ny.png,none,,,cam,t\n")
    (tmp_path / "notes.h5").write_text("not a model")
    photos = str(photos_dir)
    cases = [
        ([str(tmp_path / "missing")], "is not a folder"),
        ([str(tmp_path)], "has no labels.csv"),
        ([str(empty)], "no labelled samples"),
        ([photos, "--test", str(empty)], "no labelled samples"),
        ([photos, "--base", str(tmp_path / "gone.tflite")], "gone.tflite: no such file"),
        ([photos, "--base", str(tmp_path / "notes.h5")], "neither a .tflite nor a Keras"),
        ([photos, "--ratio", "1"], "--ratio must be < 1"),
        ([photos, "--holdout", "-0.1"], "--holdout must be >= 0"),
        ([photos, "--mnist-images", "50"], "--mnist-images must be >= 100"),
        ([photos, "--epochs", "-1"], "--epochs must be >= 0"),
        ([photos, "--lr", "0"], "--lr must be > 0"),
        ([photos, "--batch", "0"], "--batch must be > 0"),
    ]
    code = ("import sys, json\nfrom host.cli import main\n"
            "print(json.dumps([main(['finetune', *a, '--out', sys.argv[2]]) for a in json.loads(sys.argv[1])]))\n")
    out = tmp_path / "out"
    proc = subprocess.run(blocked_python(code) + [json.dumps([a for a, _ in cases]), str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [2] * len(cases)
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == len(cases) and "Traceback" not in proc.stderr, proc.stderr
    for line, (_, msg) in zip(errors, cases):
        assert line.startswith("host") and msg in line, line
    assert not out.exists()


def test_float_base_and_not_an_edge_tflite(tmp_path, mnist, wrong_shape_tflite):
    from host.config import defaults
    from host.finetune import _base_model
    from host.models import build_seed

    cfg = defaults("finetune")
    seed = build_seed()
    seed.save(tmp_path / "seed.h5", include_optimizer=False)
    model, before, arch, desc = _base_model(tmp_path / "seed.h5", "keras", mnist, cfg, tmp_path)
    assert arch == "seed" and desc["kind"] == "float Keras" and before.read_bytes()[4:8] == b"TFL3"
    with pytest.raises(UsageError, match="28, 28, 1"):
        _base_model(wrong_shape_tflite, "tflite", mnist, cfg, tmp_path)
    with pytest.raises(UsageError, match="not an edge-family model"):
        _base_model(before, "tflite", mnist, cfg, tmp_path)


# -- slow: a real fine-tune on a tiny budget --------------------------------------------------
@pytest.mark.slow
def test_finetune_tiny_real(tmp_path, photos_dir, capsys):
    from device import schema
    from device.runtime import Model
    from host.report.load import load_one
    from host.report.tables import technique_row

    rows = photo_rows(photos_dir, ["aj148", "dksahuji", "rctruta"]) + [("blank.png", "none", False),
                                                                      ("todo.png", "", False)]
    col = make_collection(tmp_path / "col", photos_dir, rows)
    out = tmp_path / "ft"
    assert main(["finetune", str(col), "--mnist-images", "600", "--epochs", "1", "--holdout", "0.34",
                 "--out", str(out)]) == 0
    result = schema.load(out / "finetune.json", expect=("technique",))
    doc = result.figures
    assert result.technique == "finetune" and doc["base"]["kind"] == "INT8 tflite"
    assert doc["base"]["rebuild_agreement"] >= 0.98
    assert doc["samples"]["total"]["from_input_png"] == 30 and doc["samples"]["total"]["not_a_digit"] == 1
    assert doc["pool"]["collected_samples"] == 20 and 0.2 < doc["pool"]["collected_share"] < 0.3
    assert doc["before"]["heldout"]["samples"] == doc["after"]["heldout"]["samples"] == 10
    assert doc["before"]["mnist_int8"] == 0.995     # the shipped model, as its manifest says
    assert doc["after"]["mnist_int8"] > 0.95
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["sha256"] == doc["sha256"] and manifest["training"]["finetune"]["ratio"] == 0.25
    assert Model(out / "model.tflite").verified == "manifest"   # deployable as it is
    text = capsys.readouterr().out
    assert "held-out samples, INT8" in text and "MNIST test, INT8" in text
    # host report renders it as a line of the techniques table.
    row = technique_row(load_one(out / "finetune.json", []).data, "finetune.json")
    assert row[0] == "fine-tuning on collected samples" and "held-out samples" in row[2]
    # A QAT .h5 as the base, scored on another writer's collection.
    test_col = make_collection(tmp_path / "other", photos_dir, photo_rows(photos_dir, ["mhw32"]))
    out2 = tmp_path / "ft2"
    assert main(["finetune", str(col), "--base", str(out / "qat.h5"), "--test", str(test_col),
                 "--mnist-images", "300", "--epochs", "0", "--out", str(out2)]) == 0
    doc2 = schema.load(out2 / "finetune.json", expect=("technique",)).figures
    assert doc2["base"]["kind"] == "QAT Keras" and doc2["base"]["rebuild_agreement"] >= 0.98
    # Its conversion is the first run's model (the ranges are QAT's; calibration images differ).
    assert abs(doc2["before"]["mnist_int8"] - doc["after"]["mnist_int8"]) <= 0.002
    assert doc2["before"]["heldout"]["samples"] == 10 and doc2["pool"]["collected_samples"] == 30
