"""The report as a page: the same sections rendered as one self-contained HTML file (inline
SVG, no external links) and as Markdown (text and tables, no figures).

Every string from a result file is escaped for its output: HTML-escaped in the page; in
Markdown, ``&`` and ``<`` become entities (no raw HTML gets through to a renderer),
backslashes and pipes are escaped and control characters (a newline) become spaces, so a
field cannot break out of its table cell or line.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from host.report.tables import Table

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1100px}"
         "table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 6px}"
         "caption{text-align:left;font-size:13px;padding:4px 0}"
         ".note{background:#fff4e0;padding:6px 10px;margin:4px 0}.problem{background:#fde4e1}")


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)       # paragraphs
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)      # findings, highlighted
    figures: list[str] = field(default_factory=list)    # SVG markup (HTML only)


def one_line(s) -> str:
    """``s`` with control characters (newlines, terminal escapes) as spaces: a field from a
    file cannot start a line of its own, in a table or on a terminal."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", str(s))


def md_text(s) -> str:
    """``s`` as Markdown text that renders as itself: no HTML, no table cell boundary, one line."""
    return one_line(str(s).replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|"))


def _md_table(t: Table) -> list[str]:
    lines = [md_text(t.caption), ""] if t.caption else []
    lines += ["| " + " | ".join(md_text(h) for h in t.head) + " |", "|" + "---|" * len(t.head)]
    lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in t.rows]
    return lines + [""]


def markdown(title: str, notes: list[str], problems: list[str], sections: list[Section]) -> str:
    lines = [f"# {md_text(title)}", ""]
    lines += [f"- {md_text(n)}" for n in notes] + [""]
    if problems:
        lines += ["Not reported:", ""] + [f"- {md_text(p)}" for p in problems] + [""]
    for s in sections:
        lines += [f"## {md_text(s.title)}", ""]
        for p in s.text:
            lines += [md_text(p), ""]
        for t in s.tables:
            lines += _md_table(t)
        if s.notes:
            lines += [f"- {md_text(n)}" for n in s.notes] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _html_table(t: Table) -> str:
    e = html.escape
    cap = f"<caption>{e(t.caption)}</caption>" if t.caption else ""
    head = "".join(f"<th>{e(h)}</th>" for h in t.head)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in t.rows)
    return f"<table>{cap}<tr>{head}</tr>{body}</table>"


def html_page(title: str, notes: list[str], problems: list[str], sections: list[Section]) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
           f"<style>{STYLE}</style></head><body>", f"<h1>{e(title)}</h1>"]
    out += [f"<p class='note'>{e(n)}</p>" for n in notes]
    out += [f"<p class='note problem'>Not reported: {e(p)}</p>" for p in problems]
    for s in sections:
        out.append(f"<h2>{e(s.title)}</h2>")
        out += [f"<p>{e(p)}</p>" for p in s.text]
        out += [_html_table(t) for t in s.tables]
        out += [f"<p class='note'>{e(n)}</p>" for n in s.notes]
        out += [f"<div>{fig}</div>" for fig in s.figures if fig]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
