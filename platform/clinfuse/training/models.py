"""Which models a run trains: the primary fusion model, the fusion baselines and every unimodal model."""

from __future__ import annotations

from dataclasses import dataclass

from clinfuse.config import ExperimentConfig, FusionConfig
from clinfuse.errors import ConfigError
from clinfuse.fusion import list_fusions
from clinfuse.metric_catalog import stopping_metrics

# A one-modality model needs no interaction between modalities: a concatenation head over one embedding is
# the plain unimodal classifier, so every unimodal baseline shares the same head design.
_UNIMODAL_HEAD = "concat"


@dataclass(frozen=True)
class ModelPlan:
    """One model of a run.

    Args:
        name: the model's name in tables, MLflow and reports (``gated``, ``concat``, ``clinical_only``...).
        kind: ``fusion``, ``unimodal`` or ``ablation`` (the primary model without a flagged modality).
        modalities: the modalities it sees, in model order.
        fusion: its fusion settings.
    """

    name: str
    kind: str
    modalities: tuple[str, ...]
    fusion: FusionConfig


def select_modalities(config: ExperimentConfig, available: list[str]) -> list[str]:
    """The modalities the run uses, in cohort order; naming one the cohort lacks is a config error."""
    if not config.modalities:
        return list(available)
    unknown = [m for m in config.modalities if m not in available]
    if unknown:
        raise ConfigError(
            f"config key 'modalities': {', '.join(unknown)} not in the cohort (it has {', '.join(available)}); "
            "remove it or fix the name"
        )
    return [m for m in available if m in config.modalities]


def check_names(config: ExperimentConfig, available: list[str], task: str) -> None:
    """Reject names the run would otherwise trip over late or ignore silently (before any run is tracked).

    Args:
        config: the experiment config.
        available: the cohort's modality names.
        task: the cohort's task (``binary``, ``multiclass`` or ``survival``).

    Raises:
        ConfigError: one line per unknown encoder key, fusion method or early-stopping metric (encoder names are
            checked by each modality's kind, which knows the encoder family it needs).
    """
    problems = [
        f"config key 'encoders.{m}': the cohort has no modality {m!r} (it has {', '.join(available)}); "
        "fix the name or remove it"
        for m in config.encoders
        if m not in available
    ]
    fusions = list_fusions()
    for key, method in [("fusion.method", config.fusion.method)] + [("compare", m) for m in config.compare]:
        if method not in fusions:
            problems.append(f"config key '{key}': unknown method {method!r}; choose one of: {', '.join(fusions)}")
    metrics = stopping_metrics(task)
    metric = config.training.early_stopping.metric
    if metric not in metrics:
        problems.append(
            f"config key 'training.early_stopping.metric': {metric!r} is not a {task} metric; choose one of: "
            f"{', '.join(metrics)}"
        )
    if problems:
        raise ConfigError.from_list(problems)


def plan_models(config: ExperimentConfig, modalities: list[str]) -> list[ModelPlan]:
    """The primary model first, then (in comparison mode) the other fusion methods and each modality alone."""
    primary = config.fusion.method
    kind = "fusion" if len(modalities) > 1 else "unimodal"
    plans = [
        ModelPlan(primary if kind == "fusion" else f"{modalities[0]}_only", kind, tuple(modalities), config.fusion)
    ]
    if not config.compare or len(modalities) < 2:
        return plans
    for method in config.compare:
        if method != primary:
            plans.append(
                ModelPlan(method, "fusion", tuple(modalities), config.fusion.model_copy(update={"method": method}))
            )
    unimodal_fusion = config.fusion.model_copy(update={"method": _UNIMODAL_HEAD})
    plans.extend(ModelPlan(f"{m}_only", "unimodal", (m,), unimodal_fusion) for m in modalities)
    return plans


def ablation_plan(primary: ModelPlan, drop: str) -> ModelPlan:
    """The primary model retrained without ``drop`` (kind ``ablation``, named ``<primary>_without_<drop>``).

    Args:
        primary: the run's primary model.
        drop: one of its modalities; at least one other must remain.
    """
    kept = tuple(m for m in primary.modalities if m != drop)
    if len(kept) == len(primary.modalities) or not kept:
        raise ValueError(f"cannot drop {drop!r} from {primary.name} (modalities {', '.join(primary.modalities)})")
    # One remaining modality has nothing to fuse: it gets the unimodal head, as the unimodal baselines do.
    fusion = primary.fusion if len(kept) > 1 else primary.fusion.model_copy(update={"method": _UNIMODAL_HEAD})
    return ModelPlan(f"{primary.name}_without_{drop}", "ablation", kept, fusion)
