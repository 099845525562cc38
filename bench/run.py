"""Run clinfuse's benchmarks, print a table and write ``bench/results.json`` (``make bench``).

Each sub-benchmark lives in its own module beside this file and returns a dict of figures; this script runs
them (all, or those named with ``--only``), checks each headline figure against its target and records the
device. ``--quick`` runs every benchmark at toy size (for smoke tests; its figures mean nothing).

Run: ``python bench/run.py --out bench/results.json [--only throughput shapley] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# As the clinfuse CLI does, before torch loads OpenMP (bench/contention.py measures why).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from accuracy import benchmark_accuracy  # noqa: E402
from cohort_check import benchmark_cohort_check  # noqa: E402
from common import device_name  # noqa: E402
from contention import benchmark_contention  # noqa: E402
from demo_comparison import benchmark_demo_comparison  # noqa: E402
from modality_shapley import benchmark_modality_shapley  # noqa: E402
from registry_scale import benchmark_registry_scale  # noqa: E402
from throughput import benchmark_throughput  # noqa: E402
from train_memory import benchmark_train_memory  # noqa: E402


@dataclass(frozen=True)
class Benchmark:
    """One sub-benchmark: its function, full and toy arguments, and the headline figure's target."""

    function: Callable[..., dict[str, Any]]
    full: dict[str, Any]
    quick: dict[str, Any]
    figure: str
    target: float | None
    higher_is_better: bool
    unit: str


BENCHMARKS: dict[str, Benchmark] = {
    "throughput": Benchmark(
        benchmark_throughput,
        {"patients": 96, "size": 24, "rounds": 7, "epochs": 3},
        {"patients": 16, "size": 8, "batch_size": 8, "rounds": 1, "epochs": 1},
        "throughput_ratio",
        0.85,
        True,
        "pipeline / compute bound",
    ),
    "shapley": Benchmark(
        benchmark_modality_shapley,
        {"n_patients": 10000, "n_reference": 30},
        {"n_patients": 64, "n_reference": 3},
        "batched_seconds",
        10.0,
        False,
        "s for 10,000 patients",
    ),
    "cohort_check": Benchmark(
        benchmark_cohort_check,
        {"patients": 1000, "size": 32},
        {"patients": 40, "size": 8},
        "check_patients_per_s",
        None,
        True,
        "patients/s",
    ),
    "train_memory": Benchmark(
        benchmark_train_memory,
        {"patients": 2000, "size": 24, "train_patients": 128},
        {"patients": 40, "size": 8, "train_patients": 16},
        "memory_cache_peak_gib",
        24.0,
        False,
        "GiB peak RSS",
    ),
    "accuracy": Benchmark(
        benchmark_accuracy,
        {"patients": 1000, "size": 16, "epochs": 20, "folds": 3},
        {"patients": 40, "size": 8, "epochs": 1, "folds": 2, "seeds": [0]},
        "auroc_share_of_bayes",
        0.92,
        True,
        "test AUROC / Bayes AUROC",
    ),
    "demo_comparison": Benchmark(
        benchmark_demo_comparison,
        {"patients": 800, "size": 24},
        {"patients": 40, "size": 8, "compare": [], "epochs": 1},
        "wall_seconds",
        600.0,
        False,
        "s for configs/demo.yaml's comparison, 800 patients 24³",
    ),
    "contention": Benchmark(
        benchmark_contention,
        {"steps": 60, "competitors": 1},
        {"steps": 2, "competitors": 0},
        "idle_cost_passive",
        1.5,
        False,
        "passive / default OpenMP wait policy step time on idle cores (shared: see shared_slowdown_default)",
    ),
    "registry_scale": Benchmark(
        benchmark_registry_scale,
        {"sizes": (10_000, 30_000, 100_000), "epochs": 3, "folds": 3, "genes": 2000, "clinical": 30},
        {"sizes": (150, 300), "epochs": 1, "folds": 2, "genes": 30, "clinical": 6, "max_explained": 8},
        "targets_missed",
        0,
        False,
        "of 4 targets (n log n, explain+report < train, < 8 GiB, metrics/Shapley < 10 s)",
    ),
}


def run_benchmarks(names: list[str], quick: bool = False) -> dict[str, Any]:
    """Run the named benchmarks and return the results document (figures, targets, pass/fail, device)."""
    results: dict[str, Any] = {
        "device": device_name(),
        "python": platform.python_version(),
        "quick": quick,
        "benchmarks": {},
    }
    for name in names:
        bench = BENCHMARKS[name]
        start = time.perf_counter()
        figures = bench.function(**(bench.quick if quick else bench.full))
        value = float(figures[bench.figure])
        passed = None
        if bench.target is not None:
            passed = value >= bench.target if bench.higher_is_better else value <= bench.target
        results["benchmarks"][name] = {
            "figure": bench.figure,
            "value": value,
            "target": bench.target,
            "target_is": "minimum" if bench.higher_is_better else "maximum",
            "unit": bench.unit,
            "passed": passed,
            "seconds": time.perf_counter() - start,
            "details": figures,
        }
        print(f"[bench] {name}: {bench.figure} = {value:.4g} ({time.perf_counter() - start:.0f} s)", flush=True)
    return results


def merge_results(earlier: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """``results`` plus the benchmarks of an earlier results document that were not run this time (a ``--only``
    run does not erase the others); quick and full figures are never mixed."""
    if earlier.get("quick") != results["quick"]:
        return results
    return {**results, "benchmarks": {**earlier.get("benchmarks", {}), **results["benchmarks"]}}


def render_table(results: dict[str, Any]) -> str:
    """The results as a fixed-width text table."""
    rows = [("benchmark", "figure", "value", "target", "pass", "unit", "time")]
    for name, r in results["benchmarks"].items():
        target = "-" if r["target"] is None else ("≥ " if r["target_is"] == "minimum" else "≤ ") + f"{r['target']:g}"
        verdict = {True: "yes", False: "NO", None: "-"}[r["passed"]]
        rows.append((name, r["figure"], f"{r['value']:.4g}", target, verdict, r["unit"], f"{r['seconds']:.0f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"device: {results['device']}\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.json")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="toy sizes (smoke test; figures mean nothing)")
    parser.add_argument(
        "--registry-sizes", type=int, nargs="+", help="patients of each registry_scale run (default 10^4 3·10^4 10^5)"
    )
    parser.add_argument(
        "--registry-no-classical",
        action="store_true",
        help="registry_scale runs skip the classical baselines (a default run fits them)",
    )
    args = parser.parse_args()
    earlier = json.loads(args.out.read_text()) if args.out.is_file() else {}
    BENCHMARKS["registry_scale"].full["classical"] = not args.registry_no_classical
    if args.registry_sizes:
        BENCHMARKS["registry_scale"].full["sizes"] = tuple(args.registry_sizes)
    if args.registry_sizes and not args.quick and not earlier.get("quick"):
        # Sizes measured in an earlier session (same settings) stay in the growth fit: 10^5 takes a session alone.
        registry = earlier.get("benchmarks", {}).get("registry_scale", {})
        BENCHMARKS["registry_scale"].full["previous"] = registry.get("details", {}).get("runs", [])
    results = merge_results(earlier, run_benchmarks(args.only, args.quick))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render_table(results))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
