"""What the report says, as data: tables (a header and rows of cell text) and sentences,
computed from the loaded files only.  :mod:`host.report.page` renders the same tables as HTML
and as Markdown, so the two can never disagree."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from host.report.load import DeviceResult

CONFIGS = [f"t{t}-{x}" for x in ("xnn", "noxnn") for t in (1, 2, 4)]
HEADLINE_CFG = "t1-xnn"


@dataclass
class Table:
    head: list[str]
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""


def describe_machine(m: dict) -> str:
    """Board or CPU, architecture, host name; flagged when the figures come from emulation."""
    from device.system import emulated

    m = m if isinstance(m, dict) else {}
    board = m.get("board") or m.get("cpu") or "unknown machine"
    arch = str(m.get("arch") or "?")
    emu = ", EMULATED: timings meaningless" if m.get("emulated") or emulated(arch, m.get("cpu")) else ""
    return f"{board} ({arch}, {m.get('hostname', '?')}{emu})"


def _num(v, fmt: str, none: str = "-") -> str:
    return none if v is None else format(v, fmt)


def _pct(v, digits: int = 2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f} %"


# -- device result files ----------------------------------------------------------------------
def device_table(results: list[DeviceResult]) -> Table:
    t = Table(["file", "machine", "kind", "status", "model", "threads", "XNNPACK", "p50 ms", "p99 ms",
               "within budget", "fps", "peak RSS MB"])
    for r in results:
        st = r.stages.get(r.headline)
        m = r.model
        xnn = {True: "on", False: "off"}.get(m["xnnpack"], "?")
        t.rows.append([r.name, describe_machine(r.machine), f"{r.kind} ({r.headline})", r.status,
                       f"{m['arch'] or '?'} {(m['sha256'] or '')[:12]}".strip(), _num(m["threads"], "d", "?"),
                       xnn, _num(st and st.p50, ".3f"), _num(st and st.p99, ".3f"),
                       _pct(r.within_budget, 1), _num(r.fps, ".0f"), _num(r.peak_rss_mb, ".1f")])
    return t


def accuracy_tables(results: list[DeviceResult]) -> list[Table]:
    """For each run scored against labels (``device run --labels``): its confusion matrix,
    label classes down, read classes across, each class's accuracy at the end of its row."""
    out = []
    for r in results:
        acc = r.accuracy
        if not acc:
            continue
        what = "numbers read exactly" if acc.get("read") == "number" else "frames right"
        caption = f"{r.name}: {_pct(acc.get('accuracy'), 1)} {what} ({acc.get('correct')}/{acc['frames']} " \
                  "labelled frames"
        if acc.get("per_digit") is not None:
            caption += f"; per digit {_pct(acc['per_digit'], 1)}"
        caption += f") against {Path(str(acc.get('labels'))).name}"
        classes = [str(c) for c in acc["classes"]]
        t = Table(["label \\ read", *classes, "right"], caption=caption)
        for i, name in enumerate(classes):
            row = acc["confusion"][i]
            if sum(row):
                t.rows.append([name, *("" if v == 0 else str(v) for v in row), _pct(row[i] / sum(row), 1)])
        out.append(t)
    return out


def device_notes(results: list[DeviceResult]) -> list[str]:
    out = []
    for r in results:
        if not r.frames or not any(s.count for s in r.stages.values()):
            why = f"status {r.status}" + (f": {r.error}" if r.error else "")
            out.append(f"{r.name} recorded no frames ({why}): nothing to time or plot.")
    return out


# -- benchmark suite summaries ----------------------------------------------------------------
def suite_intro(d: dict, name: str) -> str:
    quick = "Quick (CI) run: tiny training budgets, not the committed figures. " if d.get("quick") else ""
    return (f"{quick}Suite {name} on {describe_machine(d['machine'])} ({'quick' if d.get('quick') else 'full'} "
            f"run, {d.get('created', '?')}): bench grid repeated {d.get('repeats')}x in shuffled order, "
            f"{d.get('runs_per_bench')} runs per bench, ratios taken within each repeat. Inference: "
            "`device bench`; end-to-end: `device run` on the suite's 640x480 replay clip, one thread.")


def headline_table(d: dict) -> Table:
    ref = d.get("reference", "seed-int8")
    t = Table(["variant", "MNIST test (10,000)", "real photos (100)", "clip per-frame", "bytes (gzip -9)",
               "inference p50, 1 thread (min-max)", f"speed vs {ref} (min-max)",
               "end-to-end p50 / p99 (budget)", "peak RSS"])
    for name, v in d["variants"].items():
        b = v.get("bench", {}).get(HEADLINE_CFG)
        sp = v.get("speedup_vs_" + ref.replace("-", "_"), {}).get(HEADLINE_CFG)
        clip = v.get("clip") or {}
        total = clip.get("stages_ms", {}).get("total")
        photos = (v.get("photos") or {}).get("accuracy")
        shipped = " (shipped)" if name == d.get("shipped_variant") and "shipped" not in name else ""
        t.rows.append([
            name + shipped, _pct(v.get("mnist_accuracy")), _pct(photos, 0), _pct(clip.get("accuracy_per_frame")),
            f"{v['bytes']:,}" + (f" ({v['gzip_bytes']:,})" if v.get("gzip_bytes") else ""),
            "-" if not b else f"{b['p50_ms']:.4f} ms ({b['p50_ms_min']:.4f}-{b['p50_ms_max']:.4f})",
            "1.00x (reference)" if name == ref else "-" if not sp else
            f"{sp['median']:.2f}x ({sp['min']:.2f}-{sp['max']:.2f})",
            "-" if not total else f"{total['p50']:.3f} / {total['p99']:.3f} ms ({clip['budget_ms']:g} ms)",
            _num(clip.get("peak_rss_mb"), ".1f") + (" MB" if clip.get("peak_rss_mb") is not None else "")])
    return t


