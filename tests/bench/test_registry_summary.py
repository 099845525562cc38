"""The registry benchmark's summary: growth exponents, the four targets, and results merged across sessions."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import registry_scale  # noqa: E402
import run as bench_run  # noqa: E402


def _run(patients: int, scale: float, peak: float = 1000.0) -> dict:
    stages = {f"{short}_s": scale for short in registry_scale.STAGES.values()}
    return {**stages, "train_s": 10 * scale, "run_s": 20 * scale, "patients": patients, "peak_rss_mib": peak}


def test_summary_fits_exponents_and_checks_each_target() -> None:
    linear = registry_scale.summarise([_run(10_000, 1.0), _run(100_000, 10.0)])
    assert linear["growth_exponents"]["train"] == pytest.approx(1.0)
    assert linear["nlogn_exponent"] == pytest.approx(math.log(10 * 5 / 4) / math.log(10))
    assert linear["all_stages_within_nlogn"] and linear["explain_report_below_train"]
    assert linear["targets_missed"] == 1  # metrics and Shapley take 10 s at the largest size: not below 10 s
    quadratic = registry_scale.summarise([_run(10_000, 0.1), {**_run(100_000, 1.0), "load_s": 10.0}])
    assert quadratic["growth_exponents"]["load"] == pytest.approx(2.0)
    assert not quadratic["all_stages_within_nlogn"]
    # Under a second at the largest size, a stage's slope is noise and does not count.
    tiny = registry_scale.summarise(
        [{**_run(10_000, 1.0), "preprocess_s": 1e-3}, {**_run(100_000, 10.0), "preprocess_s": 0.5}]
    )
    assert tiny["growth_exponents"]["preprocess"] > 2 and tiny["all_stages_within_nlogn"]
    heavy = registry_scale.summarise([_run(10_000, 0.1, peak=9000.0)])
    assert not heavy["peak_below_8_gib"] and math.isnan(heavy["growth_exponents"]["train"])


def test_results_merge_keeps_benchmarks_not_run_and_never_mixes_quick_figures() -> None:
    earlier = {"quick": False, "benchmarks": {"shapley": {"value": 0.1}, "registry_scale": {"value": 3}}}
    new = {"quick": False, "device": "x", "benchmarks": {"registry_scale": {"value": 1}}}
    merged = bench_run.merge_results(earlier, new)
    assert merged["benchmarks"] == {"shapley": {"value": 0.1}, "registry_scale": {"value": 1}}
    assert bench_run.merge_results(earlier, {**new, "quick": True})["benchmarks"] == {"registry_scale": {"value": 1}}
