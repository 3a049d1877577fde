"""``host report``: device result files (``device run`` / ``device bench``, from this machine or
copied back from a Pi by ``deploy.sh --bench``), benchmark suite summaries
(``benchmarks/suite.py``) and the advanced techniques' results, rendered into one
self-contained HTML page and a Markdown summary of the same tables.

Every figure comes from the files; the page names the machine behind each one and says so
when no Raspberry Pi result is among them.  What cannot be reported (an unreadable file, a
malformed field) is named in one line, and the rest is still rendered.

The parts: :mod:`.load` (the files), :mod:`.tables` (what the report says, as data),
:mod:`.fleet` (``--fleet``: a row per Pi of a fleet rollout),
:mod:`.plots` (figures), :mod:`.compare` (``--baseline``), :mod:`.page` (HTML / Markdown).
No TensorFlow anywhere here.
"""

from __future__ import annotations

from pathlib import Path

from device.errors import UsageError
from device.fsio import atomic_write_bytes
from host.report import compare, load, plots, tables
from host.report import fleet as fleet_report
from host.report.page import Section, html_page, markdown

TITLE = "mnist-edge benchmark report"


def _guarded(name: str, problems: list[str], build):
    """``build()``, or None and one problem line when the file lacks what it needs."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as exc:
        problems.append(f"{name}: cannot render it ({type(exc).__name__}: {exc}); re-run the job that wrote it")
        return None


def _suite_section(doc: load.Doc, problems: list[str], draw: bool) -> Section | None:
    d = doc.data
    s = _guarded(doc.name, problems, lambda: Section(
        f"Model variants: {doc.name} on {tables.describe_machine(d['machine'])}",
        text=[tables.suite_intro(d, doc.name)], tables=[tables.headline_table(d), tables.grid_table(d)],
        notes=tables.findings(d)))
    if s and draw:
        s.figures = [_guarded(doc.name, problems, lambda plot=plot: plot(d)) for plot in plots.SUITE_PLOTS]
    return s


def _baseline_notes(path: str, suites, results, tolerance: float) -> list[str]:
    found: list[str] = []
    base = load.load_one(path, found)
    if found:
        raise UsageError(f"--baseline {found[0]}")
    if base.kind == "suite":
        lines = [line for doc in suites for line in compare.compare_suites(doc.data, doc.name, base.data, tolerance)]
    elif base.kind in ("run", "bench"):
        lines = compare.compare_results(results, base.data, tolerance)
    else:
        raise UsageError(f"--baseline {path}: give a device result or a suite file")
    return lines or [f"No regression beyond {tolerance:.0%} against {Path(path).name}."]


def build_report(paths: list[str], out: str | None, md: str | None, baseline: str | None,
                 tolerance: float = 0.10, fleet: str | None = None) -> dict:
    """Load the result files (and with ``fleet``, a fleet rollout's folder: reports/fleet) and
    write the HTML (and Markdown).  Returns the notes, the problems (one line each) and the
    device table's rows.  UsageError when nothing can be reported at all."""
    if not paths and not fleet:
        raise UsageError("give at least one result JSON (from device run / device bench / benchmarks.suite) "
                         "or --fleet reports/fleet")
    docs, problems = load.load(paths)
    if paths and not docs:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise UsageError(problems[0].removesuffix("; skipped") + more)
    suites = [d for d in docs if d.kind == "suite"]
    results = [d.data for d in docs if d.kind in ("run", "bench")]
    technique_rows = [row for d in docs if d.kind in load.TECHNIQUE_KINDS
                      for row in [_guarded(d.name, problems, lambda d=d: tables.technique_row(d.data, d.name))]
                      if row]

    machines = sorted({tables.describe_machine(r.machine) for r in results}
                      | {tables.describe_machine(d.data["machine"]) for d in suites}
                      | {row[3] for row in technique_rows})
    notes = [f"Machines: {'; '.join(machines)}."] if machines else []
    machine_dicts = [r.machine for r in results] + [d.data["machine"] for d in suites]
    if docs and not any(m.get("is_raspberry_pi") for m in machine_dicts):
        notes.append("No Raspberry Pi result is in this report: every figure here was measured "
                     "on the machines named above, not on a Pi.")
    if baseline:
        notes += _baseline_notes(baseline, suites, results, tolerance)

    sections = [s for s in (_suite_section(d, problems, draw=bool(out)) for d in suites) if s]
    if fleet:
        f = fleet_report.load_fleet(fleet, problems)
        notes += fleet_report.fleet_notes(f)
        sections.insert(0, Section("Fleet", tables=[fleet_report.fleet_table(f)]))
    if technique_rows:
        t = tables.techniques_table()
        t.rows = technique_rows
        sections.append(Section("Advanced techniques", tables=[t]))
    device_table = tables.device_table(results)
    if results:
        sections.append(Section("Device result files", tables=[device_table],
                                notes=tables.device_notes(results),
                                figures=[plots.stages_plot(results)] + [plots.latency_plot(r) for r in results]
                                if out else []))
    scored = tables.accuracy_tables(results)
    if scored:
        sections.append(Section("Accuracy against labels", tables=scored))
    if out:
        atomic_write_bytes(out, html_page(TITLE, notes, problems, sections).encode())
    if md:
        atomic_write_bytes(md, markdown(TITLE, notes, problems, sections).encode())
    return {"notes": notes, "problems": problems, "rows": device_table.rows}
