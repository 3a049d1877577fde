"""The model the repository ships must score exactly what its manifest says."""

import json


from device.manifest import load_manifest, manifest_path_for, sha256_file
from device.runtime import DEFAULT_MODEL


def test_manifest_describes_the_file():
    m = load_manifest(manifest_path_for(DEFAULT_MODEL))
    assert m["sha256"] == sha256_file(DEFAULT_MODEL)
    assert m["bytes"] == DEFAULT_MODEL.stat().st_size
    assert m["input"]["dtype"] == "int8" and m["input"]["shape"] == [1, 28, 28, 1]
    assert m["input_contract"]["range"] == [0.0, 1.0]
    assert m["arch"] == "edge"


def test_shipped_model_scores_what_its_manifest_says(mnist):
    from host.evaluate import evaluate_tflite

    m = load_manifest(manifest_path_for(DEFAULT_MODEL))
    ev = evaluate_tflite(DEFAULT_MODEL, mnist)
    assert ev["correct"] == m["accuracy"]["tflite_correct"]
    assert ev["accuracy"] == m["accuracy"]["tflite"]
    assert ev["confusion_matrix"] == m["confusion_matrix"]


def test_shipped_model_on_real_photos(photos_dir, capsys):
    from device.cli import main

    assert main(["classify", str(photos_dir), "--labels", str(photos_dir / "labels.csv"), "--json"]) == 0
    cap = capsys.readouterr()
    *rows, summary = [json.loads(l) for l in cap.out.splitlines()]
    assert len(rows) == 100 and all({"file", "prediction", "confidence"} <= set(r) for r in rows)
    assert summary["summary"] and summary["labelled"] == 100 and summary["images"] == 100
    assert summary["accuracy"] >= 0.97
