"""Explanations: exact modality Shapley values, feature attributions inside a modality, image saliency."""

from __future__ import annotations

from clinfuse.explain.features import (
    SUMS_TO,
    FeatureAttributions,
    ModalityLogit,
    gene_attributions,
    tabular_attributions,
)
from clinfuse.explain.modality import (
    ModalityInteractions,
    ModalityShapley,
    cohort_summary,
    explain_model_modalities,
    modality_shapley,
    model_modality_shapley,
    shapley_interactions,
)
from clinfuse.explain.saliency import image_saliency, save_overlay

__all__ = [
    "SUMS_TO",
    "FeatureAttributions",
    "ModalityInteractions",
    "ModalityLogit",
    "ModalityShapley",
    "cohort_summary",
    "explain_model_modalities",
    "gene_attributions",
    "image_saliency",
    "model_modality_shapley",
    "modality_shapley",
    "save_overlay",
    "shapley_interactions",
    "tabular_attributions",
]
