"""A cohort restricted to the modalities an experiment uses."""

from __future__ import annotations

import dataclasses

import numpy as np

from clinfuse.cohort import Cohort, Exclusion


def restrict_to_modalities(cohort: Cohort, modalities: list[str]) -> Cohort:
    """Keep ``modalities`` and the patients who have at least one of them.

    Patients left without any used modality are excluded and counted (never dropped silently).
    """
    if modalities == cohort.modality_names:
        return cohort
    columns = [cohort.modality_names.index(m) for m in modalities]
    keep = cohort.presence[:, columns].any(axis=1)
    rows = np.flatnonzero(keep)
    kept = {name: cohort.modalities[name].take(rows) for name in modalities}
    exclusions = list(cohort.exclusions)
    dropped = int((~keep).sum())
    if dropped:
        exclusions.append(Exclusion("config modalities", f"no data for any of {', '.join(modalities)}", dropped))
    return dataclasses.replace(
        cohort,
        patient_ids=[cohort.patient_ids[i] for i in rows],
        y=cohort.y[rows],
        time=None if cohort.time is None else cohort.time[rows],
        modalities=kept,
        presence=cohort.presence[rows][:, columns],
        exclusions=exclusions,
    )
