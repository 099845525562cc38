"""The external-validation report: one self-contained HTML file from ``external.json`` (``clinfuse predict``).

Sections: performance on the external cohort next to the internal test (with CIs), calibration (intercept,
slope and curves), modality contributions on the new cohort next to the training cohort's, the features with the
largest attributions on the new cohort (``--explain``), and case mix (modality availability and the largest
shifts of numeric inputs). Only aggregates and curves; no patient ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clinfuse.errors import RunError
from clinfuse.reports.html import _CSS
from clinfuse.reports.markup import esc, figure, note, para, section, table
from clinfuse.reports.plots import classification_curves, grouped_bars

REPORT_FILE = "report.html"


def _performance(facts: dict[str, Any]) -> str:
    external, internal = facts.get("external", {}), facts.get("internal", {})
    ext_ci, int_ci = facts.get("external_ci", {}), facts.get("internal_ci", {})
    rows = []
    for name, value in external.items():
        if not isinstance(value, int | float):
            continue
        lo, hi = (ext_ci.get(name) or [None, None])[:2]
        ilo, ihi = (int_ci.get(name) or [None, None])[:2]
        inner = internal.get(name)
        diff = value - inner if isinstance(inner, int | float) else None
        rows.append([name, value, lo, hi, inner, ilo, ihi, diff])
    parts = [
        para(
            f"{facts.get('patients')} patients of cohort {facts.get('cohort')}; model {facts.get('model')} "
            f"(training run {facts.get('training_run')}), decision threshold {facts.get('threshold')}."
        ),
        table(
            ["metric", "external", "CI low", "CI high", "internal test", "CI low", "CI high", "external − internal"],
            rows,
            caption="Test metrics with bootstrap confidence intervals",
        ),
    ]
    parts += [note(w) for w in facts.get("warnings", [])]
    return section("performance", "Performance", parts)


def _calibration(facts: dict[str, Any]) -> str:
    if "calibration" not in facts:
        return section(
            "calibration", "Calibration", [para("Calibration intercept and slope are reported for binary tasks.")]
        )
    calibration, curve = facts["calibration"], facts.get("curve", {})
    parts = [
        table(
            ["calibration intercept (ideal 0)", "calibration slope (ideal 1)"],
            [[calibration.get("intercept"), calibration.get("slope")]],
        )
    ]
    if curve.get("y"):
        classes = [str(c) for c in facts.get("classes", ["0", "1"])]
        prob = np.asarray(curve["prob"], dtype=float)
        fig = classification_curves(np.asarray(curve["y"]), np.column_stack([1 - prob, prob]), classes)
        parts.append(figure(fig, "ROC, precision-recall and calibration curves on the external cohort"))
    return section("calibration", "Calibration", parts)


def _contributions(facts: dict[str, Any]) -> str:
    found = facts.get("contributions")
    if not found:
        return section(
            "contributions", "Modality contributions", [para("Run clinfuse predict with --explain to add them.")]
        )
    modalities = found["modalities"]
    groups = ["external"]
    values = [found["external_mean_abs"]]
    if found.get("training") and all(v is not None for v in found["training"]):
        groups.insert(0, "training")
        values.insert(0, found["training"])
    parts = [
        table(
            ["cohort", *modalities], [[g, *v] for g, v in zip(groups, values, strict=True)], "mean |Shapley| (logit)"
        ),
        figure(
            grouped_bars(groups, modalities, np.asarray(values, dtype=float), "mean |Shapley value|"), "contributions"
        ),
    ]
    return section("contributions", "Modality contributions", parts)


def _features(facts: dict[str, Any]) -> str:
    found = facts.get("features")
    if not found:
        return section("features", "Top features", [para("Run clinfuse predict with --explain to add them.")])
    parts = [
        table(
            ["feature", "mean |attribution|", "mean attribution"],
            [[r["feature"], r["mean_abs_attribution"], r["mean_attribution"]] for r in rows],
            caption=f"{modality}: features with the largest mean |attribution| on the external cohort (logit)",
        )
        for modality, rows in found.items()
    ]
    return section("features", "Top features", parts)


def _case_mix(facts: dict[str, Any]) -> str:
    mix = facts.get("case_mix", {})
    availability = mix.get("availability", {})
    parts = [
        table(
            ["modality", "training share with it", "external share with it"],
            [[m, v.get("training"), v.get("external")] for m, v in availability.items()],
            caption="Modality availability",
        )
    ]
    shifts = mix.get("shifts", [])[:15]
    if shifts:
        parts.append(
            table(
                ["input", "training mean", "external mean", "standardised difference"],
                [[s["input"], s["training_mean"], s["external_mean"], s["smd"]] for s in shifts],
                caption="Numeric inputs that moved most (|difference| > 0.2 sd is worth a look)",
            )
        )
    return section("casemix", "Case mix", parts)


def build_external_report(folder: Path, out: Path | None = None) -> Path:
    """Write ``report.html`` of an external validation from its folder's ``external.json``."""
    path = folder / "external.json"
    if not path.is_file():
        raise RunError(f"{folder}: external.json is missing; run clinfuse predict on a labelled cohort first")
    facts = json.loads(path.read_text(encoding="utf-8"))
    body = [_performance(facts), _calibration(facts), _contributions(facts), _features(facts), _case_mix(facts)]
    title = f"clinfuse external validation: {facts.get('cohort')}"
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(facts.get('model', ''))}</p></header><main>"
        + "\n".join(body)
        + "</main></body></html>\n"
    )
    out = out or folder / REPORT_FILE
    out.write_text(page, encoding="utf-8")
    return out