def grid_table(d: dict) -> Table:
    t = Table(["variant", *CONFIGS], caption="Inference p50 (ms, median over repeats) by threads (t1, t2, t4) "
              "and XNNPACK (xnn: on, noxnn: off):")
    for name, v in d["variants"].items():
        b = v.get("bench", {})
        t.rows.append([name] + [f"{b[c]['p50_ms']:.4f}" if c in b else "-" for c in CONFIGS])
    return t


def findings(d: dict) -> list[str]:
    """Plain statements the data supports, for the reader who will not study the plots."""
    out = []
    cpus = d["machine"].get("cpus")
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


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (lower x, higher y), by x."""
    front = []
    for i, (xi, yi) in enumerate(points):
        if not any((xj <= xi and yj >= yi) and (xj < xi or yj > yi) for j, (xj, yj) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


# -- the advanced techniques (host distill / prune-channels / export-onnx) ---------------------
def _teacher(t: dict) -> str:
    if t.get("arch"):
        return t["arch"]
    p = Path(t.get("path", "?"))
    return f"from {p.parent.name}/{p.name}"


def technique_row(d: dict, name: str) -> list[str]:
    """technique, setting, what it measured, machine, file.  KeyError / TypeError when a field
    the line needs is missing."""
    kind = d.get("kind")
    if kind == "distill":
        t, s = d["teacher"], d["students"]
        title = "knowledge distillation"
        setting = (f"teacher {_teacher(t)}, {t['params']:,} params ({100 * t['keras_accuracy']:.2f} %), "
                   f"T={d['temperature']:g}, alpha={d['alpha']:g}, {d['epochs']} epochs on "
                   f"{d.get('limit') or 'all'} images")
        result = (f"edge student INT8: labels only {100 * s['plain']['int8_accuracy']:.2f} %, distilled "
                  f"{100 * s['distilled']['int8_accuracy']:.2f} % ({100 * d['gain_int8']:+.2f} points)")
    elif kind == "prune_channels":
        b, a = d["before"], d["after"]
        lat = d["latency_ms_single_thread"]
        sp = lat["speedup"]
        title = "channel pruning"
        setting = (f"{d['criterion']}, keep {d['keep']:.0%}: widths {d['widths_before']} -> {d['widths_after']}, "
                   f"{d['finetune_epochs']} fine-tuning epochs")
        result = (f"MACs {b['macs'] / 1e6:.2f}M -> {a['macs'] / 1e6:.2f}M, INT8 {b['bytes']:,} -> {a['bytes']:,} B, "
                  f"p50 {lat['before']:.4f} -> {lat['after']:.4f} ms ({sp['median']:.2f}x, {sp['min']:.2f}-"
                  f"{sp['max']:.2f}), INT8 accuracy {100 * b['int8_accuracy']:.2f} -> {100 * a['int8_accuracy']:.2f} %")
    elif kind == "export_onnx":
        lo, lt = d["latency_ms"]["onnxruntime"], d["latency_ms"]["tflite_float32"]
        title = "ONNX export"
        setting = f"tf2onnx {d['runtimes'].get('tf2onnx')}, opset {d['opset']}, {d['threads']} thread(s)"
        result = (f"same prediction as TFLite float32 on {100 * d['agreement']:.2f} % of {d['images']:,} images; "
                  f"accuracy {100 * d['accuracy']['onnx']:.2f} %; p50 onnxruntime {lo['p50']:.4f} ms vs "
                  f"TFLite float32 {lt['p50']:.4f} ms")
    elif kind == "finetune":
        b, a, pool = d["before"], d["after"], d["pool"]
        title = "fine-tuning on collected samples"
        setting = (f"{d['base']['kind']} base, {pool['collected_samples']} samples x {pool['copies']} + "
                   f"{pool['mnist_images']:,} MNIST ({pool['collected_share']:.0%} collected), "
                   f"{d['epochs']} epochs at lr {d['lr']:g}")
        result = f"MNIST INT8 {100 * b['mnist_int8']:.2f} -> {100 * a['mnist_int8']:.2f} %"
        if b["heldout"]:
            result += (f"; held-out samples {b['heldout']['correct']}/{b['heldout']['samples']} -> "
                       f"{a['heldout']['correct']}/{a['heldout']['samples']}")
    else:
        raise KeyError(f"kind {kind!r}")
    return [title, setting, result, describe_machine(d.get("machine")), name]


def techniques_table() -> Table:
    return Table(["technique", "setting", "measured", "machine", "file"],
                 caption="Measured by python -m benchmarks.techniques, each with the host CLI:")
