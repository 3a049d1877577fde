"""The benchmark suite's part of ``host report``: a suite summary (``benchmarks/suite.py``,
``kind: "suite"``) rendered as the headline table, latency by variant x threads x XNNPACK,
the accuracy / size / latency (Pareto) view, the shipped model's confusion matrix and the
memory figures.  Every number comes from the summary file; the machine is named on each plot.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from device.errors import UsageError

CONFIGS = [f"t{t}-{x}" for x in ("xnn", "noxnn") for t in (1, 2, 4)]
HEADLINE_CFG = "t1-xnn"


def check_suite(d: dict, name: str) -> dict:
    if d.get("schema_version") != 1:
        raise UsageError(f"{name}: suite schema_version {d.get('schema_version')} is not supported "
                         "(this version reads 1); re-run python -m benchmarks.suite")
    if not isinstance(d.get("variants"), dict) or not d["variants"]:
        raise UsageError(f"{name}: suite file has no variants; re-run python -m benchmarks.suite")
    return d


def describe_machine(m: dict) -> str:
    """Board or CPU, architecture, host name; flagged when the figures come from emulation."""
    from device.system import emulated

    board = m.get("board") or m.get("cpu") or "unknown machine"
    emu = ", EMULATED: timings meaningless" if m.get("emulated") or emulated(m.get("arch", ""), m.get("cpu")) else ""
    return f"{board} ({m.get('arch', '?')}, {m.get('hostname', '?')}{emu})"


def machine_name(d: dict) -> str:
    return describe_machine(d.get("machine", {}))


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def headline_rows(d: dict) -> list[dict]:
    ref = d.get("reference", "seed-int8")
    rows = []
    for name, v in d["variants"].items():
        b = v.get("bench", {}).get(HEADLINE_CFG, {})
        sp = v.get("speedup_vs_" + ref.replace("-", "_"), {}).get(HEADLINE_CFG, {})
        clip = v.get("clip", {})
        total = clip.get("stages_ms", {}).get("total", {})
        rows.append({
            "variant": name, "shipped": name == d.get("shipped_variant"),
            "mnist": v.get("mnist_accuracy"), "photos": (v.get("photos") or {}).get("accuracy"),
            "clip": clip.get("accuracy_per_frame"), "bytes": v.get("bytes"), "gzip_bytes": v.get("gzip_bytes"),
            "macs": v.get("macs"),
            "p50": b.get("p50_ms"), "p50_min": b.get("p50_ms_min"), "p50_max": b.get("p50_ms_max"),
            "speedup": sp.get("median"), "speedup_min": sp.get("min"), "speedup_max": sp.get("max"),
            "e2e_p50": total.get("p50"), "e2e_p99": total.get("p99"),
            "within_budget": clip.get("within_budget"), "budget_ms": clip.get("budget_ms"),
            "peak_rss_mb": clip.get("peak_rss_mb"),
        })
    return rows


_HEAD = ["variant", "MNIST test (10,000)", "real photos (100)", "clip per-frame", "bytes (gzip -9)",
         "inference p50, 1 thread (min-max)", "speed vs seed INT8 (min-max)",
         "end-to-end p50 / p99 (budget)", "peak RSS"]


def _cells(r: dict, ref: str) -> list[str]:
    speed = "-" if r["speedup"] is None else (
        f"{r['speedup']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})")
    lat = "-" if r["p50"] is None else f"{r['p50']:.4f} ms ({r['p50_min']:.4f}-{r['p50_max']:.4f})"
    e2e = "-" if r["e2e_p50"] is None else (
        f"{r['e2e_p50']:.3f} / {r['e2e_p99']:.3f} ms ({r['budget_ms']:g} ms)")
    return [r["variant"] + (" (shipped)" if r["shipped"] and "shipped" not in r["variant"] else ""), _pct(r["mnist"]),
            "-" if r["photos"] is None else f"{100 * r['photos']:.0f} %", _pct(r["clip"]),
            f"{r['bytes']:,}" + (f" ({r['gzip_bytes']:,})" if r.get("gzip_bytes") else ""), lat, "1.00x (reference)" if r["variant"] == ref else speed, e2e,
            "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.1f} MB"]


def compare_suites(d: dict, name: str, base: dict, tolerance: float) -> list[str]:
    """Lines naming every variant x setting whose inference p50 got slower than the baseline
    suite's by more than ``tolerance``, and every accuracy that dropped."""
    out = []
    for v, s in d["variants"].items():
        old = base["variants"].get(v)
        if not old:
            continue
        for cfg, b in s.get("bench", {}).items():
            ob = old.get("bench", {}).get(cfg)
            if ob and b["p50_ms"] > ob["p50_ms"] * (1 + tolerance):
                out.append(f"REGRESSION {name} {v} {cfg} inference p50: {b['p50_ms']:.4f} ms vs baseline "
                           f"{ob['p50_ms']:.4f} ms (+{b['p50_ms'] / ob['p50_ms'] - 1:.0%}, tolerance {tolerance:.0%})")
        if s["mnist_accuracy"] < old["mnist_accuracy"]:
            out.append(f"REGRESSION {name} {v} MNIST accuracy: {100 * s['mnist_accuracy']:.2f} % vs baseline "
                       f"{100 * old['mnist_accuracy']:.2f} %")
    return out


