"""The cohort layer: cohort.yaml, loading, validation, splits, preprocessing, synthetic and real cohorts."""

from __future__ import annotations

from clinfuse.cohort.check import CohortReport, check_cohort, cohort_summary
from clinfuse.cohort.images import AugmentRecipe, ImagePipeline, augmentation, image_transforms
from clinfuse.cohort.load import Cohort, Exclusion, ModalityData, load_cohort
from clinfuse.cohort.preprocess import (
    feature_groups,
    feature_names,
    fit_preprocessor,
    group_of_feature,
    load_gene_groups,
    make_preprocessor,
)
from clinfuse.cohort.real import write_real_cohort
from clinfuse.cohort.spec import CohortSpec, load_cohort_spec
from clinfuse.cohort.splits import Splits, make_splits
from clinfuse.cohort.synthetic import ensure_demo_cohort, synthesize_cohort

__all__ = [
    "AugmentRecipe",
    "Cohort",
    "CohortReport",
    "CohortSpec",
    "Exclusion",
    "ImagePipeline",
    "ModalityData",
    "Splits",
    "augmentation",
    "check_cohort",
    "cohort_summary",
    "ensure_demo_cohort",
    "feature_groups",
    "feature_names",
    "fit_preprocessor",
    "group_of_feature",
    "load_gene_groups",
    "make_preprocessor",
    "write_real_cohort",
    "image_transforms",
    "load_cohort",
    "load_cohort_spec",
    "make_splits",
    "synthesize_cohort",
]
