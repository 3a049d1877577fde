"""host report renders device result files into one self-contained page."""

import json
import os
import re

import numpy as np
import pytest

from device.schema import BenchResult, RunResult
from device.stats import Stat
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
    model = {"arch": "edge", "sha256": "ab" * 32, "threads": 1, "xnnpack": True, "input": {"dtype": "int8"}}
    if kind == "run":
        RunResult(machine=machine, model=model, source={"kind": "video"}, status="ok", stages=stages,
                  memory={"peak_rss_kb": 60000}, budget_ms=5.0, within_budget=1.0, frames=399,
                  fps=100.0).write(path)
    else:
        BenchResult(machine=machine, model=model, runs=399, warmup_runs=5, stages=stages,
                    memory={"peak_rss_kb": 60000}, timing={}).write(path)
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


def _suite(path, quick=True):
    """A suite summary of the shape benchmarks.suite writes (two variants, full bench grid)."""
    def bench(base):
        return {f"t{t}-{x}": {"p50_ms_per_repeat": [base * t, base * t * 1.1], "p50_ms": base * t * 1.05,
                              "p50_ms_min": base * t, "p50_ms_max": base * t * 1.1, "p99_ms": base * 2,
                              "init_ms": 5.0, "first_inference_ms": 0.3, "init_footprint_mb": 14.0,
                              "peak_rss_mb": 50.0, "file": f"bench-{t}-{x}.json"}
                for t in (1, 2, 4) for x in ("xnn", "noxnn")}
    cm = (np.eye(10, dtype=int) * 990 + 1).tolist()
    variants = {}
    for name, base, acc, size in (("seed-int8", 0.2, 0.991, 1_633_024), ("shipped-int8", 0.05, 0.995, 63_384),
                                  ("edge-float32", 0.08, 0.9951, 220_000)):
        variants[name] = {
            "arch": name.split("-")[0], "conversion": name.split("-")[1], "bytes": size, "params": 1,
            "macs": 1, "sparsity": 0.0, "sha256": "cd" * 32, "mnist_accuracy": acc,
            "mnist_correct": int(acc * 10000), "confusion_matrix": cm, "photos": {"accuracy": 0.97},
            "clip": {"accuracy_per_frame": 0.98, "stages_ms": {"total": {"p50": 0.3, "p99": 0.9}},
                     "within_budget": 1.0, "budget_ms": 5.0, "peak_rss_mb": 75.0},
            "bench": bench(base),
            "speedup_vs_seed_int8": {c: {"median": 0.2 / base, "min": 0.19 / base, "max": 0.21 / base}
                                     for c in bench(base)},
        }
    doc = {"schema_version": 1, "kind": "suite", "quick": quick, "created": "2026-11-28T00:00:00Z",
           "machine": {"cpu": "AMD EPYC", "arch": "x86_64", "hostname": "box", "cpus": 2,
                       "is_raspberry_pi": False},
           "variants": variants, "reference": "seed-int8", "shipped_variant": "shipped-int8", "repeats": 2, "runs_per_bench": 10}
    path.write_text(json.dumps(doc))
    return path


def test_suite_report_has_every_view(tmp_path):
    s = _suite(tmp_path / "suite.json")
    run = _result(tmp_path / "run-shipped-int8.json")
    out, md = tmp_path / "r.html", tmp_path / "r.md"
    assert main(["report", str(s), str(run), "--out", str(out), "--markdown", str(md)]) == 0
    page = out.read_text()
    for title in ("Latency by variant x threads x XNNPACK", "Accuracy vs latency and size", "Pareto front",
                  "shipped-int8 (device/models/model.tflite): 9,950/10,000 correct", "Memory", "Model variants"):
        assert title in page, title
    assert not re.search(r"(src|href)=['\"]https?://", page)
    text = md.read_text()
    # The headline row: accuracy, size, latency with spread, speed-up vs the seed CNN, end to end.
    assert "| shipped-int8 | 99.50 % | 97 % | 98.00 % | 63,384 |" in text
    assert "4.00x (3.80-4.20)" in text and "0.300 / 0.900 ms (5 ms)" in text
    assert "No Raspberry Pi result" in text


