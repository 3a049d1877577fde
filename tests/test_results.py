import json

import numpy as np
import pytest

from device.errors import UsageError
from device.schema import BenchResult, RunResult, load
from device.stats import Stat


def test_stat_percentiles_within_one_percent():
    rng = np.random.default_rng(0)
    ns = (rng.lognormal(mean=12, sigma=0.6, size=20000)).astype(np.int64)
    s = Stat()
    for v in ns:
        s.add(int(v))
    d = s.to_dict()
    for p in (50, 90, 99):
        exact = np.percentile(ns, p) / 1e6
        assert abs(d[f"p{p}"] - exact) / exact < 0.011
    assert d["min"] == ns.min() / 1e6 and d["max"] == ns.max() / 1e6
    assert abs(d["mean"] - ns.mean() / 1e6) < 1e-9
    assert abs(s.fraction_within(np.percentile(ns, 90)) - 0.9) < 0.01
    assert sum(d["histogram"]["counts"]) == len(ns)


def test_stat_memory_is_constant():
    s = Stat()
    before = s.hist.nbytes
    for v in range(1, 200000, 7):
        s.add(v * 1000)
    assert s.hist.nbytes == before


def _run(**kw):
    s = Stat()
    s.add(1_000_000)
    fields = dict(machine={"arch": "x"}, model={"sha256": "a"}, source={"kind": "video"}, status="ok",
                  frames=1, stages={"total": s.to_dict()})
    return RunResult(**{**fields, **kw})


def test_result_round_trip(tmp_path):
    r = _run()
    p = tmp_path / "r.json"
    r.write(p)
    back = load(p)
    assert isinstance(back, RunResult) and back.to_json() == r.to_json()
    assert back.source["kind"] == "video"
    text = p.read_text()
    assert json.loads(text)["created"].endswith("Z")


def test_bad_results_are_usage_errors(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"schema_version": 99, "kind": "run"}))
    with pytest.raises(UsageError, match="schema_version 99"):
        load(p)
    p.write_text("{")
    with pytest.raises(UsageError, match="cannot read result"):
        load(p)
    p.write_text(json.dumps({**_run().to_json(), "surprise": 1}))
    with pytest.raises(UsageError, match="unknown field"):
        load(p)
    p.write_text(json.dumps({**_run().to_json(), "stages": {"total": {"count": 3}}}))
    with pytest.raises(UsageError, match="lacks"):
        load(p)
    with pytest.raises(UsageError, match="no frames cannot be status ok"):
        _run(frames=0).validate()
    with pytest.raises(UsageError, match="a run result where bench was expected"):
        r = _run()
        r.write(p)
        load(p, expect=("bench",))


def test_infinite_numbers_are_never_written(tmp_path):
    with pytest.raises(UsageError, match="budget_ms"):
        _run(budget_ms=float("inf")).write(tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_version_1_files_still_read():
    """Older committed results and a Pi's older files are schema 1: they upgrade on reading
    (``tests/data/run-schema1.json``: the device loop benchmark's `device run` result as
    committed before schema 2; the benchmark itself now writes schema 2)."""
    from tests.conftest import ROOT

    old = load(ROOT / "tests" / "data" / "run-schema1.json")
    assert json.loads((ROOT / "tests" / "data" / "run-schema1.json").read_text())["schema_version"] == 1
    assert isinstance(old, RunResult) and old.frames > 0 and old.counts["no_digit"] >= 0
    assert old.created.endswith("Z") and old.status == "ok"
    bench = next((ROOT / "benchmarks" / "results" / "arm64-qemu").rglob("bench-*.json"))
    b = load(bench)
    assert isinstance(b, BenchResult) and b.timing["model_load_ms"] > 0
