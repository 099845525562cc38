"""Per-fold preprocessing of tabular and genomic modalities as scikit-learn estimators.

Every learned step (imputation values, scaling, one-hot categories, the log decision, the gene filter) is
an estimator fitted on the training patients of a fold only, so validation and test patients cannot leak
into it. :func:`feature_groups` maps each output column back to the variable it came from, which is how
feature attributions are reported per original variable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from clinfuse.cohort.load import ModalityData
from clinfuse.config import EncoderConfig
from clinfuse.errors import CohortError, ConfigError

_LOG_RANGE = 100.0


def _floats(x: object) -> np.ndarray:
    """``x`` as a float array, float32 kept as it is: a float64 copy of a wide gene table doubles its memory."""
    array = np.asarray(x)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float64)


class Log1p(TransformerMixin, BaseEstimator):
    """``log1p`` applied or not, decided on training data.

    Args:
        mode: ``always``, ``never`` or ``auto`` (apply when every training value is non-negative and
            max / (smallest positive value or 1) exceeds 100, i.e. the data look like raw counts).
    """

    def __init__(self, mode: str = "auto") -> None:
        self.mode = mode

    def fit(self, x: np.ndarray, y: object = None) -> Log1p:
        x = _floats(x)
        self.n_features_in_ = x.shape[1]
        if self.mode == "auto":
            positive = x[x > 0]
            floor = positive.min() if positive.size and positive.min() < 1 else 1.0
            self.apply_ = bool(x.size and x.min() >= 0 and x.max() / floor > _LOG_RANGE)
        else:
            self.apply_ = self.mode == "always"
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = _floats(x)
        if not self.apply_:
            return x
        out = np.clip(x, 0, None)
        return np.log1p(out, out=out)  # in place on the clipped copy: one gene-table-sized array, not two

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(input_features, dtype=object)


class TopVariance(TransformerMixin, BaseEstimator):
    """Keep the ``k`` columns with the largest training variance (all columns when ``k`` is None or larger).

    Args:
        k: number of columns to keep.
    """

    def __init__(self, k: int | None = None) -> None:
        self.k = k

    def fit(self, x: np.ndarray, y: object = None) -> TopVariance:
        x = _floats(x)
        self.n_features_in_ = x.shape[1]
        variance = np.nanvar(x, axis=0, dtype=np.float64)
        k = x.shape[1] if self.k is None else min(self.k, x.shape[1])
        # Stable sort on -variance keeps the original order among ties, so the choice is reproducible.
        self.support_ = np.sort(np.argsort(-variance, kind="stable")[:k])
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return _floats(x)[:, self.support_]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(input_features, dtype=object)[self.support_]


def clinical_preprocessor(numeric: list[str], categorical: list[str]) -> Pipeline:
    """Median imputation with missingness indicators and z-scoring of numerics; most-frequent imputation and
    one-hot encoding of categoricals (unfitted)."""
    numeric_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
    )
    categorical_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    columns = ColumnTransformer(
        [("numeric", numeric_steps, list(numeric)), ("categorical", categorical_steps, list(categorical))],
        verbose_feature_names_out=False,
    )
    return Pipeline([("columns", columns)])


def genomic_preprocessor(encoder_cfg: EncoderConfig) -> Pipeline:
    """Median imputation, optional log1p, top-k variance gene filter and z-scoring (unfitted)."""
    steps = [
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("log", Log1p(encoder_cfg.log_transform)),
        ("select", TopVariance(encoder_cfg.top_k_genes)),
        ("scale", StandardScaler()),
    ]
    return Pipeline(steps).set_output(transform="default")


def clinical_features(preprocessor: Pipeline, numeric: list[str], categorical: list[str]) -> list[tuple[str, str]]:
    """``(output column name, original variable)`` of a fitted :func:`clinical_preprocessor`."""
    columns: ColumnTransformer = preprocessor.named_steps["columns"]
    out: list[tuple[str, str]] = []
    if numeric:
        imputer: SimpleImputer = columns.named_transformers_["numeric"].named_steps["impute"]
        out += [(c, c) for c in numeric]
        if imputer.indicator_ is not None:
            out += [(f"{numeric[i]} (missing)", numeric[i]) for i in imputer.indicator_.features_]
    if categorical:
        encoder: OneHotEncoder = columns.named_transformers_["categorical"].named_steps["onehot"]
        for column, categories in zip(categorical, encoder.categories_, strict=True):
            out += [(f"{column}={value}", column) for value in categories]
    return out


def genomic_features(preprocessor: Pipeline, genes: list[str]) -> list[tuple[str, str]]:
    """``(gene, gene)`` for each gene a fitted :func:`genomic_preprocessor` kept, in output order."""
    kept = preprocessor.named_steps["select"].support_
    return [(genes[i], genes[i]) for i in kept]


def make_preprocessor(modality: ModalityData, encoder_cfg: EncoderConfig) -> Pipeline:
    """The unfitted preprocessing pipeline of a table modality, as its kind builds it.

    Fit it on the present training patients of a fold only (see :func:`fit_preprocessor`).
    """
    return modality.kind.preprocessor(modality, encoder_cfg)


def fit_preprocessor(modality: ModalityData, encoder_cfg: EncoderConfig, train: np.ndarray) -> Pipeline:
    """Build and fit the preprocessor on the training patients of a fold that have this modality.

    Args:
        modality: the modality.
        encoder_cfg: its encoder settings.
        train: indices into the cohort order of the fold's training patients.
    """
    rows = np.asarray(train)[modality.present[np.asarray(train)]]
    if len(rows) == 0:
        raise CohortError(f"modality '{modality.name}': no training patient of this fold has it; add patients")
    return make_preprocessor(modality, encoder_cfg).fit(modality.frame.iloc[rows])


def feature_names(preprocessor: Pipeline, modality: ModalityData) -> list[str]:
    """Readable name of every output column: ``age``, ``age (missing)``, ``stage=II``, gene names."""
    return [name for name, _ in modality.kind.features(preprocessor, modality)]


def feature_groups(preprocessor: Pipeline, modality: ModalityData) -> list[str]:
    """The original variable of every output column (a one-hot column or an indicator maps to its variable)."""
    return [group for _, group in modality.kind.features(preprocessor, modality)]


def group_of_feature(preprocessor: Pipeline, modality: ModalityData) -> dict[str, str]:
    """``feature name -> original variable`` for every output column."""
    return dict(modality.kind.features(preprocessor, modality))


def load_gene_groups(path: str | Path, genes: list[str]) -> np.ndarray:
    """Gene-to-group mask for a pathway-structured first layer.

    Args:
        path: CSV with columns ``gene`` and ``group`` (a gene may belong to several groups).
        genes: the genes kept by the fitted preprocessor, in output order (:func:`feature_names`).

    Returns:
        ``(len(genes), n_groups)`` bool mask, groups in sorted name order; genes in no group are left out
        of every group.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: gene groups file not found; fix encoders.<genomic>.gene_groups")
    table = pd.read_csv(path, dtype=str)
    missing = [c for c in ("gene", "group") if c not in table.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {missing}; the file needs columns gene,group")
    table = table.dropna()
    groups = sorted(table["group"].unique())
    if not groups:
        raise ConfigError(f"{path}: no gene,group rows; add at least one")
    index = {g: i for i, g in enumerate(groups)}
    position = {g: i for i, g in enumerate(genes)}
    mask = np.zeros((len(genes), len(groups)), dtype=bool)
    for gene, group in zip(table["gene"], table["group"], strict=True):
        if gene in position:
            mask[position[gene], index[group]] = True
    return mask
