"""The benchmark suite end to end in --quick mode: real (tiny) training of both architectures,
conversion, photos, clip replay, the bench grid in separate processes, the report."""

import json

import pytest

from benchmarks import suite
from device import schema

pytestmark = pytest.mark.slow


def test_quick_suite_writes_results_and_report(tmp_path):
    results, report = tmp_path / "results", tmp_path / "report"
    report.mkdir()
    assert suite.main(["--quick", "--work", str(tmp_path / "work"), "--results", str(results),
                       "--report", str(report)]) == 0
    [machine_dir] = list(results.iterdir())
    doc = schema.load(machine_dir / "suite-quick.json", expect=("suite",)).to_json()
    assert doc["schema_version"] == schema.SCHEMA_VERSION and doc["quick"]
    assert doc["machine"]["arch"] and doc["machine"]["cpus"]
    assert set(doc["variants"]) == {"seed-int8", "edge-int8", "shipped-int8"}
    files = {p.name for p in (machine_dir / "suite-quick").iterdir()}
    for v, s in doc["variants"].items():
        # Accuracy on all 10,000 test images through the device runtime, and on the photos.
        assert sum(map(sum, s["confusion_matrix"])) == 10_000
        assert s["mnist_correct"] == sum(s["confusion_matrix"][i][i] for i in range(10))
        assert s["photos"]["labelled"] == 100
        assert s["clip"]["frames"] > 0 and f"run-{v}.json" in files
        assert set(s["bench"]) == {f"t{t}-{x}" for t in (1, 2, 4) for x in ("xnn", "noxnn")}
        for cfg, b in s["bench"].items():
            assert b["p50_ms_min"] <= b["p50_ms"] <= b["p50_ms_max"] and b["file"] in files
            bench = schema.load(machine_dir / "suite-quick" / b["file"], expect=("bench",)).to_json()
            assert bench["model"]["threads"] == int(cfg[1]) and bench["model"]["xnnpack"] == cfg.endswith("-xnn")
    # Ratios are against the seed INT8 model, within each repeat: exactly 1 for itself.
    assert doc["variants"]["seed-int8"]["speedup_vs_seed_int8"]["t1-xnn"]["median"] == 1.0
    assert doc["variants"]["edge-int8"]["bytes"] < doc["variants"]["seed-int8"]["bytes"] / 10
    # The shipped model is re-evaluated in the run: what its manifest says it scores.
    shipped = json.loads((suite.ROOT / "device" / "models" / "model.json").read_text())
    assert doc["variants"]["shipped-int8"]["mnist_accuracy"] == shipped["accuracy"]["tflite"]
    page = (report / "report-quick.html").read_text()
    assert page.count("<svg") >= 6 and "Latency by variant x threads x XNNPACK" in page
