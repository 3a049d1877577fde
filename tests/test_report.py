"""host report renders device result files into one self-contained page."""

import json
import re

from device.results import Result, Stat
from host.cli import main


def _result(path, kind="run", pi=False, scale=1.0):
    stages = {}
    for name in (("capture", "preprocess", "inference", "postprocess", "total") if kind == "run" else ("inference",)):
        s = Stat()
        for v in range(1, 400):
            s.add(int(v * 1000 * scale))
        stages[name] = s.to_dict()
    machine = {"board": "Raspberry Pi 4 Model B Rev 1.5" if pi else None, "is_raspberry_pi": pi,
               "cpu": "Cortex-A72" if pi else "AMD EPYC", "arch": "aarch64" if pi else "x86_64",
               "hostname": "pi" if pi else "box"}
    Result(kind=kind, machine=machine, model={"arch": "edge", "sha256": "ab" * 32, "threads": 1,
                                               "xnnpack": True, "input": {"dtype": "int8"}},
           stages=stages, memory={"peak_rss_kb": 60000}, budget_ms=5.0 if kind == "run" else None,
           within_budget=1.0 if kind == "run" else None, frames=399, fps=100.0).write(path)
    return path


def test_report_html_and_markdown(tmp_path, capsys):
    a = _result(tmp_path / "host-run.json")
    b = _result(tmp_path / "host-bench.json", kind="bench")
    out, md = tmp_path / "r.html", tmp_path / "r.md"
    assert main(["report", str(a), str(b), "--out", str(out), "--markdown", str(md)]) == 0
    page = out.read_text()
    assert page.count("<svg") >= 3                      # stages + one latency plot per file
    assert not re.search(r"(src|href)=['\"]https?://", page)  # self-contained
    assert "No Raspberry Pi result" in page and "AMD EPYC" in page
    text = md.read_text()
    assert "| host-run.json |" in text and "No Raspberry Pi result" in text


def test_pi_results_are_named_and_baseline_regressions_marked(tmp_path, capsys):
    base = _result(tmp_path / "old.json")
    pi = _result(tmp_path / "pi-run.json", pi=True, scale=1.5)
    assert main(["report", str(pi), "--baseline", str(base), "--out", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "No Raspberry Pi result" not in out and "Raspberry Pi 4" in out
    assert "REGRESSION pi-run.json total p50" in out


def test_report_rejects_other_files(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"hello": 1}))
    assert main(["report", str(bad), "--out", str(tmp_path / "r.html")]) == 2
    assert "no schema_version" in capsys.readouterr().err
