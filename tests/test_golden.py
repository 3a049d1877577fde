"""The golden set: the shipped model reproduces its recorded predictions; a changed prediction,
a model without expectations and a stale set are each reported as such."""

import json
import shutil

import numpy as np
import pytest

from device import golden
from device.cli import main
from device.manifest import load_manifest, manifest_path_for, sha256_file
from device.runtime import DEFAULT_MODEL


def _golden(capsys, *args):
    rc = main(["golden", *args])
    return rc, capsys.readouterr()


def test_shipped_model_is_identical_to_its_recorded_predictions(capsys):
    rc, cap = _golden(capsys)
    assert rc == 0, cap.err
    line = cap.out.strip()
    gs = golden.load_set()
    assert line.startswith(f"golden: {len(gs)}/{len(gs)} identical predictions"), line
    # The accuracies in the line are those of the predictions recorded in the manifest (the
    # photo part is what the preprocessing makes of the dev photos, checked below), scored
    # against the set's labels here.
    recorded = np.frombuffer(load_manifest(manifest_path_for(DEFAULT_MODEL))["golden"]["predictions"].encode(),
                             np.uint8) - ord("0")
    n = gs.n_mnist
    right = int(np.sum(recorded[n:] == gs.y[n:]))
    mnist = int(np.sum(recorded[:n] == gs.y[:n]))
    assert f"MNIST {mnist / n:.2%} ({mnist}/{n}), photos {right / (len(gs) - n):.0%} ({right}/{len(gs) - n})" in line


def test_golden_set_contents():
    gs = golden.load_set()
    assert gs.x.dtype == np.uint8 and gs.x.shape[1:] == (28, 28)
    # The dev photos in which the preprocessing finds a digit: all but one since round 14 of
    # issue 13 (a marker's 9 filling the photo, its loop filled in: read as 4 before).
    assert gs.n_mnist >= 2000 and len(gs) - gs.n_mnist == 99
    assert all(s.startswith("mnist-test:") for s in gs.source[:gs.n_mnist])
    assert all(s.startswith("photo:") for s in gs.source[gs.n_mnist:])


def test_photo_part_is_what_the_device_preprocessing_makes(photos_dir):
    """If the preprocessing changes, the set (and every manifest's expectations) is stale:
    rebuild with `python -m host.golden build` and `python -m host.golden stamp MODEL`."""
    from host.golden import photo_inputs

    gs = golden.load_set()
    xs, ys, names = photo_inputs(photos_dir)
    assert [f"photo:{n}" for n in names] == list(gs.source[gs.n_mnist:])
    assert np.array_equal(np.stack(xs), gs.x[gs.n_mnist:])
    assert np.array_equal(np.array(ys), gs.y[gs.n_mnist:])


def test_shipped_expectations_are_what_the_host_computes():
    from host.golden import expectations

    assert expectations(DEFAULT_MODEL) == load_manifest(manifest_path_for(DEFAULT_MODEL))["golden"]


def _copy_shipped(tmp_path, manifest=True):
    model = tmp_path / "model.tflite"
    shutil.copy(DEFAULT_MODEL, model)
    if manifest:
        shutil.copy(manifest_path_for(DEFAULT_MODEL), tmp_path / "model.json")
    return model


def test_altered_expectations_fail_with_the_indices(tmp_path, capsys):
    model = _copy_shipped(tmp_path)
    m = json.loads((tmp_path / "model.json").read_text())
    preds = list(m["golden"]["predictions"])
    for i in (3, 2150):
        preds[i] = str((int(preds[i]) + 1) % 10)
    m["golden"]["predictions"] = "".join(preds)
    (tmp_path / "model.json").write_text(json.dumps(m))
    rc, cap = _golden(capsys, "--model", str(model))
    assert rc == 1
    assert cap.out.startswith("golden: 2/") and "DIFFER" in cap.out
    rc, cap = _golden(capsys, "--model", str(model), "--json")
    r = json.loads(cap.out)
    assert rc == 1 and r["status"] == "different" and r["differ"] == [3, 2150]
    assert r["outputs_identical"]  # the model computed the same bytes; the record was altered


def test_model_without_expectations_is_unverified(tmp_path, capsys):
    model = _copy_shipped(tmp_path, manifest=False)
    rc, cap = _golden(capsys, "--model", str(model), "--json")
    r = json.loads(cap.out)
    assert rc == 0 and r["status"] == "unverified" and "no manifest" in r["reason"]
    model = _copy_shipped(tmp_path)
    m = json.loads((tmp_path / "model.json").read_text())
    del m["golden"]
    (tmp_path / "model.json").write_text(json.dumps(m))
    rc, cap = _golden(capsys, "--model", str(model))
    assert rc == 0 and cap.out.startswith("golden: unverified, its manifest has no golden field")


def test_expectations_for_another_set_are_unverified(tmp_path):
    from device.runtime import Model

    gs = golden.load_set()
    x = gs.x[:50].copy()
    x[0, 0, 0] ^= 1
    other = golden.GoldenSet(x, gs.y[:50], 50, gs.source[:50], golden.set_sha256(x, gs.y[:50], 50))
    r = golden.check(Model(DEFAULT_MODEL), other)
    assert r["status"] == "unverified" and "another golden set" in r["reason"]


def test_stamp_records_any_model(tmp_path, tiny_tflite, capsys):
    """host.golden.stamp works for int8, uint8 and float32 io; the device then agrees."""
    from host.golden import stamp

    for io, path in tiny_tflite.items():
        model = tmp_path / f"{io}.tflite"
        shutil.copy(path, model)
        (tmp_path / f"{io}.json").write_text(json.dumps({"manifest_version": 1,
                                                         "sha256": sha256_file(model)}))
        g = stamp(model)
        assert len(g["predictions"]) == len(golden.load_set())
        rc, cap = _golden(capsys, "--model", str(model), "--json")
        assert rc == 0 and json.loads(cap.out)["status"] == "identical", cap.out


def test_usage_errors(tmp_path, capsys):
    rc, cap = _golden(capsys, "--threads", "0")
    assert rc == 2 and cap.err.startswith("device golden: error:") and len(cap.err.splitlines()) == 1
    bad = tmp_path / "golden.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(golden.UsageError, match="cannot read the golden set"):
        golden.load_set(bad)
