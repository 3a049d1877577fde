"""``host report``: render device result files (``device run`` / ``device bench``, from this
machine or copied back from a Pi by ``deploy.sh --bench``) and benchmark suite summaries
(``benchmarks/suite.py``) into one self-contained HTML page (inline SVG plots made with
matplotlib, no external links) and a Markdown summary.

Every figure comes from the files; the page names the machine behind each one and says so
when no Raspberry Pi result is among them.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

import numpy as np

from device.errors import UsageError
from device.fsio import atomic_write_bytes
from device.schema import Document as Result, load as load_result
from device.stats import hist_bin_ms


def machine_label(r: Result) -> str:
    from host.suite_report import describe_machine

    return describe_machine(r.machine)


def result_label(r: Result, path: Path) -> str:
    mod = r.model
    arch = mod.get("arch") or "model"
    xnn = "xnnpack" if mod.get("xnnpack") else "no-xnnpack"
    return f"{path.name}: {r.kind} {arch}, {mod.get('input', {}).get('dtype', '?')} input, " \
           f"{mod.get('threads')}t {xnn} on {machine_label(r)}"


def _headline_stage(r: Result) -> str:
    return "total" if "total" in r.stages else "inference"


def summary_rows(results: list[tuple[Path, Result]]) -> list[dict]:
    rows = []
    for path, r in results:
        st = r.stages[_headline_stage(r)]
        rows.append({
            "file": path.name, "kind": r.kind, "machine": machine_label(r),
            "pi": bool(r.machine.get("is_raspberry_pi")),
            "model": f"{r.model.get('arch') or '?'} {r.model.get('sha256', '')[:12]}",
            "threads": r.model.get("threads"), "xnnpack": r.model.get("xnnpack"),
            "stage": _headline_stage(r), "p50": st.get("p50"), "p99": st.get("p99"),
            "within_budget": getattr(r, "within_budget", None), "budget_ms": getattr(r, "budget_ms", None),
            "fps": getattr(r, "fps", None), "frames": getattr(r, "frames", getattr(r, "runs", None)),
            "peak_rss_mb": (r.memory.get("peak_rss_kb") or 0) / 1024,
        })
    return rows


def compare(results, baseline: Result, tolerance: float) -> list[str]:
    """Lines naming every stage percentile that got slower than the baseline by more than
    ``tolerance`` (a fraction)."""
    out = []
    for path, r in results:
        for stage, st in r.stages.items():
            base = baseline.stages.get(stage)
            if not base or not st.get("count") or not base.get("count"):
                continue
            for q in ("p50", "p99"):
                if base[q] > 0 and st[q] > base[q] * (1 + tolerance):
                    out.append(f"REGRESSION {path.name} {stage} {q}: {st[q]:.3f} ms vs baseline "
                               f"{base[q]:.3f} ms (+{(st[q] / base[q] - 1):.0%}, tolerance {tolerance:.0%})")
    return out


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def latency_plot(path: Path, r: Result) -> str:
    """Histogram and CDF of the headline stage, with the budget line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = r.stages[_headline_stage(r)]
    bins = np.array(st["histogram"]["bins"])
    counts = np.array(st["histogram"]["counts"], dtype=float)
    lo = np.array([hist_bin_ms(i) for i in bins])
    hi = np.array([hist_bin_ms(i + 1) for i in bins])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    a.bar(lo, counts, width=hi - lo, align="edge", color="#4477aa")
    a.set_xlabel(f"{_headline_stage(r)} per frame (ms)" if r.kind == "run" else "inference (ms)")
    a.set_ylabel("frames" if r.kind == "run" else "runs")
    a.set_title("distribution")
    b.step(hi, np.cumsum(counts) / counts.sum(), where="post", color="#4477aa")
    b.set_ylim(0, 1.01)
    b.set_xlabel("ms")
    b.set_title("cumulative share")
    budget = getattr(r, "budget_ms", None)
    for ax in (a, b):
        if budget:
            ax.axvline(budget, color="#cc3311", linestyle="--", label=f"budget {budget} ms")
        ax.set_xscale("log")
    if budget:
        b.legend(loc="lower right")
    fig.suptitle(result_label(r, path), fontsize=9)
    return _svg(fig)


