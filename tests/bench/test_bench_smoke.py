"""Smoke test of the benchmarks: every sub-benchmark runs at toy size and reports its figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import run as bench_run  # noqa: E402


@pytest.mark.slow
def test_every_benchmark_runs_at_toy_size() -> None:
    results = bench_run.run_benchmarks(list(bench_run.BENCHMARKS), quick=True)
    assert set(results["benchmarks"]) == set(bench_run.BENCHMARKS)
    assert results["device"]
    for name, entry in results["benchmarks"].items():
        bench = bench_run.BENCHMARKS[name]
        assert entry["figure"] in entry["details"], name
        assert entry["value"] == pytest.approx(float(entry["details"][bench.figure])), name
        if bench.target is not None:
            assert isinstance(entry["passed"], bool), name
    details = {name: entry["details"] for name, entry in results["benchmarks"].items()}
    assert details["shapley"]["max_abs_diff_vs_shap"] < 1e-5
    assert details["shapley"]["max_efficiency_error"] < 1e-6
    assert 0.0 < details["throughput"]["throughput_ratio"] < 10.0
    assert details["cohort_check"]["check_problems"] == 0
    assert details["train_memory"]["memory_cache_peak_rss_mib"] > 100
    assert 0.0 < details["accuracy"]["auroc_share_of_bayes"] <= 2.0
    demo = details["demo_comparison"]
    assert demo["primary"] == "gated" and demo["best_classical"] in demo["test_auroc"]
    assert demo["primary_minus_best_classical"] == pytest.approx(
        demo["test_auroc"]["gated"] - demo["test_auroc"][demo["best_classical"]]
    )
    contention = details["contention"]
    assert all(contention[f"{k}_idle_{p}_ms"] > 0 for k in ("table", "image") for p in ("default", "passive"))
    assert details["registry_scale"]["runs"][0]["classical_s"] > 0  # a default run fits the classical baselines
    assert "throughput" in bench_run.render_table(results)
