"""Geometry of an image modality: what ``cohort check`` reports and warns about, and the ``auto`` spacing.

Summaries hold distributions only (counts, medians and ranges), never a path or a patient id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from clinfuse.cohort.image_files import Geometry

THICK_SLICE_MM = 5.0
SPACING_RATIO = 3.0


def overlap_problem(geometries: Sequence[Geometry], columns: Sequence[str], where: str) -> str | None:
    """A problem line when the channels of one patient share no point in space, else None."""
    if len(geometries) < 2 or any(g.axcodes is None for g in geometries):
        return None
    boxes = [g.bounds() for g in geometries]
    low = np.max([b[0] for b in boxes], axis=0)
    high = np.min([b[1] for b in boxes], axis=0)
    if np.all(low <= high):
        return None
    return (
        f"{where}: channels {', '.join(columns)} do not overlap in space (world bounding boxes are disjoint); "
        "check that they belong to the same study"
    )


def _stats(values: np.ndarray) -> dict[str, list[float]]:
    return {
        "median": [round(float(v), 3) for v in np.median(values, axis=0)],
        "min": [round(float(v), 3) for v in values.min(axis=0)],
        "max": [round(float(v), 3) for v in values.max(axis=0)],
    }


def geometry_summary(geometries: Sequence[Geometry]) -> dict[str, Any]:
    """Distributions of spacing, orientation and field of view (first channel of each patient) and warnings."""
    if not geometries:
        return {}
    rank = Counter(len(g.spacing) for g in geometries).most_common(1)[0][0]
    same = [g for g in geometries if len(g.spacing) == rank]
    spacing = np.array([g.spacing for g in same])
    fov = np.array([g.field_of_view for g in same])
    orientations = Counter(g.axcodes or "none" for g in geometries)
    summary: dict[str, Any] = {
        "spacing_mm": _stats(spacing),
        "fov_mm": _stats(fov),
        "orientations": dict(orientations.most_common()),
    }
    warnings = []
    if rank == 3:
        thick = int((spacing.max(axis=1) > THICK_SLICE_MM).sum())
        if thick:
            warnings.append(
                f"{thick} image(s) with slices thicker than {THICK_SLICE_MM:g} mm: small lesions may be missed"
            )
    if len(orientations) > 1:
        warnings.append(
            "mixed orientations (" + ", ".join(f"{k} x{v}" for k, v in orientations.items()) + "): they are "
            "reoriented to inputs.<modality>.orientation; check the headers are right"
        )
    median = np.median(spacing, axis=0)
    ratio = np.maximum(spacing / median, median / spacing).max(axis=1)
    outliers = int((ratio > SPACING_RATIO).sum())
    if outliers:
        warnings.append(
            f"{outliers} image(s) with a spacing more than {SPACING_RATIO:g}x from the median "
            f"{[round(float(m), 3) for m in median]} mm: resampling will blur or alias them"
        )
    summary["warnings"] = warnings
    return summary


def auto_spacing(geometries: Sequence[Geometry], orientation: str, size: list[int]) -> tuple[list[float], str]:
    """The median spacing (in the target orientation), coarsened per axis so the median field of view fits.

    Returns:
        The spacing in mm per axis and a sentence saying how it was chosen.
    """
    spacing = np.array([g.spacing_in(orientation) for g in geometries])
    fov = np.array([g.along(g.field_of_view, orientation) for g in geometries])
    median_spacing = np.median(spacing, axis=0)
    median_fov = np.median(fov, axis=0)
    chosen = np.maximum(median_spacing, median_fov / np.asarray(size, dtype=float))
    text = (
        f"resampled to {[round(float(c), 3) for c in chosen]} mm (spacing auto: median of the cohort's "
        f"{len(geometries)} images {[round(float(m), 3) for m in median_spacing]} mm, coarsened where needed so "
        f"the median field of view {[round(float(f), 1) for f in median_fov]} mm fits in {list(size)} voxels "
        "(headers only, no labels: one cache serves every fold))"
    )
    return [round(float(c), 4) for c in chosen], text