def stages_plot(results) -> str:
    """p50 and p99 of each stage, one group per run result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(p, r) for p, r in results if r.kind == "run"]
    if not runs:
        return ""
    stages = ["capture", "preprocess", "inference", "postprocess", "total"]
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.9 * len(runs)))
    y = np.arange(len(runs))
    h = 0.8 / len(stages)
    for k, s in enumerate(stages):
        p50 = [r.stages.get(s, {}).get("p50", 0) or 0 for _, r in runs]
        p99 = [r.stages.get(s, {}).get("p99", 0) or 0 for _, r in runs]
        ax.barh(y + k * h, p99, height=h, color=f"C{k}", alpha=0.35)
        ax.barh(y + k * h, p50, height=h, color=f"C{k}", label=s)
    budget = runs[0][1].budget_ms
    if budget:
        ax.axvline(budget, color="#cc3311", linestyle="--", label=f"budget {budget} ms")
    ax.set_yticks(y + 0.4, [f"{p.name}\n{machine_label(r)}" for p, r in runs], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("ms per frame (solid: p50, light: p99)")
    ax.legend(fontsize=7, loc="lower right")
    return _svg(fig)


def _table_html(rows: list[dict]) -> str:
    head = ["file", "machine", "kind", "model", "threads", "XNNPACK", "stage", "p50 ms", "p99 ms",
            "within budget", "fps", "peak RSS MB"]
    body = []
    for r in rows:
        cells = [r["file"], r["machine"], r["kind"], r["model"], r["threads"],
                 "on" if r["xnnpack"] else "off", r["stage"], f"{r['p50']:.3f}", f"{r['p99']:.3f}",
                 f"{r['within_budget']:.1%}" if r["within_budget"] is not None else "-",
                 f"{r['fps']:.0f}" if r["fps"] else "-", f"{r['peak_rss_mb']:.1f}"]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(body)
            + "</table>")


def markdown(rows: list[dict]) -> str:
    lines = ["| file | machine | kind | model | threads | XNNPACK | p50 ms | p99 ms | within budget | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wb = f"{r['within_budget']:.1%}" if r["within_budget"] is not None else "-"
        lines.append(f"| {r['file']} | {r['machine']} | {r['kind']} ({r['stage']}) | {r['model']} | "
                     f"{r['threads']} | {'on' if r['xnnpack'] else 'off'} | {r['p50']:.3f} | "
                     f"{r['p99']:.3f} | {wb} | {r['peak_rss_mb']:.1f} |")
    return "\n".join(lines) + "\n"


def accuracy_tables(results) -> list[tuple[str, str, list[str], list[list]]]:
    """For each run scored against labels (``device run --labels``): (file, headline, header,
    rows) of its confusion matrix, label classes down, read classes across, with each class's
    accuracy at the end of its row."""
    out = []
    for path, r in results:
        acc = getattr(r, "accuracy", None)
        if not acc or not acc.get("frames"):
            continue
        what = "numbers read exactly" if acc.get("read") == "number" else "frames right"
        head = f"{acc['accuracy']:.1%} {what} ({acc['correct']}/{acc['frames']} labelled frames"
        if acc.get("per_digit") is not None:
            head += f"; per digit {acc['per_digit']:.1%}"
        head += f") against {Path(str(acc.get('labels'))).name}"
        classes = acc["classes"]
        rows = []
        for i, name in enumerate(classes):
            n = sum(acc["confusion"][i])
            if n:
                rows.append([name, *acc["confusion"][i], f"{acc['confusion'][i][i] / n:.1%}"])
        out.append((path.name, head, ["label \\ read", *classes, "right"], rows))
    return out


def _accuracy_html(tables) -> list[str]:
    page = ["<h2>Accuracy against labels</h2>"] if tables else []
    for name, head, header, rows in tables:
        page.append(f"<h3>{html.escape(name)}</h3><p>{html.escape(head)}</p><table><tr>"
                    + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                    + "".join("<tr>" + "".join(f"<td>{'' if c == 0 else html.escape(str(c))}</td>"
                                               for c in row) + "</tr>" for row in rows) + "</table>")
    return page


def _accuracy_markdown(tables) -> str:
    text = ""
    for name, head, header, rows in tables:
        text += f"\nAccuracy of {name}: {head}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
        text += "".join("| " + " | ".join(str(c) if c != 0 else "" for c in row) + " |\n" for row in rows)
    return text


def _load_any(path: str):
    """('suite', dict) for a suite summary, ('result', Result) for a device result file."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read result {path}: {exc}") from None
    from host.suite_report import TECHNIQUE_KINDS, check_suite, technique_row

    if isinstance(d, dict) and d.get("kind") == "suite":
        return "suite", check_suite(d, Path(path).name)
    if isinstance(d, dict) and d.get("kind") in TECHNIQUE_KINDS:
        try:
            return "technique", technique_row(d, Path(path).name)
        except (KeyError, TypeError) as exc:
            raise UsageError(f"{path}: {d['kind']} result lacks {exc}; re-run the job") from None
    return "result", load_result(path, expect=("run", "bench"))


def build_report(paths: list[str], out: str | None, md: str | None, baseline: str | None,
                 tolerance: float = 0.10) -> dict:
    """Load the result files, write the HTML (and Markdown); returns rows and notes."""
    from host import suite_report

    if not paths:
        raise UsageError("give at least one result JSON (from device run / device bench / benchmarks.suite)")
    loaded = [(Path(p), *_load_any(p)) for p in paths]
    suites = [(p, d) for p, kind, d in loaded if kind == "suite"]
    results = [(p, r) for p, kind, r in loaded if kind == "result"]
    techniques = [row for _, kind, row in loaded if kind == "technique"]
    rows = summary_rows(results)
    machines = sorted({row["machine"] for row in rows} | {suite_report.machine_name(d) for _, d in suites}
                      | {t["machine"] for t in techniques})
    notes = [f"Machines: {'; '.join(machines)}."]
    if not any(row["pi"] for row in rows) and not any(d["machine"].get("is_raspberry_pi") for _, d in suites):
        notes.append("No Raspberry Pi result is in this report: every figure here was measured "
                     "on the machines named above, not on a Pi.")
    if baseline:
        kind, base = _load_any(baseline)
        if kind == "suite":
            regressions = [line for p, d in suites for line in suite_report.compare_suites(d, p.name, base, tolerance)]
        elif kind == "result":
            regressions = compare(results, base, tolerance)
        else:
            raise UsageError(f"--baseline {baseline}: give a device result or a suite file")
        notes += regressions or [f"No regression beyond {tolerance:.0%} against {Path(baseline).name}."]
    if out:
        plots = [stages_plot(results)] + [latency_plot(p, r) for p, r in results]
        page = ["<!doctype html><html><head><meta charset='utf-8'><title>mnist-edge report</title>",
                "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
                "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}"
                ".note{background:#fff4e0;padding:6px 10px;margin:4px 0}</style></head><body>",
                "<h1>mnist-edge benchmark report</h1>"]
        page += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
        for p, d in suites:
            page += suite_report.sections(d, p.name, _svg)
        if techniques:
            page.append(suite_report.techniques_html(techniques))
        if rows:
            page += ["<h2>Device result files</h2>", _table_html(rows)]
        page += _accuracy_html(accuracy_tables(results))
        page += [f"<div>{svg}</div>" for svg in plots if svg]
        page.append("</body></html>")
        atomic_write_bytes(out, "\n".join(page).encode())
    if md:
        text = "\n".join(notes) + "\n"
        for p, d in suites:
            text += "\n" + suite_report.markdown(d, p.name)
        if techniques:
            text += "\nAdvanced techniques (`python -m benchmarks.techniques`):\n\n" + suite_report.techniques_markdown(techniques)
        if rows:
            text += "\n" + markdown(rows)
        text += _accuracy_markdown(accuracy_tables(results))
        atomic_write_bytes(md, text.encode())
    return {"rows": rows, "notes": notes, "suites": [p.name for p, _ in suites]}
