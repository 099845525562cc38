"""The ``patients`` section: cards for instructive patients (confident and correct, errors, disagreement)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clinfuse.kinds import get_kind, list_kinds
from clinfuse.kinds.base import default_patient_panel
from clinfuse.reports import plots
from clinfuse.reports.markup import Raw, esc, figure, missing, note, para, section, table
from clinfuse.reports.run_folder import RunFolder, held_out_predictions, label_indices
from clinfuse.reports.section_contributions import modality_columns, present_mask


def _with_predictions(run: RunFolder, frame: pd.DataFrame) -> pd.DataFrame:
    """contributions.csv joined by patient with the primary model's ``prediction`` and class probabilities."""
    if "prediction" in frame.columns:
        return frame
    predictions, _ = held_out_predictions(run)
    if predictions is None or "prediction" not in predictions.columns:
        return frame
    extra = [c for c in predictions.columns if c == "prediction" or c.startswith("prob_")]
    one_per_patient = predictions.drop_duplicates("patient", keep="last")[["patient", *extra]]
    return frame.merge(one_per_patient, on="patient", how="left")


def _confidence(frame: pd.DataFrame, predicted: np.ndarray, classes: list[str]) -> np.ndarray:
    columns = [f"prob_{c}" for c in classes]
    if set(columns) <= set(frame.columns):
        return frame[columns].to_numpy(float).max(axis=1)
    prob = frame["prob"].to_numpy(float) if "prob" in frame.columns else np.full(len(frame), np.nan)
    # Binary ``prob`` is P(positive); the model's confidence is the probability of what it predicted.
    return np.where(predicted == 1, prob, 1.0 - prob) if len(classes) == 2 else prob


def disagreement(phi: np.ndarray) -> np.ndarray:
    """How strongly modalities pull in opposite directions: min(largest positive φ, largest negative |φ|).

    Args:
        phi: Shapley values, shape ``(patients, modalities)``.

    Returns:
        Shape ``(patients,)``; 0 when all φ share a sign.
    """
    pos = np.clip(phi, 0, None).max(axis=1)
    neg = np.clip(-phi, 0, None).max(axis=1)
    return np.minimum(pos, neg)


def select_patients(run: RunFolder, frame: pd.DataFrame, modalities: list[str], n: int) -> list[tuple[int, str]]:
    """Pick up to ``n`` rows of ``frame`` round-robin from instructive groups.

    Args:
        run: the run (for task and classes).
        frame: contributions.csv joined with predictions.
        modalities: modalities with a φ column.
        n: how many cards at most.

    Returns:
        ``(row position, why it was chosen)`` pairs.
    """
    groups: list[tuple[str, list[int]]] = []
    if run.task != "survival" and "prediction" in frame.columns and "label" in frame.columns:
        truth = label_indices(frame["label"], run.classes)
        predicted = label_indices(frame["prediction"], run.classes)
        confidence = np.nan_to_num(_confidence(frame, predicted, run.classes), nan=0.0)
        order = np.argsort(-confidence, kind="stable")
        groups.append(("most confident correct prediction", [int(i) for i in order if truth[i] == predicted[i]]))
        groups.append(("confident error", [int(i) for i in order if truth[i] != predicted[i]]))
    elif "f_x" in frame.columns:
        order = np.argsort(-frame["f_x"].to_numpy(float), kind="stable")
        groups.append(("highest predicted risk" if run.task == "survival" else "highest output", list(order)))
        groups.append(("lowest predicted risk" if run.task == "survival" else "lowest output", list(order[::-1])))
    phi = frame[[f"phi_{m}" for m in modalities]].to_numpy(float)
    score = disagreement(np.nan_to_num(phi))
    order = np.argsort(-score, kind="stable")
    groups.append(("modalities disagree (opposite-sign φ)", [int(i) for i in order if score[i] > 0]))
    chosen: list[tuple[int, str]] = []
    taken: set[int] = set()
    cursors = [0] * len(groups)
    while len(chosen) < n and any(cursors[g] < len(rows) for g, (_, rows) in enumerate(groups)):
        for g, (reason, rows) in enumerate(groups):
            while cursors[g] < len(rows) and rows[cursors[g]] in taken:
                cursors[g] += 1
            if cursors[g] < len(rows) and len(chosen) < n:
                chosen.append((rows[cursors[g]], reason))
                taken.add(rows[cursors[g]])
    return chosen


