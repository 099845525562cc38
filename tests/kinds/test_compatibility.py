"""Each built-in kind says what differs between a trained model's modality and a new cohort's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clinfuse.cohort.load import ModalityData
from clinfuse.cohort.preprocess import clinical_preprocessor
from clinfuse.kinds import get_kind


def test_image_of_other_dimensionality_is_an_error() -> None:
    data = ModalityData("imaging", "image", np.ones(2, dtype=bool), paths=[None, None], spatial_dims=2)
    (found,) = get_kind("image").compatibility("imaging", {"spatial_dims": 3}, [], data, max_missing=0.2)
    assert found.error and "trained on 3D images, the cohort declares 2D" in found.message
    assert get_kind("image").compatibility("imaging", {"spatial_dims": 2}, [], data, max_missing=0.2) == []


def test_signal_with_other_channels_is_an_error() -> None:
    data = ModalityData("ecg", "signal", np.ones(2, dtype=bool), info={"channels": ["I", "II"]})
    (found,) = get_kind("signal").compatibility("ecg", {"channels": ["I", "II", "V1"]}, [], data, max_missing=0.2)
    assert found.error and "3 channels (I, II, V1), the cohort has 2 (I, II)" in found.message


def _genes(columns: list[str]) -> ModalityData:
    frame = pd.DataFrame(np.ones((3, len(columns))), columns=columns)
    return ModalityData("genomic", "genomic", np.ones(3, dtype=bool), frame=frame, numeric=columns)


def test_missing_genes_are_imputed_up_to_the_share_then_an_error() -> None:
    description = {"columns": [f"g{i}" for i in range(10)], "numeric": [f"g{i}" for i in range(10)], "categorical": []}
    kind = get_kind("genomic")
    (warning,) = kind.compatibility("genomic", description, [], _genes([f"g{i}" for i in range(8)]), max_missing=0.2)
    assert not warning.error and "2 of 10 genes" in warning.message and "imputed" in warning.message
    (error,) = kind.compatibility("genomic", description, [], _genes([f"g{i}" for i in range(7)]), max_missing=0.2)
    assert error.error and "3 of 10 genes" in error.message


def test_tabular_counts_unseen_categories_and_refuses_missing_columns() -> None:
    train = pd.DataFrame({"age": [50.0, 60.0, 70.0], "stage": ["I", "II", "II"]})
    preprocessor = clinical_preprocessor(["age"], ["stage"]).fit(train)
    description = {"columns": ["age", "stage"], "numeric": ["age"], "categorical": ["stage"]}
    new = pd.DataFrame({"age": [55.0, 65.0, 75.0], "stage": ["IV", "IV", "I"]})
    data = ModalityData("clinical", "tabular", np.ones(3, dtype=bool), frame=new, categorical=["stage"])
    (found,) = get_kind("tabular").compatibility(
        "clinical", description, [{"preprocessor": preprocessor}], data, max_missing=0.2
    )
    assert not found.error and "'stage': 2 values of 1 categories unseen" in found.message
    data.frame = new.drop(columns=["age"])
    messages = get_kind("tabular").compatibility(
        "clinical", description, [{"preprocessor": preprocessor}], data, max_missing=1.0
    )
    # a clinical column is never imputed, whatever share is allowed; the unseen stage is still counted
    assert [m.error for m in messages] == [True, False] and "(age)" in messages[0].message
