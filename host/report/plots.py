"""The report's figures, as inline SVG made with matplotlib (headless: the Agg backend, chosen
here once for the whole project).  Each function takes loaded data and returns SVG markup, or
"" when there is nothing to draw."""

from __future__ import annotations

import io
import math

import numpy as np

from host.report.load import DeviceResult
from host.report.tables import CONFIGS, HEADLINE_CFG, describe_machine, pareto_front

BUDGETED = ("preprocess", "inference", "postprocess", "total")
BINS_PER_DECADE = 25   # display bins: the 1 % result bins would be hairlines


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    # Text stays text in the SVG (not one path per glyph): a page a fraction of the size that
    # renders several times faster, still self-contained.
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt

    return plt


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def plain(text) -> str:
    """Text from a result file, drawn as it is (a ``$`` would start matplotlib's math mode)."""
    return str(text).replace("$", r"\$")


def log_axis(ax, axis: str = "x") -> None:
    """Log scale labelled with plain numbers (0.05, 0.1, 0.2 ...): as many labels as fit along
    the axis without touching, so a value can be read off at any range.  Call after the data
    is drawn."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    lo, hi = (ax.get_xlim() if axis == "x" else ax.get_ylim())
    lo, hi = max(min(lo, hi), 1e-9), max(lo, hi, 2e-9)
    box = ax.get_position()
    length_in = box.width * ax.figure.get_figwidth() if axis == "x" else box.height * ax.figure.get_figheight()
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = []
    for subs, step in (((1, 2, 3, 5, 7), 1), ((1, 2, 5), 1), ((1, 3), 1), ((1,), 1), ((1,), 2), ((1,), 5)):
        ticks = [m * 10.0 ** k for k in decades if k % step == 0 for m in subs]
        ticks = [t for t in ticks if lo <= t <= hi]
        # Width of a 10-point tick label ~0.09 in per character plus a gap; a line ~0.3 in.
        need = sum(0.09 * len(f"{t:g}") + 0.2 for t in ticks) if axis == "x" else 0.3 * len(ticks)
        if need <= length_in:
            break
    which = ax.xaxis if axis == "x" else ax.yaxis
    which.set_major_locator(FixedLocator(ticks))
    which.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    which.set_minor_formatter(NullFormatter())


# -- device result files ----------------------------------------------------------------------
def _display_bins(hist: list[tuple[float, float, int]]):
    """(edges, counts) of the histogram merged into BINS_PER_DECADE log-spaced bins."""
    lo = np.array([max(a, b / 1.01) for a, b, _ in hist])   # bin 0 starts at 0: not on a log axis
    hi = np.array([b for _, b, _ in hist])
    counts = np.array([c for *_, c in hist], dtype=float)
    first, last = lo.min(), hi.max()
    n = max(8, math.ceil(math.log10(last / first) * BINS_PER_DECADE))
    edges = np.geomspace(first, last, n + 1)
    merged, _ = np.histogram(np.sqrt(lo * hi), bins=edges, weights=counts)
    return edges, merged


def latency_plot(r: DeviceResult) -> str:
    """Histogram and cumulative share of the headline stage, with the budget line."""
    st = r.stages.get(r.headline)
    if not st or not st.hist:
        return ""
    plt = pyplot()
    edges, counts = _display_bins(st.hist)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    a.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4477aa", edgecolor="#4477aa",
          linewidth=0.3)
    a.set_xlabel(f"{r.headline} per frame (ms)" if r.kind == "run" else "inference (ms)")
    a.set_ylabel("frames" if r.kind == "run" else "runs")
    a.set_title("distribution", fontsize=9)
    fine = np.array([c for *_, c in st.hist], dtype=float)
    b.step([hi for _, hi, _ in st.hist], np.cumsum(fine) / fine.sum(), where="post", color="#4477aa")
    b.set_ylim(0, 1.01)
    b.set_xlabel("ms")
    b.set_title("cumulative share", fontsize=9)
    for ax in (a, b):
        ax.set_xscale("log")
        if r.budget_ms:
            ax.axvline(r.budget_ms, color="#cc3311", linestyle="--", label=f"budget {r.budget_ms:g} ms")
        log_axis(ax)
    if r.budget_ms:
        b.legend(loc="lower right", fontsize=8)
    m = r.model
    fig.suptitle(plain(f"{r.name}: {r.kind} {m['arch'] or 'model'}, {m['dtype'] or '?'} input, "
                       f"{m['threads']}t {'xnnpack' if m['xnnpack'] else 'no-xnnpack'} on "
                       f"{describe_machine(r.machine)}"), fontsize=9, y=1.02)
    return svg(fig)


def _barh_p50_p99(ax, runs, stages, y, h, colors):
    for k, s in enumerate(stages):
        p50 = [getattr(r.stages.get(s), "p50", None) for r in runs]
        p99 = [getattr(r.stages.get(s), "p99", None) for r in runs]
        p50 = [np.nan if v is None else v for v in p50]
        p99 = [np.nan if v is None else v for v in p99]
        ax.barh(y + k * h, p99, height=h, color=colors[k], alpha=0.35)
        ax.barh(y + k * h, p50, height=h, color=colors[k], label=s)


def stages_plot(runs: list[DeviceResult]) -> str:
    """p50 and p99 of each stage, one group per run result.  The budgeted stages are drawn
    against the budget; the capture wait (the time until the next frame is available, which a
    camera's frame rate sets) on its own axis, without it."""
    runs = [r for r in runs if r.kind == "run" and r.stages.get("total") and r.stages["total"].count]
    if not runs:
        return ""
    plt = pyplot()
    capture = any(r.stages.get("capture") and r.stages["capture"].count for r in runs)
    fig, axes = plt.subplots(1, 2 if capture else 1, figsize=(11, 0.9 + 0.9 * len(runs)), squeeze=False,
                             sharey=True, gridspec_kw={"width_ratios": [3, 1] if capture else [1]})
    a = axes[0][0]
    y = np.arange(len(runs))
    h = 0.8 / len(BUDGETED)
    _barh_p50_p99(a, runs, BUDGETED, y, h, [f"C{k + 1}" for k in range(len(BUDGETED))])
    budgets = sorted({r.budget_ms for r in runs if r.budget_ms})
    for budget in budgets:
        a.axvline(budget, color="#cc3311", linestyle="--", label=f"budget {budget:g} ms")
    a.set_yticks(y + 0.4 - h / 2, [plain(f"{r.name}\n{describe_machine(r.machine)}") for r in runs], fontsize=7)
    a.set_xscale("log")
    log_axis(a)
    a.set_xlabel("ms per frame, counted against the budget (solid: p50, light: p99)")
    a.legend(fontsize=7, loc="lower right")
    if capture:
        c = axes[0][1]
        _barh_p50_p99(c, runs, ("capture",), y + 1.5 * h, 2 * h, ["#999999"])
        c.set_xlim(left=0)  # linear from 0: a log axis would hide how p50 and p99 compare
        c.set_xlabel("capture wait, ms\n(waiting for the next frame: not in the budget)", fontsize=8)
    return svg(fig)


# -- benchmark suite summaries ----------------------------------------------------------------
def latency_grid_plot(d: dict) -> str:
    """Inference p50 per variant for each threads x XNNPACK setting; bars are the median over
    repeats, whiskers the min-max."""
    plt = pyplot()
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
    ax.set_xticks(x + 0.4 - width / 2, [plain(v) for v in variants], rotation=20, fontsize=8)
    ax.set_yscale("log")
    log_axis(ax, "y")
    ax.set_ylabel("inference p50 (ms)")
    ax.set_title(plain(f"Latency by variant x threads x XNNPACK - {describe_machine(d['machine'])} "
                       f"({d['machine'].get('cpus', '?')} cores)"), fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return svg(fig)


def _place_labels(ax, names, xs, ys, fontsize=6.5):
    """Annotate each point beside it, at the first of a few offsets where the label does not
    cover one already placed (variants often sit on top of each other)."""
    fig = ax.figure
    fig.canvas.draw()
    to_px = ax.transData.transform
    per_pt = fig.dpi / 72
    placed = []
    offsets = [(6, 3), (6, -9), (-6, 3), (-6, -9), (6, 12), (6, -18), (-6, 12), (-6, -18), (6, 21), (-6, 21)]
    for name, xv, yv in sorted(zip(names, xs, ys), key=lambda p: (-p[2], p[1])):
        if not (np.isfinite(xv) and np.isfinite(yv)):
            continue
        px, py = to_px((xv, yv))
        w, h = 0.6 * fontsize * len(name) * per_pt, 1.2 * fontsize * per_pt
        for dx, dy in offsets:
            x0 = px + dx * per_pt - (w if dx < 0 else 0)
            y0 = py + dy * per_pt
            box = (x0, y0, x0 + w, y0 + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        ax.annotate(plain(name), (xv, yv), fontsize=fontsize, xytext=(dx, dy), textcoords="offset points",
                    ha="left" if dx > 0 else "right", va="bottom")


def pareto_plot(d: dict) -> str:
    """MNIST accuracy against latency (left) and against size (right); marker area ~ size."""
    plt = pyplot()
    names = list(d["variants"])
    vs = [d["variants"][n] for n in names]
    acc = np.array([100 * v["mnist_accuracy"] for v in vs])
    size = np.array([v["bytes"] / 1024 for v in vs])
    lat = np.array([v.get("bench", {}).get(HEADLINE_CFG, {}).get("p50_ms", np.nan) for v in vs])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, xs, label in ((axes[0], lat, "inference p50, 1 thread, XNNPACK on (ms)"),
                          (axes[1], size, "model size (KiB)")):
        colors = ["#cc3311" if n.startswith("seed") else "#4477aa" for n in names]
        ax.scatter(xs, acc, s=20 + 180 * size / size.max(), c=colors, alpha=0.75, edgecolors="k", linewidths=0.5)
        ok = np.isfinite(xs)
        idx = np.flatnonzero(ok)
        front = idx[pareto_front(list(zip(xs[ok].tolist(), acc[ok].tolist())))]
        ax.plot(xs[front], acc[front], color="#228833", linestyle="--", linewidth=1, marker="o",
                markerfacecolor="none", markersize=11, label="Pareto front")
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.08)
        log_axis(ax)
        ax.set_xlabel(label)
        ax.set_ylabel("MNIST test accuracy (%)")
        ax.legend(fontsize=7, loc="center right")
        _place_labels(ax, names, xs, acc)
    fig.suptitle(plain(f"Accuracy vs latency and size (red: seed CNN, blue: edge) - {describe_machine(d['machine'])}"),
                 fontsize=9)
    return svg(fig)


def confusion_plot(d: dict) -> str:
    """The shipped variant's confusion matrix on the 10,000 test images."""
    name = d.get("shipped_variant")
    v = d["variants"].get(name)
    if not v or not v.get("confusion_matrix"):
        return ""
    plt = pyplot()
    cm = np.array(v["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    shown = np.log1p(cm)
    ax.imshow(shown, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > shown.max() * 0.6 else "black")
    ax.set_xticks(range(cm.shape[1]))
    ax.set_yticks(range(cm.shape[0]))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    match = " (device/models/model.tflite)" if name == "shipped-int8" else ""
    ax.set_title(plain(f"{name}{match}: {v['mnist_correct']:,}/{int(cm.sum()):,} correct"), fontsize=9)
    return svg(fig)


def memory_plot(d: dict) -> str:
    """Peak RSS of `device run` per variant and the interpreter's init footprint."""
    plt = pyplot()
    names = list(d["variants"])
    run_peak = [d["variants"][n].get("clip", {}).get("peak_rss_mb") or 0 for n in names]
    foot = [d["variants"][n].get("bench", {}).get(HEADLINE_CFG, {}).get("init_footprint_mb") or 0 for n in names]
    fig, ax = plt.subplots(figsize=(11, 3.2))
    x = np.arange(len(names))
    ax.bar(x - 0.2, run_peak, 0.4, label="device run: peak RSS of the process", color="#4477aa")
    ax.bar(x + 0.2, foot, 0.4, label="device bench: RSS added by loading the model", color="#ee7733")
    for xi, v in zip(x, run_peak):
        ax.text(xi - 0.2, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [plain(n) for n in names], rotation=20, fontsize=8)
    ax.set_ylabel("MB")
    ax.set_title(plain(f"Memory - {describe_machine(d['machine'])}"), fontsize=9)
    ax.legend(fontsize=7)
    return svg(fig)


SUITE_PLOTS = (latency_grid_plot, pareto_plot, confusion_plot, memory_plot)
