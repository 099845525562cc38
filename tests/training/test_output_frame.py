"""The logged model's decisions: the validation threshold, the argmax class, survival at the horizons."""

from __future__ import annotations

import numpy as np

from clinfuse.training.inference import output_frame


def test_binary_prediction_applies_the_stored_threshold_not_one_half() -> None:
    logits = np.array([[-2.0], [0.2], [0.5], [3.0]])  # probabilities 0.12, 0.55, 0.62, 0.95
    frame = output_frame({"task": "binary", "classes": ["healthy", "sick"], "threshold": 0.6}, logits)
    assert list(frame["prediction"]) == ["healthy", "healthy", "sick", "sick"]
    np.testing.assert_allclose(frame["prob_healthy"] + frame["prob_sick"], 1.0)
    np.testing.assert_allclose(frame["prob"], frame["prob_sick"])


def test_multiclass_prediction_is_the_most_probable_class() -> None:
    frame = output_frame({"task": "multiclass", "classes": ["a", "b", "c"]}, np.array([[0.0, 2.0, 1.0], [5.0, 0, 0]]))
    assert list(frame["prediction"]) == ["b", "a"]
    np.testing.assert_allclose(frame[["prob_a", "prob_b", "prob_c"]].sum(axis=1), 1.0)


def test_survival_probability_at_each_horizon_from_the_stored_baseline() -> None:
    spec = {
        "task": "survival",
        "classes": [],
        "baseline": {"times": [1.0, 2.0, 4.0], "cumhaz": [0.1, 0.3, 0.6], "horizons": [0.5, 3.0, 10.0]},
    }
    frame = output_frame(spec, np.array([[0.0], [np.log(2.0)]]))
    assert list(frame.columns) == ["risk", "survival_t0.5", "survival_t3", "survival_t10"]
    np.testing.assert_allclose(frame.iloc[0, 1:], np.exp(-np.array([0.0, 0.3, 0.6])))
    np.testing.assert_allclose(frame.iloc[1, 1:], np.exp(-2 * np.array([0.0, 0.3, 0.6])))
