import json

import numpy as np
import pytest

from device.errors import UsageError
from device.results import Result, Stat, load_result


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


def test_result_round_trip(tmp_path):
    s = Stat()
    s.add(1_000_000)
    r = Result(kind="run", machine={"arch": "x"}, model={"sha256": "a"},
               stages={"total": s.to_dict()}, memory={}, budget_ms=5.0, extra={"source": {"kind": "video"}})
    p = tmp_path / "r.json"
    r.write(p)
    back = load_result(p)
    assert back.to_json() == r.to_json()
    assert back.extra["source"]["kind"] == "video"


def test_bad_results_are_usage_errors(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"schema_version": 99, "kind": "run", "machine": {}, "model": {},
                             "stages": {}, "memory": {}}))
    with pytest.raises(UsageError, match="schema_version 99"):
        load_result(p)
    p.write_text("{")
    with pytest.raises(UsageError, match="cannot read result"):
        load_result(p)
