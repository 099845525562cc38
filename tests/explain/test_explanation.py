"""shap-native attributions: what a notebook user does with clinfuse's feature attributions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import shap
import torch

from clinfuse.errors import RunError
from clinfuse.explain import explanation_from_frame, gene_attributions, read_feature_explanation

DIMS = {"image": 4, "clinical": 6, "genomic": 10}


def test_gene_attributions_plot_with_shap_in_a_notebook(toy_fusion, make_batch) -> None:
    plt.switch_backend("Agg")  # a notebook without a display
    model = toy_fusion(DIMS, seed=41).eval()
    inputs, present = make_batch(DIMS, 12, seed=42)
    with torch.no_grad():
        embeddings = model.encode(inputs, present)
    background = torch.randn(20, 10, generator=torch.Generator().manual_seed(43))
    genes = [f"g{i}" for i in range(10)]
    result = gene_attributions(model, "genomic", inputs["genomic"], embeddings, present, background, genes, nsamples=50)

    explanation = result.to_explanation()
    assert isinstance(explanation, shap.Explanation)
    assert explanation.shape == (len(result.patient_index), 10)
    assert list(explanation.feature_names) == genes
    np.testing.assert_allclose(explanation.values, result.values)
    np.testing.assert_allclose(explanation.data, inputs["genomic"].numpy()[result.patient_index], rtol=1e-6)
    # Additivity as shap states it: base value + Σ attributions ≈ the explained logit (expected gradients).
    np.testing.assert_allclose(explanation.base_values + explanation.values.sum(1), result.f_x, atol=0.1)

    shap.plots.beeswarm(explanation, show=False)
    axes = plt.gcf().axes
    assert [t.get_text() for t in axes[0].get_yticklabels()][-1] == result.summary()["feature"].iloc[0]
    plt.close("all")
    shap.plots.waterfall(explanation[0], show=False)
    plt.close("all")
    shap.plots.bar(explanation, show=False)
    plt.close("all")


def test_features_csv_round_trips_to_an_explanation(tmp_path) -> None:
    frame = pd.DataFrame(
        {
            "patient": ["p1", "p1", "p1", "p2", "p2"],
            "feature": ["age", "sex", "psa", "age", "sex"],
            "value": [61, "F", 4.2, 70, "M"],
            "attribution": [0.5, -0.25, 0.125, -0.5, 0.25],
            "base_value": [0.1, 0.1, 0.1, -0.3, -0.3],
        }
    )
    frame.to_csv(tmp_path / "features_clinical.csv", index=False)
    explanation = read_feature_explanation(tmp_path / "features_clinical.csv")
    assert list(explanation.feature_names) == ["age", "sex", "psa"]
    # p2 has no psa row: attribution 0, value missing (NaN, drawn grey by shap).
    np.testing.assert_array_equal(explanation.values, [[0.5, -0.25, 0.125], [-0.5, 0.25, 0.0]])
    np.testing.assert_allclose(explanation.base_values, [0.1, -0.3])
    assert explanation.data[0, 0] == 61 and np.isnan(explanation.data[0, 1]) and np.isnan(explanation.data[1, 2])
    assert explanation.display_data[0, 1] == "F"
    shap.plots.beeswarm(explanation, show=False)
    plt.close("all")
    without_base = explanation_from_frame(frame.drop(columns=["base_value", "value"]))
    np.testing.assert_array_equal(without_base.base_values, [0.0, 0.0])
    with pytest.raises(RunError, match="attribution"):
        explanation_from_frame(frame.drop(columns=["attribution"]))
    with pytest.raises(RunError, match="features_missing.csv"):
        read_feature_explanation(tmp_path / "features_missing.csv")