def test_suite_baseline_marks_regressions(tmp_path, capsys):
    old = _suite(tmp_path / "old.json")
    new = json.loads(old.read_text())
    for k in ("p50_ms", "p50_ms_min", "p50_ms_max"):
        new["variants"]["shipped-int8"]["bench"]["t1-xnn"][k] *= 1.5
    new["variants"]["seed-int8"]["mnist_accuracy"] = 0.98
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert main(["report", str(tmp_path / "new.json"), "--baseline", str(old), "--out", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "REGRESSION new.json shipped-int8 t1-xnn inference p50" in out
    assert "REGRESSION new.json seed-int8 MNIST accuracy: 98.00 % vs baseline 99.10 %" in out
    assert out.count("REGRESSION") == 2
    assert main(["report", str(old), "--baseline", str(old), "--out", str(tmp_path / "r.html")]) == 0
    assert "No regression beyond 10%" in capsys.readouterr().out


def test_pareto_front():
    from host.report.tables import pareto_front

    # (latency, accuracy): the third is slower and worse than the first; the rest trade off.
    assert pareto_front([(1.0, 99.0), (0.5, 98.0), (2.0, 98.5), (3.0, 99.5)]) == [1, 0, 3]


def test_suite_file_errors(tmp_path, capsys):
    bad = tmp_path / "suite.json"
    bad.write_text(json.dumps({"schema_version": 1, "kind": "suite", "variants": {}}))
    assert main(["report", str(bad), "--out", str(tmp_path / "r.html")]) == 2
    assert "suite result lacks quick" in capsys.readouterr().err
    bad.write_text(json.dumps({"schema_version": 1, "kind": "suite", "variants": {}, "quick": False,
                               "reference": "seed-int8", "shipped_variant": "shipped-int8", "repeats": 1,
                               "runs_per_bench": 1}))
    assert main(["report", str(bad), "--out", str(tmp_path / "r.html")]) == 2
    assert "no variants" in capsys.readouterr().err


def test_report_renders_in_headless_chromium(tmp_path):
    """The page as a browser draws it: a real Chromium screenshot that is not blank."""
    from benchmarks.screenshot import chromium, ink_stats, screenshot

    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium here (sudo apt install chromium)")
    out = tmp_path / "r.html"
    assert main(["report", str(_suite(tmp_path / "suite.json")), str(_result(tmp_path / "run.json")),
                 "--out", str(out)]) == 0
    png = screenshot(out, tmp_path / "r.png", width=1200, height=2400)
    stats = ink_stats(png)
    assert (stats["width"], stats["height"]) == (1200, 2400)
    # Text, tables and plots cover a good part of the page and bring many colours (anti-aliased
    # text, plot fills); a blank or error page is one flat colour.
    assert stats["non_background"] > 0.05 and stats["colours"] > 200, stats
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><html><body></body></html>")
    assert ink_stats(screenshot(blank, tmp_path / "blank.png", 400, 300))["non_background"] == 0.0


def test_committed_arm_results_render_beside_the_hosts_and_are_flagged(tmp_path, capsys):
    """The files deploy.sh --bench brought back from the emulated arm64 Pi render with this
    machine's in one page, and are labelled as emulated (their timings mean nothing)."""
    from tests.conftest import ROOT

    arm = sorted((ROOT / "benchmarks" / "results" / "arm64-qemu" / "127.0.0.1").glob("*.json"))
    host_run = ROOT / "benchmarks" / "results" / "amd-epyc-vm" / "run-clip.json"
    assert arm and host_run.is_file()
    md = tmp_path / "r.md"
    assert main(["report", str(host_run), *map(str, arm), "--out", str(tmp_path / "r.html"),
                 "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "(aarch64, vm, EMULATED: timings meaningless)" in text and "(x86_64, vm)" in text
    assert text.count("EMULATED") == len(arm) + 1  # each row, and the machines line


# -- what cannot be reported is named, the rest is still rendered ------------------------------
def _one_line_per_problem(err: str) -> list[str]:
    lines = [l for l in err.splitlines() if l.strip()]
    assert all(l.startswith("host: warning: ") for l in lines), err
    return lines


def test_zero_frame_runs_render_as_rows_without_timings(tmp_path, capsys):
    """The 0-frame file `device run` wrote before schema 2 (status "ok", every stage
    {"count": 0}: it crashed the report with KeyError 'histogram'), and a schema-2 "no_frames"
    result, each render as a row with no timings and a note, beside a normal result."""
    from tests.conftest import ROOT

    v1 = json.loads((ROOT / "tests" / "data" / "run-schema1.json").read_text())
    v1.update(frames=0, fps=0.0, within_budget=None, status="ok",
              stages={s: {"count": 0} for s in ("capture", "preprocess", "inference", "postprocess", "total")})
    (tmp_path / "empty-v1.json").write_text(json.dumps(v1))
    RunResult(model={"arch": "edge"}, source={"kind": "images"}, status="no_frames", stop_reason="end of source",
              stages={s: {"count": 0} for s in ("capture", "total")}).write(tmp_path / "empty-v2.json")
    good = _result(tmp_path / "good.json")
    out, md = tmp_path / "r.html", tmp_path / "r.md"
    assert main(["report", str(tmp_path / "empty-v1.json"), str(tmp_path / "empty-v2.json"), str(good),
                 "--out", str(out), "--markdown", str(md)]) == 0
    assert capsys.readouterr().err == ""
    text = md.read_text()
    for name, status in (("empty-v1.json", "no_frames"), ("empty-v2.json", "no_frames")):
        row = next(l for l in text.splitlines() if l.startswith(f"| {name} |"))
        assert f"| {status} |" in row and "| - | - |" in row, row   # no p50 / p99
        assert f"{name} recorded no frames" in text
    assert out.read_text().count("<svg") == 2      # the stages plot and good.json's latency plot


def test_malformed_fields_are_named_and_the_rest_rendered(tmp_path, capsys):
    path = _result(tmp_path / "odd.json")
    d = json.loads(path.read_text())
    d["stages"]["total"]["p50"] = "fast"
    d["stages"]["inference"]["histogram"] = {"bins": [1, 2], "counts": [1]}
    d["machine"] = "a string"
    d["memory"] = None
    d["model"]["threads"] = -1
    d["status"] = "exploded"
    path.write_text(json.dumps(d))
    unreadable = tmp_path / "broken.json"
    unreadable.write_text("{not json")
    md = tmp_path / "r.md"
    assert main(["report", str(path), str(unreadable), str(_result(tmp_path / "fine.json")),
                 "--out", str(tmp_path / "r.html"), "--markdown", str(md)]) == 0
    lines = _one_line_per_problem(capsys.readouterr().err)
    for needle in ("odd.json: stage 'total' has non-numeric percentiles; shown as missing",
                   "odd.json: stage 'inference' has a malformed histogram",
                   "odd.json: machine is not an object", "odd.json: model.threads is not a whole number >= 0",
                   "odd.json: status 'exploded' is not one of ok, stopped",
                   "cannot read result", "broken.json"):
        assert any(needle in l for l in lines), (needle, lines)
    assert len(lines) == 7  # the six above and memory (null)
    text = md.read_text()
    row = next(l for l in text.splitlines() if l.startswith("| odd.json |"))
    assert "unknown machine" in row and "| - |" in row and "| ? |" in row
    assert "| fine.json |" in text and "Not reported:" in text


def test_nothing_reportable_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"schema_version": 1, "kind": "run"}))
    other = tmp_path / "y.json"
    other.write_text("[]")
    assert main(["report", str(bad), str(other), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "(and 1 more problem(s))" in err
    assert not (tmp_path / "r.html").exists()


def test_result_fields_cannot_inject_html_or_break_tables(tmp_path):
    path = _result(tmp_path / "evil.json")
    d = json.loads(path.read_text())
    d["machine"]["board"] = "<script>alert(1)</script> | x"
    d["machine"]["hostname"] = "box\n| injected | row |"
    d["model"]["arch"] = "<img src=x onerror=alert(1)>\\|$y$"
    path.write_text(json.dumps(d))
    out, md = tmp_path / "r.html", tmp_path / "r.md"
    assert main(["report", str(path), "--out", str(out), "--markdown", str(md)]) == 0
    text, page = md.read_text(), out.read_text()
    assert "<script" not in text and "<img" not in text
    assert "<script>alert" not in page and "<img src=x" not in page
    row = next(l for l in text.splitlines() if l.startswith("| evil.json |"))
    # 12 columns: 13 unescaped pipes (an escaped one is preceded by an odd number of backslashes)
    assert len(re.findall(r"(?<!\\)(?:\\\\)*\|", row)) == 13, row
    assert "| injected |" not in text


def test_report_runs_with_tensorflow_blocked(tmp_path):
    """`host report` renders result files on a machine without TensorFlow (and never loads it)."""
    import subprocess

    from tests.conftest import ROOT, blocked_python

    committed = ROOT / "benchmarks" / "results" / "amd-epyc-vm"
    files = [committed / "suite.json", committed / "run-clip.json", *sorted((committed / "techniques").glob("*.json"))]
    code = ("import sys; from host.cli import main; code = main(sys.argv[1:]); "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras')]; sys.exit(code)")
    out = subprocess.run(blocked_python(code) + ["report", *map(str, files), "--out", str(tmp_path / "r.html"),
                                                 "--markdown", str(tmp_path / "r.md")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert (tmp_path / "r.html").read_text().count("<svg") >= 5
    assert "| knowledge distillation |" in (tmp_path / "r.md").read_text()