def _class_name(value: object, classes: list[str]) -> str:
    index = label_indices(pd.Series([value]), classes)[0]
    return classes[index] if 0 <= index < len(classes) else str(value)


def _panels(run: RunFolder, modality: str, patient: str) -> list[str]:
    """A modality's part of a card, drawn by its kind (a plain features table and figure for unknown kinds)."""
    features = run.features.get(modality)
    overlay = run.overlays.get(modality, {}).get(patient)
    png = overlay.read_bytes() if overlay is not None else None
    kind_name = run.modality_kinds.get(modality)
    if kind_name in list_kinds():
        return get_kind(kind_name).patient_panel(modality, patient, features, png)
    return default_patient_panel(modality, patient, features, png)


def _card(run: RunFolder, row: pd.Series, modalities: list[str], reason: str, mask_row: dict[str, bool]) -> Raw:
    patient = str(row["patient"])
    classes = run.classes
    facts = []
    if "label" in row:
        facts.append(("true label", _class_name(row["label"], classes)))
    if "prediction" in row and pd.notna(row["prediction"]):
        facts.append(("prediction", _class_name(row["prediction"], classes)))
    if "explained_class" in row:
        facts.append(("logit explained (class)", str(row["explained_class"])))
    if "prob" in row:
        facts.append(("predicted probability" if run.task != "survival" else "model output", row["prob"]))
    for key, label in (("f_empty", "f(∅) (logit, no modality)"), ("f_x", "f(x) (logit)")):
        if key in row:
            facts.append((label, row[key]))
    steps = [(m if mask_row[m] else f"{m} (absent)", float(row[f"phi_{m}"])) for m in modalities]
    gated = set(modality_columns(row.to_frame().T, modalities, "gate_"))
    phi_rows = [(m, mask_row[m], float(row[f"phi_{m}"]), row[f"gate_{m}"] if m in gated else None) for m in modalities]
    parts = [
        f'<article class="card" id="patient-{esc(patient)}">',
        f"<h3>Patient {esc(patient)}</h3>",
        para(f"Chosen as: {reason}", "reason"),
        '<div class="cols"><div>',
        table(["", "value"], facts),
        table(["modality", "present", "φ", "gate (mixing weight)"], phi_rows),
        "</div><div>",
    ]
    if {"f_x", "f_empty"} <= set(row.index):
        fig = plots.waterfall(float(row["f_empty"]), steps, float(row["f_x"]))
        parts.append(figure(fig, f"Waterfall from f(empty) to f(x) for patient {patient}"))
    parts.append("</div></div>")
    panels = [p for m in [*modalities, ""] for p in _panels(run, m, patient)]
    tables = [p for p in panels if p.startswith("<table")]
    figures = [p for p in panels if not p.startswith("<table")]
    if tables:
        parts += ['<div class="cols">', *tables, "</div>"]
    parts += figures
    parts.append("</article>")
    return Raw("\n".join(parts))


def patients_section(run: RunFolder, n_patients: int = 6) -> Raw:
    """Cards for up to ``n_patients`` patients: prediction, φ waterfall, top variables, image overlay."""
    frame = run.get("contributions.csv")
    if frame is None:
        return section("patients", "Patients", [missing("contributions.csv", "no patient cards are shown")])
    modalities = modality_columns(frame, run.modalities, "phi_")
    if not modalities or "patient" not in frame.columns:
        return section("patients", "Patients", [note("contributions.csv lacks 'patient' or phi_ columns.")])
    frame = _with_predictions(run, frame).reset_index(drop=True)
    chosen = select_patients(run, frame, modalities, n_patients)
    masks = {m: present_mask(frame, m) for m in modalities}
    parts: list[str] = [
        para(
            f"{len(chosen)} of {len(frame)} explained patients (pseudonymous ids). Each waterfall "
            "walks from the output with no modality, f(∅), to the patient's output, f(x), adding "
            "one modality's Shapley value at a time; the bars sum exactly to f(x) − f(∅)."
        )
    ]
    if not run.features:
        parts.append(note("No features_<modality>.csv file was found, so cards show no top variables or genes."))
    if not run.overlays:
        parts.append(note("No overlays/ folder was found (no image or signal modality, or no saliency maps)."))
    for position, reason in chosen:
        row = frame.iloc[position]
        parts.append(_card(run, row, modalities, reason, {m: bool(masks[m][position]) for m in modalities}))
    return section("patients", "Patients", parts)
