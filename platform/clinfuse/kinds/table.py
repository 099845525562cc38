"""Table kinds: ``tabular`` (clinical records) and ``genomic`` (one numeric column per gene or probe).

Both read one table with a row per patient; their preprocessing is a scikit-learn pipeline fitted on the fold's
training patients (imputation, scaling, one-hot encoding; for genes log1p, a top-k variance filter and
optional pathway masks). Clinical variables are explained with shap's model-agnostic explainers, genes with
expected gradients; both write ``features_<modality>.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from sklearn.pipeline import Pipeline

from clinfuse.cohort.load import CohortReader, Exclusion, ModalityData
from clinfuse.cohort.preprocess import (
    clinical_features,
    clinical_preprocessor,
    fit_preprocessor,
    genomic_features,
    genomic_preprocessor,
    load_gene_groups,
)
from clinfuse.cohort.tables import rows_text, to_numeric
from clinfuse.config import EncoderConfig
from clinfuse.encoders import encoder_accepts
from clinfuse.errors import ConfigError, RunError
from clinfuse.explain.background import summarise_background
from clinfuse.explain.features import gene_attributions, tabular_attributions
from clinfuse.kinds.base import (
    ExplainContext,
    Fitted,
    KindSettings,
    LoadedModality,
    Mismatch,
    ModalityEntry,
    ModalityKind,
    SynthResult,
    blank,
)
from clinfuse.kinds.registry import register_kind


class TabularEntry(ModalityEntry):
    """A clinical table: one row per patient; columns not listed below are numeric features.

    Args:
        type: ``tabular``.
        table: CSV or Parquet file.
        categorical: columns one-hot encoded (any value type).
        identifiers: columns that identify a person (never features, never logged or printed).
        exclude: columns dropped on purpose (reported by ``clinfuse cohort check``).
    """

    type: Literal["tabular"]
    table: str
    categorical: list[str] = Field(default_factory=list)
    identifiers: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class GenomicEntry(ModalityEntry):
    """A genomic table: one row per patient, one numeric column per gene (or probe).

    Args:
        type: ``genomic``.
        table: CSV or Parquet file.
        identifiers: identifier columns (never features).
        exclude: columns dropped on purpose.
    """

    type: Literal["genomic"]
    table: str
    identifiers: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class TableFitted(Fitted):
    """A fold-fitted scikit-learn pipeline and the feature matrix of every cohort patient.

    Args:
        preprocessor: the fitted pipeline.
        names: output column names; ``groups``: the original variable of each.
        matrix: ``(n_patients, n_features)`` float32 (zeros for absent patients), or None for the logged model.
        gene_mask: optional ``(n_features, n_groups)`` pathway mask for the encoder.
        background: ``(b, n_features)`` summary of the fold's training rows that feature explanations compare
            patients with (:func:`~clinfuse.explain.background.summarise_background`: k-means centres of at
            least 5 patients each, never a patient's row); it travels with the logged model.
    """

    def __init__(
        self,
        preprocessor: Pipeline,
        names: list[str],
        groups: list[str],
        matrix: np.ndarray | None = None,
        gene_mask: np.ndarray | None = None,
        background: np.ndarray | None = None,
    ) -> None:
        self.preprocessor, self.feature_names, self.groups, self.matrix = preprocessor, names, groups, matrix
        self.background = background
        self.input_shape = {"in_features": len(names), "gene_mask": gene_mask}

    def item(self, patient: int) -> torch.Tensor:
        assert self.matrix is not None
        return torch.from_numpy(self.matrix[patient])

    def transform(self, raw: pd.DataFrame) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.preprocessor.transform(raw), dtype=np.float32))

    def state(self) -> Any:
        return {
            "preprocessor": self.preprocessor,
            "names": self.feature_names,
            "groups": self.groups,
            "gene_mask": self.input_shape["gene_mask"],
            "background": self.background,
        }


class TableKind(ModalityKind):
    """What clinical and genomic tables share: reading, fold-fitted sklearn preprocessing, the input frame."""

    encoder_family = "vector"
    encoder_keys = ("name", "embed_dim", "hidden", "linear_skip", "dropout", "weights")
    cohort_feature_view = True
    # The float type numeric features are held in from reading on (float32 halves a wide gene table).
    numeric_dtype: type = np.float64

    # --- subclass hooks
    def preprocessor(self, data: ModalityData, encoder: EncoderConfig) -> Pipeline:
        """The unfitted scikit-learn pipeline of this modality."""
        raise NotImplementedError

    def features(self, preprocessor: Pipeline, data: ModalityData) -> list[tuple[str, str]]:
        """``(output column, original variable)`` of a fitted pipeline."""
        raise NotImplementedError

    def _mask(self, data: ModalityData, encoder: EncoderConfig, names: list[str], root: Path) -> np.ndarray | None:
        return None

    # --- cohort
    def load(self, name: str, entry: Any, reader: CohortReader, verify: bool) -> LoadedModality | None:
        categorical = list(getattr(entry, "categorical", []))
        frame, ids = reader.table(
            entry.table,
            f"modalities.{name}.table",
            text=[*categorical, *entry.identifiers, *entry.exclude],
            numeric_dtype=self.numeric_dtype,
        )
        if frame is None or ids is None:
            return None
        for key, names in (
            ("categorical", categorical),
            ("identifiers", entry.identifiers),
            ("exclude", entry.exclude),
        ):
            reader.check_columns(frame, names, f"modalities.{name}.{key}", entry.table)
        for column in entry.identifiers:
            if column in frame.columns:
                reader.add_identifiers(frame[column])
        reserved = reader.reserved_columns(entry.table) | set(entry.identifiers) | set(entry.exclude)
        features = [c for c in frame.columns if c not in reserved]
        if not features:
            reader.problem(f"{entry.table}: no feature columns left for modality '{name}'; check identifiers/exclude")
        converted: dict[str, pd.Series] = {}
        missing: dict[str, int] = {}
        for column in features:
            values = frame[column]
            missing[column] = int(values.isna().sum())
            if column in categorical:
                converted[column] = pd.Series(values.to_numpy(dtype=object), index=frame.index, dtype=object)
                continue
            numbers, bad, infinite = to_numeric(values)
            if bad:
                hint = " or declare it categorical" if hasattr(entry, "categorical") else ""
                reader.problem(
                    f"{entry.table} column '{column}': non-numeric value at {rows_text(bad)} in a numeric column; "
                    f"fix the values{hint}"
                )
            if infinite:
                reader.problem(
                    f"{entry.table} column '{column}': infinite value at {rows_text(infinite)}; use a number"
                )
            if values.dtype != self.numeric_dtype:
                converted[column] = pd.Series(numbers, index=frame.index, dtype=self.numeric_dtype)
        # Columns read as numbers are taken as one block (one copy); only converted columns are set one by one.
        data = frame[features] if len(converted) < len(features) else pd.DataFrame(index=frame.index)
        for column in features:  # in feature order: a replaced column keeps its place, a new one is appended
            if column in converted:
                data[column] = converted[column]
        data.index = pd.Index(ids.to_numpy(dtype=object), dtype=object)
        keep = ids.notna().to_numpy() & ~ids.duplicated().to_numpy()
        if not keep.all():
            data = data[keep]
        has_value = data.notna().any(axis=1)
        exclusions = []
        if entry.exclude:
            exclusions.append(Exclusion(f"modalities.{name}.exclude", "columns dropped on purpose", len(entry.exclude)))
        return LoadedModality(
            ids=set(data.index[has_value]),
            listed=set(data.index),
            frame=data,
            info={
                "numeric": [c for c in features if c not in categorical],
                "categorical": [c for c in categorical if c in features],
            },
            details={"missing": missing},
            tables=[entry.table],
            exclusions=exclusions,
        )

    def summarise(self, data: ModalityData, details: dict[str, Any]) -> dict[str, Any]:
        assert data.frame is not None
        missing = data.frame[data.present].isna().sum()
        return {
            "features": int(data.frame.shape[1]),
            "categorical": len(data.categorical),
            "missing_values": {str(k): int(v) for k, v in missing.items() if v},
        }

    def summary_lines(self, name: str, info: dict[str, Any]) -> list[str]:
        lines = []
        if info.get("features"):
            lines.append(f"  {name}: {info['features']} features ({info.get('categorical', 0)} categorical)")
        if info.get("missing_values"):
            lines.append(
                f"  {name} missing values: " + ", ".join(f"{k}: {v}" for k, v in info["missing_values"].items())
            )
        return lines

    # --- training
    def fit(
        self,
        data: ModalityData,
        prepared: Any,
        train: np.ndarray,
        encoder: EncoderConfig,
        settings: KindSettings,
        root: Path,
    ) -> TableFitted:
        preprocessor = fit_preprocessor(data, encoder, train)
        pairs = self.features(preprocessor, data)
        names = [n for n, _ in pairs]
        fitted = TableFitted(
            preprocessor, names, [g for _, g in pairs], gene_mask=self._mask(data, encoder, names, root)
        )
        present_rows = np.flatnonzero(data.present)
        matrix = np.zeros((len(data.present), len(names)), dtype=np.float32)
        if len(present_rows):
            matrix[present_rows] = fitted.transform(self.raw(data, present_rows)).numpy()
        fitted.matrix = matrix
        train = np.asarray(train)
        fitted.background = summarise_background(matrix[train[data.present[train]]])
        return fitted

    # --- the logged model
    def describe(self, data: ModalityData, settings: KindSettings) -> dict[str, Any]:
        assert data.frame is not None
        return {
            "columns": list(data.frame.columns),
            "numeric": list(data.numeric),
            "categorical": list(data.categorical),
        }

    def raw(self, data: ModalityData, rows: np.ndarray) -> pd.DataFrame:
        assert data.frame is not None
        return data.frame.iloc[np.asarray(rows)]

    def frame_columns(self, modality: str, description: dict[str, Any]) -> list[str]:
        return [f"{modality}.{c}" for c in description["columns"]]

    def to_frame(self, modality: str, data: ModalityData, rows: np.ndarray) -> dict[str, list[Any]]:
        part = self.raw(data, rows)
        # Numbers as float64 whatever the kind holds them in: the input frame's schema (and MLflow's, which
        # refuses to narrow a double column) does not depend on the in-memory float type.
        return {
            f"{modality}.{c}": list(part[c].to_numpy(np.float64) if part[c].dtype == np.float32 else part[c].to_numpy())
            for c in part.columns
        }

    def from_frame(self, modality: str, description: dict[str, Any], frame: pd.DataFrame) -> tuple[Any, np.ndarray]:
        columns = self.frame_columns(modality, description)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise RunError(f"input frame: missing columns {missing[:3]} of modality '{modality}'; see docs/tracking.md")
        table = frame[columns].copy()
        table.columns = description["columns"]
        for column in description["numeric"]:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(np.float64)
        for column in description["categorical"]:
            values = table[column].astype(object)
            table[column] = values.where(~blank(values), None)
        present = table.notna().any(axis=1).to_numpy()
        return table[present], present

    def restore(self, description: dict[str, Any], state: Any) -> TableFitted:
        return TableFitted(
            state["preprocessor"],
            state["names"],
            state["groups"],
            gene_mask=state.get("gene_mask"),
            background=state.get("background"),
        )

    # What a missing column is called, and whether the fitted imputer may stand in for it.
    column_word = "column"
    impute_missing = False

    def compatibility(
        self, modality: str, description: dict[str, Any], states: list[Any], data: ModalityData, *, max_missing: float
    ) -> list[Mismatch]:
        assert data.frame is not None
        expected, found = list(description["columns"]), set(data.frame.columns)
        missing = [c for c in expected if c not in found]
        extra = [c for c in data.frame.columns if c not in set(expected)]
        found_list: list[Mismatch] = []
        if missing:
            names = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            share = len(missing) / max(len(expected), 1)
            if self.impute_missing and share <= max_missing:
                found_list.append(
                    Mismatch(
                        f"modality '{modality}': {len(missing)} of {len(expected)} {self.column_word}s of the model "
                        f"missing from the cohort ({names}); imputed with the training patients' means"
                    )
                )
            else:
                allowed = f" (at most {max_missing:.0%} may be imputed: --max-missing)" if self.impute_missing else ""
                found_list.append(
                    Mismatch(
                        f"modality '{modality}': {len(missing)} of {len(expected)} {self.column_word}s of the model "
                        f"missing from the cohort ({names}){allowed}; add them to the table",
                        error=True,
                    )
                )
        if extra:
            names = ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
            found_list.append(
                Mismatch(
                    f"modality '{modality}': {len(extra)} {self.column_word}s the model does not use ignored ({names})"
                )
            )
        found_list += self._unseen_categories(modality, description, states, data)
        return found_list

    def _unseen_categories(
        self, modality: str, description: dict[str, Any], states: list[Any], data: ModalityData
    ) -> list[Mismatch]:
        """Categorical values no training fold saw: the one-hot encoder maps them to unknown (all zeros)."""
        categorical = [c for c in description.get("categorical", []) if data.frame is not None and c in data.frame]
        if not categorical or not states:
            return []
        known = _known_categories(states[0]["preprocessor"], description["categorical"])
        found = []
        for column in categorical:
            assert data.frame is not None
            values = data.frame.loc[data.present, column].dropna()
            unseen = values[~values.astype(str).isin({str(v) for v in known.get(column, [])})]
            if len(unseen):
                found.append(
                    Mismatch(
                        f"modality '{modality}' column '{column}': {len(unseen)} values of {unseen.nunique()} "
                        "categories unseen in training, encoded as unknown"
                    )
                )
        return found

    # --- explanations
    def _attribute(self, context: ExplainContext, view: Any, x: np.ndarray, rows: np.ndarray, common: dict) -> Any:
        raise NotImplementedError

    def explain(self, context: ExplainContext) -> None:
        """Per-variable attributions of the explained patients, averaged over fold models by variable.

        Each fold model is explained against its fitted background summary (the one its logged model carries),
        so ``clinfuse run`` and ``clinfuse predict --explain`` give one patient the same attributions.
        """
        frames = []
        for fold, view in enumerate(context.folds):
            background = view.fitted[context.modality].background
            if background is None:
                raise RunError(
                    f"modality '{context.modality}': the model carries no explanation background (logged before "
                    "clinfuse stored one); train it again to explain its features"
                )
            per_class = []
            for k in np.unique(context.classes):
                rows = context.indices[context.classes == k]
                embeddings, present, inputs = view.embed(rows)
                common = dict(
                    embeddings=embeddings,
                    present=present,
                    background=background,
                    output_index=int(k),
                    patient_index=rows,
                    seed=context.seed + fold,  # each fold model draws its own orders and samples
                )
                result = self._attribute(context, view, inputs[context.modality].numpy(), rows, common)
                base = pd.Series(result.base_values, index=result.patient_index)
                frame = result.to_frame()
                per_class.append(frame.assign(base_value=base.reindex(frame["patient_index"]).to_numpy()))
            frames.append(pd.concat(per_class, ignore_index=True).assign(fold=fold))
        combined = pd.concat(frames, ignore_index=True)
        # A feature a fold model never saw (e.g. a gene outside its top-k) contributes 0 for that fold.
        attribution = combined.groupby(["patient_index", "feature"], sort=False)["attribution"].sum()
        attribution = attribution / len(context.folds)
        values = combined.groupby(["patient_index", "feature"], sort=False)["value"].first()
        out = pd.DataFrame({"value": values, "attribution": attribution}).reset_index()
        # The fold ensemble's base value: the mean of the folds' references, so base + Σ attributions is the
        # mean over folds of f(x) (shap's additivity, as shap.Explanation expects it).
        base_value = combined.drop_duplicates(["fold", "patient_index"]).groupby("patient_index")["base_value"].mean()
        out["base_value"] = out["patient_index"].map(base_value).to_numpy()
        out.insert(0, "patient", [context.pseudo_ids[i] for i in out.pop("patient_index")])
        out.to_csv(context.features_path(), index=False)


def _known_categories(preprocessor: Pipeline, categorical: list[str]) -> dict[str, list[Any]]:
    """The categories the fitted one-hot encoder knows, per categorical column ({} when there is none)."""
    for step in preprocessor.named_steps.values():
        transformers = getattr(step, "named_transformers_", {})
        if "categorical" in transformers:
            encoder = transformers["categorical"].named_steps["onehot"]
            return {c: list(values) for c, values in zip(categorical, encoder.categories_, strict=False)}
    return {}


@register_kind
class TabularKind(TableKind):
    """Clinical records: numeric and categorical variables."""

    name = "tabular"
    entry_model = TabularEntry
    default_encoder = "mlp"
    synthesis_order = 10
    attribution = (
        "a patient's variable attributions sum to f(x) - mean_b f(x with this modality's features replaced by "
        "background row b), other modalities held at the patient's embeddings (exact for Exact, Permutation and "
        "Partition). This is not the modality's phi, whose reference is the missing path."
    )

    def preprocessor(self, data: ModalityData, encoder: EncoderConfig) -> Pipeline:
        return clinical_preprocessor(data.numeric, data.categorical)

    def features(self, preprocessor: Pipeline, data: ModalityData) -> list[tuple[str, str]]:
        return clinical_features(preprocessor, data.numeric, data.categorical)

    def _attribute(self, context: ExplainContext, view: Any, x: np.ndarray, rows: np.ndarray, common: dict) -> Any:
        fitted = view.fitted[context.modality]
        # shap's per-patient budget for one model, shared by the fold models: the reported attribution is their
        # mean, whose sampling variance is then that of one model explained with the whole budget.
        budget = max(500, 10 * x.shape[1] + 1)
        return tabular_attributions(
            view.model,
            context.modality,
            x,
            feature_groups=fitted.groups,
            raw_values=self.raw(context.data, rows),
            feature_names=fitted.feature_names,
            max_evals=-(-budget // len(context.folds)),
            **common,
        )

    def synthesize(
        self,
        name: str,
        out: Path,
        latent: np.ndarray,
        present: np.ndarray,
        ids: list[str],
        rng: np.random.Generator,
        options: dict[str, Any],
    ) -> SynthResult:
        """Two numeric markers and the stage follow the latent; age (with gaps), sex and BMI are noise."""
        n = len(latent)
        stage_score = latent + 0.7 * rng.standard_normal(n)
        stage = np.array(["I", "II", "III", "IV"])[
            np.digitize(stage_score, np.quantile(stage_score, [0.25, 0.5, 0.75]))
        ]
        age = np.round(rng.normal(62, 9, n), 0)
        age[rng.random(n) < 0.08] = np.nan  # realistic gaps exercise imputation and missingness indicators
        table = pd.DataFrame(
            {
                "age": age,
                "sex": rng.choice(["F", "M"], n),
                "stage": stage,
                "marker_a": np.round(latent + 0.5 * rng.standard_normal(n), 4),
                "marker_b": np.round(10 + 2 * latent + rng.standard_normal(n), 4),
                "bmi": np.round(rng.normal(26, 4, n), 2),
            }
        )
        table.loc[~present] = np.nan  # row kept (it may carry the label), but no data: modality absent
        table.insert(0, "mrn", [f"MRN{rng.integers(10**6, 10**7)}" for _ in ids])
        table.insert(0, "patient_id", ids)
        file = f"{name}.csv"
        table.to_csv(out / file, index=False)
        entry = {"type": "tabular", "table": file, "categorical": ["sex", "stage"], "identifiers": ["mrn"]}
        return SynthResult(entry, ["marker_a", "marker_b", "stage"], table=file)


class GeneSettings(KindSettings):
    """No genomic input settings yet: ``top_k_genes``, ``log_transform`` and ``gene_groups`` live in ``encoders``."""


@register_kind
class GenomicKind(TableKind):
    """Gene expression (or any wide numeric omics table)."""

    column_word = "gene"
    impute_missing = True

    name = "genomic"
    numeric_dtype = np.float32
    entry_model = GenomicEntry
    default_encoder = "snn"
    encoder_keys = (*TableKind.encoder_keys, "top_k_genes", "log_transform", "gene_groups")
    synthesis_order = 20
    attribution = (
        "expected gradients: a patient's gene attributions sum approximately (sampling error shrinks with "
        "nsamples) to f(x) - mean_b f(background gene row b), other modalities held fixed; not phi."
    )

    def preprocessor(self, data: ModalityData, encoder: EncoderConfig) -> Pipeline:
        return genomic_preprocessor(encoder)

    def features(self, preprocessor: Pipeline, data: ModalityData) -> list[tuple[str, str]]:
        assert data.frame is not None
        return genomic_features(preprocessor, list(data.frame.columns))

    def _mask(self, data: ModalityData, encoder: EncoderConfig, names: list[str], root: Path) -> np.ndarray | None:
        if encoder.gene_groups is None:
            return None
        path = encoder.gene_groups if encoder.gene_groups.is_absolute() else root / encoder.gene_groups
        return load_gene_groups(path, names)

    def config_problems(
        self, data: ModalityData, encoder: EncoderConfig, settings: KindSettings, root: Path
    ) -> list[str]:
        problems = super().config_problems(data, encoder, settings, root)
        if encoder.gene_groups is not None:
            path = encoder.gene_groups if encoder.gene_groups.is_absolute() else root / encoder.gene_groups
            try:
                load_gene_groups(path, [])
            except ConfigError as exc:
                problems += exc.problems
            name = encoder.name or self.default_encoder
            if not problems and not encoder_accepts(name, "gene_mask"):
                problems.append(
                    f"config key 'encoders.{data.name}.gene_groups' needs an encoder that takes gene groups, not "
                    f"{name!r}; set encoders.{data.name}.name: snn"
                )
        return problems

    def _attribute(self, context: ExplainContext, view: Any, x: np.ndarray, rows: np.ndarray, common: dict) -> Any:
        fitted = view.fitted[context.modality]
        return gene_attributions(view.model, context.modality, x, gene_names=fitted.feature_names, **common)

    def synthesize(
        self,
        name: str,
        out: Path,
        latent: np.ndarray,
        present: np.ndarray,
        ids: list[str],
        rng: np.random.Generator,
        options: dict[str, Any],
    ) -> SynthResult:
        """Count-like expression; a pathway of 10 genes shifts with the latent. Writes ``gene_groups.csv`` too."""
        n_genes = int(options.get("n_genes", 200))
        genes = [f"G{g:04d}" for g in range(1, n_genes + 1)]
        pathway_idx = sorted(rng.choice(n_genes, size=min(10, n_genes), replace=False).tolist())
        log_mean = rng.uniform(1.0, 7.0, n_genes)
        log_expr = log_mean + 0.5 * rng.standard_normal((len(latent), n_genes))
        log_expr[:, pathway_idx] += 0.8 * latent[:, None]
        # Count-like expression spanning orders of magnitude, as RNA-seq is; preprocessing decides on log1p.
        table = pd.DataFrame(np.round(np.exp(log_expr), 2), columns=genes)
        pathway = [genes[g] for g in pathway_idx]
        table.insert(0, "patient_id", ids)
        file = f"{name}.csv"
        table[present].to_csv(out / file, index=False)
        groups = [(g, "pathway") for g in pathway] + [
            (g, f"set{i % 5}") for i, g in enumerate(genes) if g not in pathway
        ]
        pd.DataFrame(groups, columns=["gene", "group"]).to_csv(out / "gene_groups.csv", index=False)
        return SynthResult({"type": "genomic", "table": file}, pathway)
