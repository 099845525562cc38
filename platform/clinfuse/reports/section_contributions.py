"""The ``contributions`` section: modality Shapley values by cohort, class and patient; gates kept apart."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clinfuse import outputs
from clinfuse.reports import modality_summary, plots
from clinfuse.reports.markup import Raw, figure, heading, missing, note, para, section, table
from clinfuse.reports.run_folder import RunFolder, label_indices
from clinfuse.reports.section_features import feature_views
from clinfuse.reports.section_usefulness import usefulness_parts


def modality_columns(frame: pd.DataFrame, modalities: list[str], prefix: str) -> list[str]:
    """The modalities that have a ``<prefix><modality>`` column in ``frame``, in modality order."""
    return [m for m in modalities if f"{prefix}{m}" in frame.columns]


def present_mask(frame: pd.DataFrame, modality: str) -> np.ndarray:
    """Which patients have ``modality`` (all of them when contributions.csv has no presence column)."""
    column = f"present_{modality}"
    if column not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    values = frame[column]
    if values.dtype == object:
        return values.astype(str).str.lower().isin(("true", "1", "yes")).to_numpy()
    return values.fillna(0).astype(bool).to_numpy()


def cohort_contributions(frame: pd.DataFrame, modalities: list[str]) -> pd.DataFrame:
    """Cohort-level summary of modality Shapley values.

    Args:
        frame: contributions.csv.
        modalities: modality names with a ``phi_<modality>`` column.

    Returns:
        One row per modality: ``n_present``, ``mean_phi`` and ``mean_abs_phi`` over every patient (an absent
        modality contributes exactly 0), ``mean_abs_phi_present`` over patients who have it, and ``share``
        of the summed mean |φ|.
    """
    rows = []
    for modality in modalities:
        phi = frame[f"phi_{modality}"].to_numpy(float)
        present = present_mask(frame, modality)
        rows.append(
            {
                "modality": modality,
                "n_present": int(present.sum()),
                "mean_phi": float(np.nanmean(phi)),
                "mean_abs_phi": float(np.nanmean(np.abs(phi))),
                "mean_abs_phi_present": float(np.nanmean(np.abs(phi[present]))) if present.any() else np.nan,
            }
        )
    summary = pd.DataFrame(rows)
    total = summary["mean_abs_phi"].sum()
    summary["share"] = summary["mean_abs_phi"] / total if total > 0 else np.nan
    return summary


def efficiency_gap(frame: pd.DataFrame, modalities: list[str]) -> float | None:
    """Largest |f(x) − f(∅) − Σφ| over patients (~0 for exact Shapley values); ``None`` if not computable."""
    if not {"f_x", "f_empty"} <= set(frame.columns) or not modalities:
        return None
    total = frame[[f"phi_{m}" for m in modalities]].to_numpy(float).sum(axis=1)
    gap = np.abs(frame["f_x"].to_numpy(float) - frame["f_empty"].to_numpy(float) - total)
    return float(np.nanmax(gap)) if len(gap) else None


def _overall(frame: pd.DataFrame, modalities: list[str]) -> list[str]:
    summary = cohort_contributions(frame, modalities)
    rows = [
        (r.modality, r.n_present, r.mean_phi, r.mean_abs_phi, r.mean_abs_phi_present, r.share)
        for r in summary.itertuples()
    ]
    headers = [
        "modality",
        "patients with it",
        "mean φ",
        "mean |φ|",
        "mean |φ| (present only)",
        "share of |φ|",
    ]
    fig = plots.contribution_bars(modalities, summary["mean_abs_phi"].to_numpy(), summary["mean_phi"].to_numpy())
    parts = [
        heading("Cohort level"),
        para(
            f"{len(frame)} patients explained. φ is in logit units; means over every explained patient (a "
            "modality a patient lacks contributes exactly 0 for that patient)."
        ),
        table(headers, rows, css="contributions"),
        figure(fig, "Mean absolute and signed Shapley value per modality"),
    ]
    if "explained_class" in frame.columns:
        counts = frame["explained_class"].astype(str).value_counts()
        parts.append(
            para(
                "Multiclass model: each patient's φ explain the logit of one class (explained_class, the "
                "predicted class): " + ", ".join(f"{name} ({n})" for name, n in counts.items()) + "."
            )
        )
    gap = efficiency_gap(frame, modalities)
    if gap is not None:
        parts.append(para(f"Efficiency check: max over patients of |f(x) − f(∅) − Σφ| = {gap:.1e}."))
    return parts


def _per_class(run: RunFolder, frame: pd.DataFrame, modalities: list[str]) -> list[str]:
    if "label" not in frame.columns:
        return [note("contributions.csv has no 'label' column, so no per-class breakdown is shown.")]
    classes = run.classes
    y = label_indices(frame["label"], classes)
    phi = frame[[f"phi_{m}" for m in modalities]].to_numpy(float)
    groups, means, rows = [], [], []
    for k, name in enumerate(classes):
        mask = y == k
        if not mask.any():
            continue
        groups.append(name)
        means.append(phi[mask].mean(axis=0))
        abs_means = np.abs(phi[mask]).mean(axis=0)
        rows.extend((name, int(mask.sum()), m, means[-1][i], abs_means[i]) for i, m in enumerate(modalities))
    if not groups:
        return [note("No explained patient's label matches a known class.")]
    fig = plots.grouped_bars(groups, modalities, np.array(means), "Mean φ per true class")
    return [
        heading("Per true class"),
        table(["true class", "patients", "modality", "mean φ", "mean |φ|"], rows),
        figure(fig, "Mean Shapley value per modality and true class"),
    ]


def _per_predicted(summary: dict[str, Any]) -> list[str]:
    rows = [
        (name, modality, values.get("mean_phi"), values.get("mean_abs_phi"))
        for name, block in modality_summary.per_class(summary, "predicted").items()
        for modality, values in block.items()
    ]
    if not rows:
        return []
    return [
        heading("Per predicted class"),
        table(["predicted class", "modality", "mean φ", "mean |φ|"], rows),
    ]


def _summary_only(summary: dict[str, Any]) -> list[str]:
    overall = modality_summary.by_modality(summary.get("overall"))
    rows = [(m, v.get("mean_phi"), v.get("mean_abs_phi"), v.get("share")) for m, v in overall.items()]
    if not rows:
        return []
    return [
        heading("Cohort level (from modality_summary.json)"),
        table(["modality", "mean φ", "mean |φ|", "share of |φ|"], rows, css="contributions"),
    ]


_SHAP_INTERACTIONS = (
    "Mean Shapley interaction values (SHAP convention, Lundberg et al. 2020; logit units). Off the diagonal: "
    "half of the pair's joint effect beyond their separate effects (positive: the pair adds more together, "
    "negative: redundant); on the diagonal: each modality's main effect. Each row sums to that modality's "
    "mean φ."
)
_PAIRS = (
    "Shapley interaction index of each pair of modalities (logit units): positive when the pair adds more "
    "together than separately, negative when they are redundant."
)


def _interactions(summary: dict[str, Any]) -> list[str]:
    parts = [heading("Pairwise interaction indices")]
    names, matrix = modality_summary.interactions(summary or {})
    if not names:
        return [
            *parts,
            note("No interaction indices were recorded (modality_summary.json lacks 'interactions')."),
        ]
    rows = [(a, *row) for a, row in zip(names, matrix, strict=True)]
    return [
        *parts,
        para(_SHAP_INTERACTIONS if isinstance(summary.get("interactions", {}).get("mean"), list) else _PAIRS),
        table(["", *names], rows, css="interactions"),
    ]


def _gates(frame: pd.DataFrame, modalities: list[str]) -> list[str]:
    # A non-gated model writes gate_ columns full of NaN: those are not gates.
    gated = [m for m in modality_columns(frame, modalities, "gate_") if frame[f"gate_{m}"].notna().any()]
    parts: list[str] = [heading("Gates: mixing weights, not contributions")]
    if not gated:
        return [*parts, para("The primary model has no gates (contributions.csv holds no gate values).")]
    rows, samples = [], []
    for modality in gated:
        present = present_mask(frame, modality)
        values = frame.loc[present, f"gate_{modality}"].to_numpy(float)
        values = values[np.isfinite(values)]
        samples.append(values)
        rows.append(
            (
                modality,
                len(values),
                values.mean() if len(values) else None,
                values.std() if len(values) else None,
            )
        )
    fig = plots.distribution(gated, samples, "Gate values (patients who have the modality)", "gate value")
    return [
        *parts,
        para(
            "Gates are the fusion layer's internal mixing weights. They are not contributions: a large gate "
            "does not mean a modality moved the prediction (Jain & Wallace, 2019). Use the Shapley values "
            "above."
        ),
        table(["modality", "patients", "mean gate", "sd"], rows, css="gates"),
        figure(fig, "Distribution of gate values per modality"),
    ]


def _deep_vs_classical(run: RunFolder, frame: pd.DataFrame, modalities: list[str]) -> list[str]:
    """Each modality's share of mean |φ| for the primary model and for every classical baseline."""
    classical = run.get(outputs.CLASSICAL_CONTRIBUTIONS)
    if classical is None or "model" not in classical.columns:
        return []
    rows = [(f"{run.primary_model} (primary)", "deep", *cohort_contributions(frame, modalities)["share"])]
    for model, group in classical.groupby(classical["model"].astype(str), sort=False):
        shares = cohort_contributions(group, modalities)["share"]
        rows.append((model, "classical", *shares))
    return [
        heading("Deep and classical models side by side"),
        para(
            "Share of mean |φ| per modality, from the same exact Shapley game on the same test patients; for a "
            "classical model an absent modality sits at its features' training means. Where the models agree, "
            "the attribution is not an artefact of one architecture."
        ),
        table(["model", "kind", *modalities], rows, css="attribution-comparison"),
    ]


