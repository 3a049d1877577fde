"""``device bench``: interpreter-only timing in the manner of LiteRT's ``benchmark_model``.

Init time, first inference, warm-up runs, then N timed runs; memory after init and peak.  The
input is a real MNIST-like digit when one is given (a blank image otherwise), so the figures
are those of real data flowing through the quantized graph.
"""

from __future__ import annotations

import time

import numpy as np

from device.schema import BenchResult
from device.stats import Stat
from device.runtime import Model
from device.system import machine_info, memory_kb


def run_bench(model_path, threads: int = 1, xnnpack: bool = True, runs: int = 1000,
              warmup: int = 50, image: np.ndarray | None = None, runtime: str | None = None) -> BenchResult:
    mem_before = memory_kb()
    model = Model(model_path, threads=threads, xnnpack=xnnpack, runtime=runtime)
    mem_init = memory_kb()
    x = image if image is not None else np.zeros((28, 28), np.float32)
    model.set_input(x)
    t0 = time.perf_counter_ns()
    model.invoke()
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    for _ in range(warmup):
        model.invoke()
    stat = Stat()
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        model.invoke()
        stat.add(time.perf_counter_ns() - t0)
    mem_end = memory_kb()
    return BenchResult(
        machine=machine_info(), model=model.describe(), runs=runs, warmup_runs=warmup,
        stages={"inference": stat.to_dict()},
        memory={"rss_before_init_kb": mem_before["rss_kb"], "rss_after_init_kb": mem_init["rss_kb"],
                "init_footprint_kb": (mem_init["rss_kb"] or 0) - (mem_before["rss_kb"] or 0),
                "peak_rss_kb": mem_end["peak_rss_kb"], "rss_end_kb": mem_end["rss_kb"]},
        timing={**model.timing(), "first_inference_ms": first_ms})


def interleaved_p50(paths: dict, repeats: int = 15, runs: int = 2000, threads: int = 1,
                    warmup: int = 200) -> dict[str, list[float]]:
    """Median invoke time (ms) of each model per repeat, the models taking turns, so machine
    noise hits all of them alike; compare them as ratios within a repeat."""
    models = {k: Model(p, threads=threads, verify=False) for k, p in paths.items()}
    x = np.zeros((28, 28), np.float32)
    x[6:22, 12:16] = 1.0  # a "1": real data through the graph, not only zeros
    for m in models.values():
        m.set_input(x)
        for _ in range(warmup):
            m.invoke()
    per: dict[str, list[float]] = {k: [] for k in models}
    t = np.empty(runs, np.int64)
    for _ in range(repeats):
        for k, m in models.items():
            for i in range(runs):
                t0 = time.perf_counter_ns()
                m.invoke()
                t[i] = time.perf_counter_ns() - t0
            per[k].append(float(np.median(t)) / 1e6)
    return per


def ratio_spread(num: list[float], den: list[float]) -> dict:
    """min / median / max of num[i] / den[i] over repeats."""
    r = [a / b for a, b in zip(num, den)]
    return {"min": min(r), "median": float(np.median(r)), "max": max(r), "per_repeat": r}
