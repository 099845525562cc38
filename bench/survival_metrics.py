"""Benchmark: survival metrics (Harrell's and Uno's C, td AUC, IBS) at registry scale.

Times the point estimate (``survival_metrics``) and a 200-resample bootstrap (``bootstrap_all``) on synthetic
Cox data with tied times and censoring, at 10,000 and 100,000 patients. Each measurement runs in a fresh
interpreter, so its peak resident memory is its own; ``import_peak_rss_mib`` is the interpreter with clinfuse
imported and nothing computed, and ``traced_peak_mib`` the peak of the arrays the metrics allocate
(``tracemalloc``). Target: a point estimate under 10 s at 100,000 patients on 2 cores. Not part of
``make bench`` or the tests (it takes about a minute).

Run: ``python bench/survival_metrics.py [--patients 10000 100000] [--boot 200] [--sksurv]`` (prints JSON);
``--sksurv`` also times scikit-survival's point estimate on the same data for reference.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from common import run_in_child


def _cohort(patients: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cox data: exponential times from the true risk, rounded to days (ties), ~40% censored."""
    rng = np.random.default_rng(seed)
    true_risk = rng.normal(size=patients)
    time_ = np.ceil(rng.exponential(365.0 * np.exp(-true_risk)))
    event = rng.random(patients) < 0.6
    last = np.argmax(time_)
    event[last], time_[last] = True, time_[last] + 1  # a positive censoring survival, as scikit-survival needs
    return time_, event, true_risk + rng.normal(scale=0.7, size=patients)


def _measure(job: str, patients: int, boot: int, seed: int) -> dict[str, Any]:
    """Child side: run one job and report its seconds and traced peak."""
    import tracemalloc

    from clinfuse.training.metrics import bootstrap_all, survival_metrics

    time_, event, risk = _cohort(patients, seed)
    tracemalloc.start()
    start = time.perf_counter()
    if job == "point":
        result = survival_metrics(time_, event, risk)
    elif job == "bootstrap":
        result = {k: list(v) for k, v in bootstrap_all(event, risk, None, "survival", boot, time=time_).items()}
    else:
        result = _sksurv_point(time_, event, risk)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": seconds, "traced_peak_mib": peak / 2**20, "result": result}


def _sksurv_point(time_: np.ndarray, event: np.ndarray, risk: np.ndarray) -> dict[str, float]:
    """scikit-survival's C-index, Uno's C and td AUC at the median follow-up (the reference)."""
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw, cumulative_dynamic_auc

    horizon = float(np.median(time_))
    y = np.array(list(zip(event, time_, strict=True)), dtype=[("event", bool), ("time", float)])
    return {
        "c_index": concordance_index_censored(event, time_, risk)[0],
        "uno_c": concordance_index_ipcw(y, y, risk, tau=horizon)[0],
        "td_auc": float(cumulative_dynamic_auc(y, y, risk, [horizon])[0][0]),
    }


def _imports_only() -> dict[str, Any]:
    """Child side: the interpreter's footprint after importing the metrics (the fixed cost)."""
    from clinfuse.training.metrics import bootstrap_all  # noqa: F401  (the import is the measured work)

    return {}


def benchmark_survival_metrics(
    patients: tuple[int, ...] = (10_000, 100_000), boot: int = 200, seed: int = 0, sksurv: bool = False
) -> dict[str, Any]:
    """Seconds and peak memory of the survival point estimate and bootstrap at each cohort size.

    Args:
        patients: cohort sizes.
        boot: bootstrap resamples.
        seed: seeds the synthetic cohort.
        sksurv: also time scikit-survival's point estimate (C-index, Uno's C, td AUC; no IBS).
    """
    figures: dict[str, Any] = {"import_peak_rss_mib": run_in_child("survival_metrics", "_imports_only")["peak_rss_mib"]}
    jobs = ["point", "bootstrap"] + (["sksurv_point"] if sksurv else [])
    for n in patients:
        for job in jobs:
            child = run_in_child(
                "survival_metrics", "_measure", timeout=3600, job=job, patients=n, boot=boot, seed=seed
            )
            figures[f"{job}_{n}"] = {
                "seconds": round(child["seconds"], 3),
                "peak_rss_mib": round(child["peak_rss_mib"], 1),
                "traced_peak_mib": round(child["traced_peak_mib"], 1),
                "result": child["result"],
            }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sksurv", action="store_true", help="also time scikit-survival's point estimate")
    args = parser.parse_args()
    print(json.dumps(benchmark_survival_metrics(tuple(args.patients), args.boot, args.seed, args.sksurv), indent=2))


if __name__ == "__main__":
    main()