def contributions_section(run: RunFolder) -> Raw:
    """Modality contributions: cohort means, per class, across patients, interactions and the gates panel."""
    frame = run.get("contributions.csv")
    summary = run.get("modality_summary.json")
    parts: list[str] = []
    modalities = modality_columns(frame, run.modalities, "phi_") if frame is not None else []
    if frame is None or not modalities:
        parts.append(
            missing("contributions.csv", "per-patient modality contributions are not shown")
            if frame is None
            else note("contributions.csv has no phi_<modality> columns.")
        )
        parts.extend(_summary_only(summary or {}))
        parts.extend(usefulness_parts(run))
        parts.extend(_interactions(summary or {}))
        parts.extend(feature_views(run))
        return section("contributions", "Modality contributions", parts)
    parts.extend(_overall(frame, modalities))
    parts.extend(usefulness_parts(run))
    parts.extend(_deep_vs_classical(run, frame, modalities))
    parts.extend(_per_class(run, frame, modalities))
    parts.extend(_per_predicted(summary or {}))
    samples = [frame.loc[present_mask(frame, m), f"phi_{m}"].to_numpy(float) for m in modalities]
    fig = plots.distribution(modalities, samples, "φ across patients who have the modality", "φ (logit units)")
    parts += [
        heading("Distribution across patients"),
        figure(fig, "Distribution of Shapley values per modality"),
    ]
    if summary is None:
        parts.append(missing("modality_summary.json", "interaction indices are not shown"))
    else:
        parts.extend(_interactions(summary))
    parts.extend(_gates(frame, modalities))
    parts.extend(feature_views(run))
    return section("contributions", "Modality contributions", parts)
