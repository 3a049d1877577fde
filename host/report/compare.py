"""``host report --baseline``: what got slower (or less accurate) than an older result."""

from __future__ import annotations

from host.report.load import DeviceResult


def compare_results(results: list[DeviceResult], baseline: DeviceResult, tolerance: float) -> list[str]:
    """Lines naming every stage percentile that got slower than the baseline by more than
    ``tolerance`` (a fraction)."""
    out = []
    for r in results:
        for stage, st in r.stages.items():
            base = baseline.stages.get(stage)
            if not base or not st.count or not base.count:
                continue
            for q in ("p50", "p99"):
                new, old = getattr(st, q), getattr(base, q)
                if new is not None and old and new > old * (1 + tolerance):
                    out.append(f"REGRESSION {r.name} {stage} {q}: {new:.3f} ms vs baseline {old:.3f} ms "
                               f"(+{new / old - 1:.0%}, tolerance {tolerance:.0%})")
    return out


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
