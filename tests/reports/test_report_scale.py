"""Issue 17: a registry-sized run folder (20,000 patients' predictions and contributions) gives a small report
with a few sampled patient cards, scatters that draw a fixed sample, and Kaplan-Meier curves in sorted time."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from clinfuse.reports import build_report, plots

N = 20_000


@pytest.mark.slow
@pytest.mark.parametrize("task", ["binary", "survival"])
def test_report_of_20000_patients_is_small_and_fast(make_run_folder: Callable[..., Path], task: str) -> None:
    run_dir = make_run_folder(task=task, n=N)
    start = time.perf_counter()
    report = build_report(run_dir, n_patients=6)
    seconds = time.perf_counter() - start
    html = report.read_text(encoding="utf-8")
    assert report.stat().st_size < 10 * 1024 * 1024
    # Drawing a dozen fixed-size figures dominates (~10 s on an idle core); a per-patient cost would not fit.
    assert seconds < 300
    # Six patient cards, not one per patient: the report's size does not grow with the cohort.
    assert len(re.findall(r'class="card', html)) <= 6
    assert html.count("<tr") < 500


def test_scatter_draws_a_fixed_sample_and_boxes_use_every_value() -> None:
    values = np.random.default_rng(1).normal(size=N)
    fig = plots.distribution(["a", "b"], [values, values[:100]], "t", "x")
    ax = fig.axes[0]
    offsets = [len(c.get_offsets()) for c in ax.collections]
    assert offsets == [plots.MAX_POINTS, 100]
    again = plots.distribution(["a", "b"], [values, values[:100]], "t", "x").axes[0]
    assert np.array_equal(ax.collections[0].get_offsets(), again.collections[0].get_offsets())
    # The box (median line) is computed from all 20,000 values, not the sample.
    vertical = [line.get_xdata() for line in ax.lines if len(set(line.get_xdata())) == 1]
    assert any(x[0] == pytest.approx(np.median(values)) for x in vertical)
