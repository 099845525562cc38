"""Breslow survival probabilities and the calibration intercept and slope recover known truths."""

from __future__ import annotations

import numpy as np

from clinfuse.training.metrics import calibration_intercept_slope
from clinfuse.training.survival import breslow_baseline, survival_probability


def test_breslow_recovers_an_exponential_baseline() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=20000)
    event_time = rng.exponential(1 / np.exp(0.7 * x))  # baseline hazard 1: S0(t) = exp(-t)
    censor = rng.exponential(2, size=20000)
    time, event = np.minimum(event_time, censor), event_time <= censor
    times, cumhaz = breslow_baseline(time, event, 0.7 * x)
    surv = survival_probability(times, cumhaz, np.array([0.0, 1.0]), [0.5, 1.0])
    np.testing.assert_allclose(surv[0], np.exp(-np.array([0.5, 1.0])), atol=0.015)
    np.testing.assert_allclose(surv[1], np.exp(-np.e * np.array([0.5, 1.0])), atol=0.015)
    assert survival_probability(times, cumhaz, np.zeros(1), [0.0])[0, 0] == 1.0


def test_calibration_slope_is_one_when_calibrated_and_half_when_too_extreme() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=20000)
    y = rng.random(20000) < 1 / (1 + np.exp(-z))
    intercept, slope = calibration_intercept_slope(y, 1 / (1 + np.exp(-z)))
    assert abs(intercept) < 0.05 and abs(slope - 1) < 0.05
    _, slope = calibration_intercept_slope(y, 1 / (1 + np.exp(-2 * z)))
    assert abs(slope - 0.5) < 0.03
    assert np.isnan(calibration_intercept_slope(np.ones(5), np.full(5, 0.3))[0])
