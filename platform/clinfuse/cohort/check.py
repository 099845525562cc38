"""``clinfuse cohort check``: validate every file of a cohort and summarise what a model will see."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinfuse.cohort.load import Cohort, collect_cohort
from clinfuse.cohort.splits import make_splits
from clinfuse.errors import CohortError
from clinfuse.kinds.registry import get_kind

_DEFAULT_TEST_FRACTION = 0.2


@dataclass
class CohortReport:
    """Result of :func:`check_cohort`.

    Args:
        path: the cohort folder.
        problems: one line per problem; empty when the cohort is valid.
        summary: patients, label balance, modality availability and overlap, missing values, images,
            exclusions (JSON-serialisable; no patient ids).
        warnings: what a model can still use but a researcher should look at (each kind's ``warnings``).
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def render(self, problems: bool = True) -> str:
        """Human-readable summary followed by the problems (unless ``problems`` is False)."""
        s = self.summary
        lines = [f"cohort {s.get('name', self.path)} ({self.path})"]
        if "patients" in s:
            lines.append(f"  task: {s['task']}, patients: {s['patients']}")
            lines.append("  label: " + ", ".join(f"{k}: {v}" for k, v in s["label_counts"].items()))
            if "time" in s:
                lines.append(
                    f"  follow-up time: median {s['time']['median']:.4g} (min {s['time']['min']:.4g}, "
                    f"max {s['time']['max']:.4g})"
                )
            lines.append(
                "  modalities: "
                + ", ".join(f"{k} ({v['type']}): {v['present']}/{s['patients']}" for k, v in s["modalities"].items())
            )
            lines.append("  combinations: " + ", ".join(f"{k}: {v}" for k, v in s["combinations"].items()))
            for name, info in s["modalities"].items():
                lines += get_kind(info["type"]).summary_lines(name, info)
            for exclusion in s["exclusions"]:
                lines.append(f"  excluded: {exclusion['count']} ({exclusion['source']}: {exclusion['reason']})")
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.problems and problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems]
        elif not self.problems:
            lines.append("valid")
        return "\n".join(lines)


def cohort_summary(cohort: Cohort) -> dict[str, Any]:
    """JSON-serialisable summary of a loaded cohort (counts only; never a patient id)."""
    names = cohort.modality_names
    combos = Counter("+".join(n for n, has in zip(names, row, strict=True) if has) for row in cohort.presence)
    modalities: dict[str, Any] = {}
    for name, mod in cohort.modalities.items():
        info: dict[str, Any] = {"type": mod.type, "present": int(mod.present.sum())}
        info.update(mod.kind.summarise(mod, cohort.details.get(name, {})))
        modalities[name] = info
    summary: dict[str, Any] = {
        "name": cohort.name,
        "task": cohort.task,
        "patients": cohort.n,
        "classes": cohort.classes,
        "label_counts": {c: int((cohort.y == i).sum()) for i, c in enumerate(cohort.classes)},
        "modalities": modalities,
        "combinations": dict(combos.most_common()),
        "exclusions": [vars(e).copy() for e in cohort.exclusions],
        "content_hash": cohort.content_hash,
    }
    if cohort.time is not None:
        summary["time"] = {
            "median": float(np.median(cohort.time)),
            "min": float(cohort.time.min()),
            "max": float(cohort.time.max()),
        }
    return summary


def check_cohort(path: str | Path, folds: int | None = None, test_fraction: float | None = None) -> CohortReport:
    """Validate a cohort folder, opening every table and every image.

    Args:
        path: cohort folder (or its cohort.yaml).
        folds: when given, also check each class has enough patients for this many folds.
        test_fraction: held-out share used with ``folds`` (default 0.2).

    Returns:
        The report; ``report.problems`` is empty when the cohort is valid.
    """
    report = CohortReport(path=Path(path))
    try:
        cohort, problems = collect_cohort(path, verify=True)
    except CohortError as exc:
        report.problems = exc.problems
        return report
    report.problems = list(problems)
    if cohort is None:
        return report
    report.summary = cohort_summary(cohort)
    report.warnings = [
        f"{name}: {warning}"
        for name, info in report.summary["modalities"].items()
        for warning in info.get("warnings", [])
    ]
    if folds is not None and not problems:
        fraction = _DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
        try:
            make_splits(cohort.y, folds, fraction, seed=0)
        except CohortError as exc:
            report.problems += exc.problems
    return report
