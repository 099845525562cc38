"""Every metric clinfuse computes, described once: which tasks have it, its direction, where it is a headline.

Early stopping (direction), config validation (names per task), the live progress display and the report's
headline choice read this table instead of keeping lists of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFICATION = ("binary", "multiclass")
SURVIVAL = ("survival",)


@dataclass(frozen=True)
class MetricInfo:
    """One metric.

    Args:
        name: key in metrics.json, history.csv and MLflow (``val_<name>`` while training).
        tasks: the tasks it is computed for.
        higher_is_better: its direction (early stopping maximises or minimises it).
        label: how people call it.
    """

    name: str
    tasks: tuple[str, ...]
    higher_is_better: bool
    label: str


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("auroc", CLASSIFICATION, True, "AUROC"),
        MetricInfo("auprc", CLASSIFICATION, True, "AUPRC"),
        MetricInfo("accuracy", CLASSIFICATION, True, "accuracy"),
        MetricInfo("balanced_accuracy", CLASSIFICATION, True, "balanced accuracy"),
        MetricInfo("f1", CLASSIFICATION, True, "F1"),
        MetricInfo("sensitivity", CLASSIFICATION, True, "sensitivity"),
        MetricInfo("specificity", CLASSIFICATION, True, "specificity"),
        MetricInfo("brier", CLASSIFICATION, False, "Brier score"),
        MetricInfo("ece", CLASSIFICATION, False, "expected calibration error"),
        MetricInfo("log_loss", CLASSIFICATION, False, "log-loss"),
        MetricInfo("c_index", SURVIVAL, True, "Harrell's C-index"),
        MetricInfo("uno_c", SURVIVAL, True, "Uno's C"),
        MetricInfo("td_auc", SURVIVAL, True, "time-dependent AUC"),
        MetricInfo("ibs", SURVIVAL, False, "integrated Brier score"),
    )
}

# The metric a task's comparisons, p-values and headlines use.
PRIMARY = {"binary": "auroc", "multiclass": "auroc", "survival": "c_index"}
# Names accepted as early-stopping metric of a survival model: they stand for its C-index (training.loop).
SURVIVAL_ALIASES = {"auroc": "c_index", "auprc": "c_index"}


def metrics_for(task: str) -> list[str]:
    """Names of the metrics computed for ``task``, in catalogue order."""
    return [name for name, info in METRICS.items() if task in info.tasks]


def lower_is_better(name: str) -> bool:
    """True for losses and errors (Brier, ECE, log-loss, IBS): early stopping minimises them."""
    info = METRICS.get(name)
    return info is not None and not info.higher_is_better


def primary_metric(task: str) -> str:
    """The headline metric of a task: AUROC (binary/multiclass) or Harrell's C-index (survival)."""
    return PRIMARY[task]


def stopping_metrics(task: str) -> list[str]:
    """Names ``training.early_stopping.metric`` accepts for ``task`` (survival also takes its aliases)."""
    return metrics_for(task) + (list(SURVIVAL_ALIASES) if task == "survival" else [])


def headline_order() -> list[str]:
    """Metrics a report headline is chosen from, best first: each task's primary metric, then balanced accuracy."""
    return list(dict.fromkeys([*PRIMARY.values(), "balanced_accuracy"]))
