"""Influence beside usefulness, per modality: the part of the contributions section that says which is which.

Influence is the mean |φ| of the modality Shapley values (how much a modality moves the model's output);
usefulness is SAGE on held-out test patients (how much it makes the predictions better), read from
``modality_importance.json``; the unimodal test metric comes from ``metrics.json`` when the run trained
``<modality>_only`` models. A modality with large influence whose usefulness CI includes 0 is flagged in
plain words.
"""

from __future__ import annotations

from typing import Any

from clinfuse.reports.markup import fmt, heading, missing, note, para, table
from clinfuse.reports.run_folder import RunFolder

_WHICH = (
    "Influence (mean |φ|, logit units) says how much the model's output moves with a modality, whether or not "
    "that movement is right. Usefulness (SAGE, Covert et al. 2020) says how much the modality improves the "
    "fold ensemble's predictions on held-out test patients: the Shapley value of the modality in the game "
    "'reduction of the test {loss} when this set of modalities is present', modalities left out taking the "
    "model's missing path. Positive usefulness means the modality helps; a CI that includes 0 means the test "
    "patients cannot tell that it helps. The SAGE values of a game sum to the gap between no modality and all "
    "of them ({total}). The same game with {metric} as the value is shown for readers who think in {metric}."
)


def _interval(block: dict[str, Any] | None, digits: int) -> str:
    """``value (low to high)`` of one modality's SAGE entry, or a dash."""
    if not block or block.get("value") is None:
        return fmt(None)
    text = fmt(block["value"], digits)
    if block.get("ci_low") is None or block.get("ci_high") is None:
        return text
    return f"{text} ({fmt(block['ci_low'], digits)} to {fmt(block['ci_high'], digits)})"


def _unimodal(run: RunFolder, modality: str, metric: str) -> float | None:
    entry = (run.get("metrics.json") or {}).get(f"{modality}_only")
    if not isinstance(entry, dict):
        return None
    return (entry.get("test") or {}).get(metric)


def _influence(run: RunFolder, importance: dict[str, Any]) -> dict[str, float]:
    recorded = importance.get("mean_abs_phi")
    if isinstance(recorded, dict):
        return {str(m): float(v) for m, v in recorded.items() if v is not None}
    frame = run.get("contributions.csv")
    if frame is None:
        return {}
    return {m: float(frame[f"phi_{m}"].abs().mean()) for m in run.modalities if f"phi_{m}" in frame.columns}


def usefulness_parts(run: RunFolder) -> list[str]:
    """The "Influence and usefulness" table, the flags in plain words and how to read them."""
    parts: list[str] = [heading("Influence and usefulness")]
    importance = run.get("modality_importance.json")
    if importance is None:
        return [*parts, missing("modality_importance.json", "usefulness (SAGE) is not shown beside influence")]
    games = importance.get("test") or {}
    loss, metric = games.get("loss") or {}, games.get("metric") or {}
    loss_unit, metric_unit = loss.get("unit", "log-loss"), metric.get("unit", "AUROC")
    metric_name = "c_index" if metric_unit == "C-index" else "auroc"
    influence = _influence(run, importance)
    modalities = [m for m in run.modalities if m in (loss.get("modalities") or {})] or list(
        loss.get("modalities") or {}
    )
    top = max(influence.values(), default=0.0)
    flags = importance.get("flags") or {}
    rows = []
    for m in modalities:
        strength = influence.get(m)
        rows.append(
            (
                m,
                strength,
                strength / top if strength is not None and top > 0 else None,
                _interval((loss.get("modalities") or {}).get(m), 4),
                _interval((metric.get("modalities") or {}).get(m), 3),
                _unimodal(run, m, metric_name),
                "influential, not useful" if m in flags else "",
            )
        )
    level = loss.get("level")
    ci = f"{100 * float(level):.0f}% CI" if level else "CI"
    headers = [
        "modality",
        "influence: mean |φ|",
        "influence / top",
        f"usefulness: SAGE {loss_unit} ({ci})",
        f"usefulness: SAGE {metric_unit} ({ci})",
        f"{metric_unit} alone (test)",
        "flag",
    ]
    total = "n/a"
    if loss.get("value_empty") is not None and loss.get("value_full") is not None:
        total = f"{loss_unit} {fmt(loss['value_empty'], 4)} without any modality, {fmt(loss['value_full'], 4)} with all"
    parts += [
        para(_WHICH.format(loss=loss_unit, metric=metric_unit, total=total)),
        table(headers, rows, css="usefulness"),
        para(
            f"Computed on {loss.get('n_patients', 'the')} held-out test patients; per-fold values on each fold's "
            "validation patients are in modality_importance.json. A modality is flagged when its mean |φ| exceeds "
            "a third of the top modality's while its SAGE CI does not lie above 0."
        ),
    ]
    if flags:
        parts.append(heading("Influential but not useful", level=4))
        entries = loss.get("modalities") or {}
        parts.extend(note(_plain(m, influence.get(m), top, entries.get(m), f"{loss_unit}, {ci}")) for m in flags)
    elif loss.get("modalities") and loss.get("n_resamples", 0) == 0:
        parts.append(note("No bootstrap CIs (evaluation.bootstrap: 0), so no modality could be flagged."))
    else:
        parts.append(para("No modality is influential without being useful."))
    return parts


def _plain(modality: str, strength: float | None, top: float, entry: dict[str, Any] | None, unit: str) -> str:
    """One flag in plain words, with the numbers it rests on."""
    worse = entry is not None and entry.get("ci_high") is not None and entry["ci_high"] < 0
    effect = "makes its predictions worse" if worse else "does not improve its predictions"
    reacts = f"The model reacts to {modality}"
    if strength is not None and top > 0:
        reacts += f" (mean |φ| {fmt(strength)}, {strength / top:.0%} of the top modality's)"
    numbers = ""
    if entry and entry.get("value") is not None:
        numbers = (
            f" (SAGE {fmt(entry['value'], 4)} {unit} {fmt(entry.get('ci_low'), 4)} to {fmt(entry.get('ci_high'), 4)})"
        )
    return f"{reacts}, but {modality} {effect} on held-out patients{numbers}: likely noise the model fitted."