def findings(d: dict) -> list[str]:
    """Plain statements the data supports, for the reader who will not study the plots."""
    out = []
    cpus = d.get("machine", {}).get("cpus")
    worst = [(v, s["bench"]["t4-noxnn"]["p50_ms"], s["bench"]["t1-noxnn"]["p50_ms"])
             for v, s in d["variants"].items() if "t4-noxnn" in s.get("bench", {}) and "t1-noxnn" in s["bench"]]
    if cpus and cpus < 4 and worst:
        v, t4, t1 = max(worst, key=lambda w: w[1] / w[2])
        out.append(f"This machine has {cpus} cores, so the 4-thread rows oversubscribe it; without XNNPACK the "
                   f"built-in kernels then slow down by up to {t4 / t1:.0f}x ({v}: {t4:.3f} ms at 4 threads vs "
                   f"{t1:.3f} ms at 1). On a device, use at most as many threads as free cores.")
    out.append("Latency percentiles come from a log-spaced histogram with 1 % bins, so close variants "
               "can show identical values.")
    return out


def markdown(d: dict, name: str) -> str:
    ref = d.get("reference", "seed-int8")
    lines = [f"Suite `{name}` on **{machine_name(d)}** ({'quick' if d.get('quick') else 'full'} run, "
             f"{d.get('created', '?')}; bench grid repeated {d.get('repeats')}x, "
             f"{d.get('runs_per_bench')} runs each). Inference: `device bench`, XNNPACK on; "
             "end-to-end: `device run` on the suite's 640x480 replay clip, one thread.", "",
             "| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    for r in headline_rows(d):
        lines.append("| " + " | ".join(_cells(r, ref)) + " |")
    lines += ["", "Inference p50 (ms, median over repeats) by threads and XNNPACK:", "",
              "| variant | " + " | ".join(CONFIGS) + " |", "|---|" + "---|" * len(CONFIGS)]
    for v, s in d["variants"].items():
        b = s.get("bench", {})
        lines.append(f"| {v} | " + " | ".join(f"{b[c]['p50_ms']:.4f}" if c in b else "-" for c in CONFIGS) + " |")
    lines += [""] + [f"- {f}" for f in findings(d)]
    return "\n".join(lines) + "\n"


def table_html(d: dict) -> str:
    ref = d.get("reference", "seed-int8")
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r, ref)) + "</tr>"
                   for r in headline_rows(d))
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in _HEAD) + "</tr>" + body
            + "</table>")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_grid_plot(d: dict, svg) -> str:
    """Inference p50 per variant for each threads x XNNPACK setting; bars are the median over
    repeats, whiskers the min-max."""
    plt = _plt()
    variants = list(d["variants"])
    fig, ax = plt.subplots(figsize=(11, 3.8))
    width = 0.8 / len(CONFIGS)
    x = np.arange(len(variants))
    for k, cfg in enumerate(CONFIGS):
        med, lo, hi = [], [], []
        for v in variants:
            b = d["variants"][v].get("bench", {}).get(cfg)
            med.append(b["p50_ms"] if b else np.nan)
            lo.append(max(0.0, b["p50_ms"] - b["p50_ms_min"]) if b else 0)
            hi.append(max(0.0, b["p50_ms_max"] - b["p50_ms"]) if b else 0)
        t, xnn = cfg.split("-")
        ax.bar(x + k * width, med, width, yerr=[lo, hi], capsize=1.5,
               color=f"C{int(t[1:]).bit_length() - 1}", alpha=1.0 if xnn == "xnn" else 0.45,
               hatch="" if xnn == "xnn" else "//", label=f"{t[1:]} thread{'s' if t != 't1' else ''}, "
               f"XNNPACK {'on' if xnn == 'xnn' else 'off'}")
    ax.set_xticks(x + 0.4 - width / 2, variants, rotation=20, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("inference p50 (ms)")
    ax.set_title(f"Latency by variant x threads x XNNPACK - {machine_name(d)} "
                 f"({d.get('machine', {}).get('cpus', '?')} cores)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return svg(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (lower x, higher y)."""
    front = []
    for i, (xi, yi) in enumerate(points):
        if not any((xj <= xi and yj >= yi) and (xj < xi or yj > yi) for j, (xj, yj) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(d: dict, svg) -> str:
    """MNIST accuracy against latency (left) and against size (right); marker area ~ size."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter, NullFormatter

    names = list(d["variants"])
    vs = [d["variants"][n] for n in names]
    acc = np.array([100 * v["mnist_accuracy"] for v in vs])
    size = np.array([v["bytes"] / 1024 for v in vs])
    lat = np.array([v.get("bench", {}).get(HEADLINE_CFG, {}).get("p50_ms", np.nan) for v in vs])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, xs, label in ((axes[0], lat, "inference p50, 1 thread, XNNPACK on (ms)"),
                          (axes[1], size, "model size (KiB)")):
        colors = ["#cc3311" if n.startswith("seed") else "#4477aa" for n in names]
        ax.scatter(xs, acc, s=20 + 180 * size / size.max(), c=colors, alpha=0.75, edgecolors="k",
                   linewidths=0.5)
        # Variants often sit on top of each other: fan the labels out around their points.
        for k, (n, xv, yv) in enumerate(zip(names, xs, acc)):
            dx, dy = ((6, 4), (6, -10), (-6, 4), (-6, -10))[k % 4]
            ax.annotate(n, (xv, yv), fontsize=6.5, xytext=(dx, dy), textcoords="offset points",
                        ha="left" if dx > 0 else "right")
        front = pareto_front(list(zip(xs.tolist(), acc.tolist())))
        ax.plot(xs[front], acc[front], color="#228833", linestyle="--", linewidth=1, label="Pareto front")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(label)
        ax.set_ylabel("MNIST test accuracy (%)")
        ax.legend(fontsize=7, loc="center right")
    fig.suptitle(f"Accuracy vs latency and size (red: seed CNN, blue: edge) - {machine_name(d)}", fontsize=9)
    return svg(fig)


def confusion_plot(d: dict, svg) -> str:
    """The shipped variant's confusion matrix on the 10,000 test images."""
    name = d.get("shipped_variant")
    v = d["variants"].get(name)
    if not v or not v.get("confusion_matrix"):
        return ""
    plt = _plt()
    cm = np.array(v["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    shown = np.log1p(cm)
    ax.imshow(shown, cmap="Blues")
    for i in range(10):
        for j in range(10):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > shown.max() * 0.6 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    match = " (device/models/model.tflite)" if name == "shipped-int8" else ""
    ax.set_title(f"{name}{match}: {v['mnist_correct']:,}/10,000 correct", fontsize=9)
    return svg(fig)


def memory_plot(d: dict, svg) -> str:
    """Peak RSS of `device run` per variant and the interpreter's init footprint."""
    plt = _plt()
    names = list(d["variants"])
    run_peak = [d["variants"][n].get("clip", {}).get("peak_rss_mb") or 0 for n in names]
    foot = [d["variants"][n].get("bench", {}).get(HEADLINE_CFG, {}).get("init_footprint_mb") or 0 for n in names]
    fig, ax = plt.subplots(figsize=(11, 3.2))
    x = np.arange(len(names))
    ax.bar(x - 0.2, run_peak, 0.4, label="device run: peak RSS of the process", color="#4477aa")
    ax.bar(x + 0.2, foot, 0.4, label="device bench: RSS added by loading the model", color="#ee7733")
    for xi, v in zip(x, run_peak):
        ax.text(xi - 0.2, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_ylabel("MB")
    ax.set_title(f"Memory - {machine_name(d)}", fontsize=9)
    ax.legend(fontsize=7)
    return svg(fig)


def sections(d: dict, name: str, svg) -> list[str]:
    """The HTML blocks for one suite file."""
    out = [f"<h2>Model variants: {html.escape(name)} on {html.escape(machine_name(d))}</h2>",
           f"<p>{'Quick (CI) run: tiny training budgets, not the committed figures. ' if d.get('quick') else ''}"
           f"Bench grid repeated {d.get('repeats')}x in shuffled order, {d.get('runs_per_bench')} runs per "
           "bench; ratios are taken within each repeat.</p>", table_html(d)]
    out += [f"<p class='note'>{html.escape(f)}</p>" for f in findings(d)]
    for plot in (latency_grid_plot, pareto_plot, confusion_plot, memory_plot):
        s = plot(d, svg)
        if s:
            out.append(f"<div>{s}</div>")
    return out


# -- the advanced techniques (host distill / prune-channels / export-onnx) ---------------------
TECHNIQUE_KINDS = ("distill", "prune_channels", "export_onnx")


def technique_row(d: dict, name: str) -> dict:
    """One report line: the technique, its setting and what it measured."""
    kind = d.get("kind")
    if kind == "distill":
        t, s = d["teacher"], d["students"]
        teacher = t.get("arch") or f"from {Path(t.get('path', '?')).parent.name}/{Path(t.get('path', '?')).name}"
        setting = (f"teacher {teacher}, {t['params']:,} params ({100 * t['keras_accuracy']:.2f} %), T={d['temperature']:g}, "
                   f"alpha={d['alpha']:g}, {d['epochs']} epochs on {d.get('limit') or 'all'} images")
        result = (f"edge student INT8: labels only {100 * s['plain']['int8_accuracy']:.2f} %, distilled "
                  f"{100 * s['distilled']['int8_accuracy']:.2f} % ({100 * d['gain_int8']:+.2f} points)")
        title = "knowledge distillation"
    elif kind == "prune_channels":
        b, a = d["before"], d["after"]
        lat = d["latency_ms_single_thread"]
        sp = lat["speedup"]
        setting = (f"{d['criterion']}, keep {d['keep']:.0%}: widths {d['widths_before']} -> {d['widths_after']}, "
                   f"{d['finetune_epochs']} fine-tuning epochs")
        result = (f"MACs {b['macs'] / 1e6:.2f}M -> {a['macs'] / 1e6:.2f}M, INT8 {b['bytes']:,} -> {a['bytes']:,} B, "
                  f"p50 {lat['before']:.4f} -> {lat['after']:.4f} ms ({sp['median']:.2f}x, {sp['min']:.2f}-"
                  f"{sp['max']:.2f}), INT8 accuracy {100 * b['int8_accuracy']:.2f} -> {100 * a['int8_accuracy']:.2f} %")
        title = "channel pruning"
    elif kind == "export_onnx":
        lo, lt = d["latency_ms"]["onnxruntime"], d["latency_ms"]["tflite_float32"]
        setting = f"tf2onnx {d['runtimes'].get('tf2onnx')}, opset {d['opset']}, {d['threads']} thread(s)"
        result = (f"same prediction as TFLite float32 on {100 * d['agreement']:.2f} % of {d['images']:,} images; "
                  f"accuracy {100 * d['accuracy']['onnx']:.2f} %; p50 onnxruntime {lo['p50']:.4f} ms vs "
                  f"TFLite float32 {lt['p50']:.4f} ms")
        title = "ONNX export"
    else:
        raise UsageError(f"{name}: unknown technique result kind {kind!r}")
    return {"file": name, "technique": title, "setting": setting, "result": result,
            "machine": machine_name(d)}


def techniques_markdown(rows: list[dict]) -> str:
    lines = ["| technique | setting | measured | machine |", "|---|---|---|---|"]
    def cell(v) -> str:
        return str(v).replace("|", "\\|")

    lines += ["| " + " | ".join(cell(r[k]) for k in ("technique", "setting", "result", "machine")) + " |"
              for r in rows]
    return "\n".join(lines) + "\n"


def techniques_html(rows: list[dict]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("technique", "setting", "measured", "machine", "file"))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[k]))}</td>" for k in
                                    ("technique", "setting", "result", "machine", "file")) + "</tr>" for r in rows)
    return f"<h2>Advanced techniques</h2><table><tr>{head}</tr>{body}</table>"
