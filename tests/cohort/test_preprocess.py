"""Preprocessing is fitted on training patients only and maps outputs back to original variables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinfuse.cohort import load_cohort, make_splits, synthesize_cohort
from clinfuse.cohort.load import ModalityData
from clinfuse.cohort.preprocess import (
    feature_groups,
    feature_names,
    fit_preprocessor,
    load_gene_groups,
    make_preprocessor,
)
from clinfuse.config import EncoderConfig


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = synthesize_cohort(
        tmp_path_factory.mktemp("p") / "c",
        patients=60,
        spatial_dims=2,
        size=8,
        seed=2,
        n_genes=40,
        missing_rate={"genomic": 0.2},
    )
    return load_cohort(root)


def test_clinical_fitted_on_train_only(cohort) -> None:  # noqa: ANN001
    clinical = cohort.modalities["clinical"]
    train, _ = make_splits(cohort.y, 3, 0.2, seed=0).folds[0]
    pipe = fit_preprocessor(clinical, EncoderConfig(), train)
    scaler = pipe.named_steps["columns"].named_transformers_["numeric"].named_steps["scale"]
    train_marker = clinical.frame.iloc[train]["marker_b"]
    assert scaler.mean_[2] == pytest.approx(train_marker.mean())
    assert scaler.mean_[2] != pytest.approx(clinical.frame["marker_b"].mean(), abs=1e-9)
    imputer = pipe.named_steps["columns"].named_transformers_["numeric"].named_steps["impute"]
    assert imputer.statistics_[0] == pytest.approx(clinical.frame.iloc[train]["age"].median())
    out = pipe.transform(clinical.frame)
    names, groups = feature_names(pipe, clinical), feature_groups(pipe, clinical)
    assert out.shape[1] == len(names) == len(groups)
    assert "age (missing)" in names and groups[names.index("age (missing)")] == "age"
    assert [g for g in groups if g == "stage"] == ["stage"] * 4
    assert names[groups.index("sex")] == "sex=F"
    np.testing.assert_allclose(out[train, 1].mean(), 0.0, atol=1e-9)


def test_unknown_category_is_ignored() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": np.array(["a", "b", "zz"], dtype=object)}, index=list("pqr"))
    modality = ModalityData("t", "tabular", np.ones(3, bool), frame=frame, categorical=["c"], numeric=["x"])
    pipe = make_preprocessor(modality, EncoderConfig()).fit(frame.iloc[:2])
    np.testing.assert_array_equal(pipe.transform(frame.iloc[2:])[0, -2:], [0.0, 0.0])


def _genomic(values: np.ndarray) -> ModalityData:
    frame = pd.DataFrame(values, columns=[f"g{i}" for i in range(values.shape[1])])
    return ModalityData("gen", "genomic", np.ones(len(frame), bool), frame=frame, numeric=list(frame.columns))


def test_gene_filter_and_log_chosen_on_train() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(1, 2, size=(40, 6))
    values[:, 1] += rng.normal(0, 3, 40) ** 2  # the most variable gene overall
    values[30:, 4] = rng.uniform(0, 10_000, 10)  # huge variance only among validation patients
    modality = _genomic(values)
    pipe = fit_preprocessor(modality, EncoderConfig(top_k_genes=2, log_transform="auto"), np.arange(30))
    assert "g4" not in feature_names(pipe, modality) and "g1" in feature_names(pipe, modality)
    assert pipe.named_steps["log"].apply_ is False  # training range is < 100x
    pipe_all = fit_preprocessor(modality, EncoderConfig(top_k_genes=2), np.arange(40))
    assert pipe_all.named_steps["log"].apply_ is True and "g4" in feature_names(pipe_all, modality)
    never = fit_preprocessor(modality, EncoderConfig(top_k_genes=None, log_transform="never"), np.arange(40))
    assert never.named_steps["log"].apply_ is False and len(feature_names(never, modality)) == 6


def test_synthetic_genomic_keeps_pathway(cohort, tmp_path: Path) -> None:  # noqa: ANN001
    genomic = cohort.modalities["genomic"]
    pipe = fit_preprocessor(genomic, EncoderConfig(top_k_genes=20), np.arange(cohort.n))
    assert pipe.named_steps["log"].apply_ is True
    kept = feature_names(pipe, genomic)
    pathway = json.loads((cohort.root / "truth.json").read_text())["informative"]["genomic"]
    assert set(pathway) <= set(kept)
    assert pipe.transform(genomic.frame[genomic.present]).shape == (int(genomic.present.sum()), 20)
    (tmp_path / "groups.csv").write_text("gene,group\n" + "".join(f"{g},a\n" for g in kept[:3]) + f"{kept[0]},b\n")
    mask = load_gene_groups(tmp_path / "groups.csv", kept)
    assert mask.shape == (20, 2) and mask[:, 0].sum() == 3 and mask[0, 1] and mask[:, 1].sum() == 1
