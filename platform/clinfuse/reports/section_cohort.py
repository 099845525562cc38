"""The ``cohort`` section: who is in the run, their modalities, what is missing and what was excluded."""

from __future__ import annotations

from typing import Any

from clinfuse.reports.markup import Raw, heading, missing, note, para, section, table
from clinfuse.reports.run_folder import RunFolder

_MAX_COLUMNS_LISTED = 15


def _percent(count: Any, total: Any) -> str:
    try:
        return f"{100.0 * float(count) / float(total):.1f}%"
    except (TypeError, ValueError, ZeroDivisionError):
        return "—"


def _counts_table(counts: dict[str, Any], total: Any, name: str) -> Raw:
    return table([name, "patients", "% of cohort"], [(k, v, _percent(v, total)) for k, v in counts.items()])


def _missingness(per_modality: dict[str, dict[str, Any]]) -> list[str]:
    parts: list[str] = [heading("Missing values per column")]
    rows = []
    for modality, columns in per_modality.items():
        ranked = sorted(((c, n) for c, n in (columns or {}).items() if n), key=lambda item: -float(item[1]))
        rows.extend((modality, column, n) for column, n in ranked[:_MAX_COLUMNS_LISTED])
        if len(ranked) > _MAX_COLUMNS_LISTED:
            rows.append((modality, f"… {len(ranked) - _MAX_COLUMNS_LISTED} more columns with missing values", ""))
    if rows:
        parts.append(table(["modality", "column", "missing values"], rows))
    else:
        parts.append(para("No missing values among the patients who have each modality."))
    return parts


def _exclusions(run: RunFolder, summary: dict[str, Any]) -> list[str]:
    seen: set[tuple[str, str, str]] = set()
    rows = []
    for item in [*summary.get("exclusions", []), *run.run_info.get("exclusions", [])]:
        if not isinstance(item, dict):
            continue
        key = (str(item.get("what", "")), str(item.get("reason", "")), str(item.get("count", "")))
        if key not in seen:
            seen.add(key)
            rows.append((item.get("what", "—"), item.get("reason", "—"), item.get("count")))
    parts: list[str] = [heading("Exclusions")]
    if rows:
        parts.append(table(["what", "reason", "count"], rows))
    else:
        parts.append(para("Nothing was excluded."))
    return parts


def _splits(run: RunFolder) -> list[str]:
    splits = run.get("splits.csv")
    if splits is None or "split" not in splits.columns:
        return [missing("splits.csv", "the split sizes are not shown")]
    counts = splits.groupby(splits["split"].astype(str)).size()
    rows = [(name, int(n)) for name, n in counts.items()]
    if "fold" in splits.columns:
        n_folds = splits["fold"].dropna().astype(str).nunique()
        rows.append(("distinct fold values", n_folds))
    return [heading("Splits (patient level)"), table(["split", "patients"], rows)]


def _normalise(summary: dict[str, Any]) -> dict[str, Any]:
    """Accept :func:`clinfuse.cohort.cohort_summary`'s layout (``patients``, ``modalities``, ``combinations``)
    as well as the flat report layout (``n_patients``, ``modality_counts``, ``modality_overlap``...)."""
    flat = dict(summary)
    flat.setdefault("n_patients", summary.get("patients"))
    modalities = summary.get("modalities")
    if isinstance(modalities, dict):
        flat.setdefault("modality_counts", {m: info.get("present", 0) for m, info in modalities.items()})
        flat.setdefault(
            "missing_per_column",
            {m: info.get("missing_values", {}) for m, info in modalities.items() if "missing_values" in info},
        )
        shapes = {m: info["shapes"] for m, info in modalities.items() if info.get("shapes")}
        if shapes:
            flat.setdefault("image_shapes", shapes)
    if isinstance(summary.get("combinations"), dict):
        flat.setdefault("modality_overlap", summary["combinations"])
    return flat


def cohort_section(run: RunFolder) -> Raw:
    """Patients, label balance, modality availability and overlap, missingness and exclusions."""
    summary = run.get("cohort_summary.json")
    name = run.run_info.get("cohort_name")
    parts: list[str] = [para(f"Cohort: {name}")] if name else []
    if summary is None:
        parts.append(missing("cohort_summary.json", "label balance, modality overlap and missingness are not shown"))
        parts.extend(_exclusions(run, {}))
        parts.extend(_splits(run))
        return section("cohort", "Cohort", parts)
    summary = _normalise(summary)
    total = summary.get("n_patients")
    parts.append(para(f"Patients: {total if total is not None else 'not recorded'}"))
    if run.task == "survival":
        parts.append(para("Survival task: the label is the event indicator (event / censored)."))
    if summary.get("label_counts"):
        parts += [heading("Label balance"), _counts_table(summary["label_counts"], total, "label")]
    if summary.get("modality_counts"):
        parts += [
            heading("Modality availability"),
            _counts_table(summary["modality_counts"], total, "modality"),
        ]
    if summary.get("modality_overlap"):
        overlap = dict(sorted(summary["modality_overlap"].items(), key=lambda item: -float(item[1])))
        parts += [
            heading("Modality overlap (which combinations patients have)"),
            _counts_table(overlap, total, "modalities present"),
        ]
    if "missing_per_column" in summary:
        parts.extend(_missingness(summary["missing_per_column"] or {}))
    if summary.get("image_shapes"):
        shapes = summary["image_shapes"]
        rows = shapes.items() if isinstance(shapes, dict) else [("images", shapes)]
        parts += [heading("Image shapes"), table(["image", "shape"], [(k, str(v)) for k, v in rows])]
    notes = run.run_info.get("input_notes") or []
    if notes:
        parts += [heading("Input preparation (chosen by each modality's kind)"), *[para(str(n)) for n in notes]]
    parts.extend(_exclusions(run, summary))
    parts.extend(_splits(run))
    if not summary.get("label_counts"):
        parts.append(note("cohort_summary.json records no label counts."))
    return section("cohort", "Cohort", parts)
