"""The experiment config: pydantic models that mirror the YAML one to one.

Defaults live here and nowhere else. ``load_config`` reads a YAML file, applies ``--set key=value``
overrides and validates; every problem becomes a one-line :class:`~clinfuse.errors.ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clinfuse.errors import ConfigError
from clinfuse.metric_catalog import METRICS, lower_is_better

# Metrics where a smaller value is better: early stopping on one of them minimises.
LOWER_IS_BETTER = tuple(name for name in METRICS if lower_is_better(name))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EncoderConfig(_Strict):
    """One modality's encoder.

    Args:
        name: registered encoder name (image: ``densenet121``, ``resnet10/18/34/50``, ``seresnet50``, ``vit``;
            tabular: ``mlp``; genomic: ``snn``). ``None`` picks the default for the modality type.
        embed_dim: size of the embedding handed to fusion.
        hidden: hidden layer widths of tabular encoders.
        linear_skip: add a linear map of the inputs to the embedding (wide and deep), so a linear effect needs
            no hidden layer to pass through: tabular/genomic encoders map the features; the ``cnn`` image/signal
            encoder maps a standardised summary of the input (per-channel intensity statistics and a pooled grid,
            what the classical baselines read). Encoders that do not take it ignore it.
        dropout: dropout rate inside the encoder (AlphaDropout for ``snn``).
        weights: optional local weights file (loaded with ``weights_only=True``; never downloaded).
        top_k_genes: genomic only: keep the k most variable genes, chosen on training patients of each fold.
        log_transform: genomic only: ``auto`` applies log1p when every training value is non-negative and the
            range spans more than two orders of magnitude.
        gene_groups: genomic only: optional CSV (columns ``gene``, ``group``) masking the first layer by pathway.
    """

    name: str | None = None
    embed_dim: int = Field(32, gt=0)
    hidden: list[int] = Field(default_factory=lambda: [64])
    linear_skip: bool = True
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    weights: Path | None = None
    top_k_genes: int | None = Field(1000, gt=0)
    log_transform: Literal["auto", "always", "never"] = "auto"
    gene_groups: Path | None = None


class FusionConfig(_Strict):
    """The fusion method and its head.

    Args:
        method: registered fusion name: ``gated``, ``concat``, ``late``, ``attention``.
        hidden: width of the fusion head's hidden layer.
        dropout: dropout in the head.
        kronecker: gated only: fuse with the Kronecker product of (gated, 1-augmented) embeddings.
        skip: gated only: add a gated linear read-out of each embedding to the head's logits (Pathomic
            Fusion's skip connection).
        project: gated only: pass each embedding through ``Linear + ReLU`` before its gate (Pathomic Fusion's
            ``h_m``); false gates the embeddings themselves. The Kronecker product always projects.
        gate_init: gated only: the value every gate starts at (the gate layer's bias is its logit); near 1
            the head starts with every modality in and learns which to turn down.
        late_combine: late only: ``mean`` of per-modality logits or a ``learned`` weighting.
        attention_heads: attention only: heads of the transformer encoder.
        attention_layers: attention only: layers of the transformer encoder.
        linear_base: every method: start the model as the penalised linear model of its fold (the classical
            baseline's logistic or Cox regression on the same features, fitted on the fold's training patients)
            and let the deep part learn what it misses (:mod:`clinfuse.fusion.linear_base`).

    The gated defaults (no projection, gates starting at 0.88, no skip) were measured against Pathomic Fusion's
    layout (projection, gates at 0.5, skip) on synthetic and real cohorts: docs/results.md, "Gates that start
    open".
    """

    method: str = "gated"
    hidden: int = Field(64, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    kronecker: bool = False
    skip: bool = False
    project: bool = False
    gate_init: float = Field(0.88, gt=0.0, lt=1.0)
    late_combine: Literal["mean", "learned"] = "mean"
    attention_heads: int = Field(2, gt=0)
    attention_layers: int = Field(1, gt=0)
    linear_base: bool = True


# The value each gated-head option had, in effect, before it existed. A saved run config or model spec that
# lacks the key was trained that way, whatever today's default is, so it must rebuild that way.
PREDATED_FUSION_OPTIONS: dict[str, Any] = {"skip": False, "project": True, "gate_init": 0.5, "linear_base": False}


def saved_fusion(data: Mapping[str, Any]) -> dict[str, Any]:
    """A saved fusion section (a run's config or a model spec) completed with the options it predates."""
    return {**PREDATED_FUSION_OPTIONS, **data}


class EarlyStoppingConfig(_Strict):
    """Stop a fold when the validation metric has not improved for ``patience`` epochs."""

    patience: int = Field(10, ge=0)
    metric: str = "auroc"
    mode: Literal["max", "min"] = "max"


class TrainingConfig(_Strict):
    """Optimisation settings shared by every model of a run."""

    epochs: int = Field(30, gt=0)
    batch_size: int = Field(16, gt=0)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["cosine", "plateau", "none"] = "cosine"
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    modality_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    class_weighting: bool = True
    image_size: list[int] = Field(default_factory=lambda: [32, 32, 32])
    augment: bool = False
    num_workers: int = Field(0, ge=0)
    cache: Literal["memory", "disk", "none"] = "memory"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    # On Linux/glibc, keep memory freed between training steps in the process instead of handing it back to the
    # kernel and page-faulting it in again next step (a third of a CPU epoch in `make bench`).
    keep_freed_memory: bool = True

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: list[int]) -> list[int]:
        if not value or any(s <= 0 for s in value) or len(value) not in (1, 2, 3):
            raise ValueError("image_size must be 1 to 3 positive integers, e.g. [32, 32, 32]")
        return value


class EvaluationConfig(_Strict):
    """Cross-validation, test split and uncertainty settings."""

    folds: int = Field(5, ge=2)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    bootstrap: int = Field(1000, ge=0)
    threshold: Literal["youden", "f1", "fixed"] = "youden"
    fixed_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    ci_level: float = Field(0.95, gt=0.5, lt=1.0)
    horizons: list[float] = Field(default_factory=list)


class TrackingConfig(_Strict):
    """MLflow settings. ``uri: null`` uses ``MLFLOW_TRACKING_URI`` or a local ``mlflow.db``."""

    uri: str | None = None
    experiment: str | None = None
    log_model: bool = True
    register_as: str | None = None
    system_metrics: bool = False


class ExplainConfig(_Strict):
    """Explanations computed at the end of ``clinfuse run``."""

    enabled: bool = True
    feature_attributions: bool = True
    max_patients: int = Field(200, gt=0)
    saliency_patients: int = Field(4, ge=0)
    # None: on when ``compare`` is non-empty (a comparison run is where an extra model is expected).
    ablate_flagged: bool | None = None


class ReportConfig(_Strict):
    """Report written at the end of ``clinfuse run``."""

    enabled: bool = True
    out_dir: Path = Path("reports")
    patient_cards: int = Field(6, ge=0)


class PrivacyConfig(_Strict):
    """How patient ids appear in outputs. Identifier columns never appear at all."""

    pseudonymise: bool = True
    salt_file: Path = Path(".clinfuse/salt")


class ExperimentConfig(_Strict):
    """A whole experiment: what to train on, how, and what to write.

    Args:
        name: experiment name (one MLflow experiment per name).
        cohort: folder holding ``cohort.yaml``; relative paths resolve against the config file's folder.
        modalities: the cohort's modalities to use; empty means all.
        encoders: per-modality encoder settings, keyed by modality name; missing ones take defaults.
        inputs: per-modality input settings, keyed by modality name, validated by the modality's kind (e.g. a
            signal's ``sampling_rate`` and ``window``); see docs/configuration.md.
        compare: fusion methods to compare; when non-empty, every unimodal model is trained too.
        compare_classical: also fit the classical baselines (penalised logistic or Cox regression, gradient
            boosting) on the same folds and test patients; they join the comparison as ``kind: classical``.
    """

    name: str = "clinfuse"
    cohort: Path
    modalities: list[str] = Field(default_factory=list)
    encoders: dict[str, EncoderConfig] = Field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    compare: list[str] = Field(default_factory=list)
    compare_classical: bool = True
    seed: int = 0
    device: str = "auto"
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:"):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return value

    @model_validator(mode="after")
    def _early_stopping_mode(self) -> ExperimentConfig:
        if self.training.early_stopping.metric in LOWER_IS_BETTER:
            self.training.early_stopping.mode = "min"
        return self

    def encoder_for(self, modality: str) -> EncoderConfig:
        """The encoder settings of one modality (defaults when the config names none)."""
        return self.encoders.get(modality, EncoderConfig())


def _parse_value(text: str) -> Any:
    """Parse an override value as YAML so ``5``, ``true``, ``[1,2]`` and ``null`` get their types."""
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw config mapping (in place) and return it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set training.epochs=5")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section; check the key path")
            node = child
        node[parts[-1]] = _parse_value(value)
    return data


def _format_error(error: dict[str, Any], source: str) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'; remove it or check its spelling (see docs/configuration.md)"
    if error["type"] == "missing":
        return f"{source}: missing required key '{key}'"
    return f"{source}: key '{key}': {error['msg']} (got {error.get('input')!r})"


def validate_config(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a raw mapping into an :class:`ExperimentConfig`, raising one line per problem."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError.from_list(_format_error(e, source) for e in exc.errors()) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate an experiment YAML; the cohort path resolves against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass the path of an experiment YAML (see configs/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys (name:, cohort:, ...)")
    apply_overrides(data, overrides or [])
    config = validate_config(data, source=str(path))
    if not config.cohort.is_absolute():
        config.cohort = (path.parent / config.cohort).resolve()
    return config


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The resolved config as plain YAML-serialisable data."""
    return config.model_dump(mode="json")


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to ``a.b.c`` keys (for MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat
