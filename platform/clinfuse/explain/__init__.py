"""Explanations: exact modality Shapley values, SAGE modality importance, feature attributions, image saliency."""

from __future__ import annotations

from clinfuse.explain.coalition_outputs import (
    CoalitionOutputs,
    average_coalition_outputs,
    coalition_outputs,
    model_coalition_outputs,
)
from clinfuse.explain.explanation import explanation_from_frame, read_feature_explanation
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
from clinfuse.explain.sage import (
    ModalityImportance,
    influence_without_usefulness,
    modality_importance,
    model_modality_importance,
)
from clinfuse.explain.saliency import image_saliency, save_overlay

__all__ = [
    "SUMS_TO",
    "CoalitionOutputs",
    "FeatureAttributions",
    "ModalityImportance",
    "ModalityInteractions",
    "ModalityLogit",
    "ModalityShapley",
    "average_coalition_outputs",
    "coalition_outputs",
    "cohort_summary",
    "explain_model_modalities",
    "explanation_from_frame",
    "gene_attributions",
    "image_saliency",
    "influence_without_usefulness",
    "modality_importance",
    "model_coalition_outputs",
    "model_modality_importance",
    "model_modality_shapley",
    "modality_shapley",
    "read_feature_explanation",
    "save_overlay",
    "shapley_interactions",
    "tabular_attributions",
]
