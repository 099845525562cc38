"""A synthetic cohort whose truth is known: which modality carries how much signal, for which patient.

The label follows an additive logistic model over one independent latent per modality,
``logit = b + sum_m w_m f_m``. Each modality's kind writes its data with the latent planted in it (the image
kind: a lesion's radius and contrast; tabular: two numeric markers and the stage; genomic: a pathway of genes;
signal: the beat rate of an ECG-like trace). ``truth.json`` records the weights, the informative features, the
Bayes-optimal AUROC and each patient's true contribution ``w_m (f_m - mean f_m)``, so tests and benchmarks can
check what the models and the Shapley explanations recover.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score

from clinfuse.errors import CohortError
from clinfuse.kinds.registry import get_kind, list_kinds

DEFAULT_MODALITIES = {"imaging": "image", "clinical": "tabular", "genomic": "genomic"}
DEFAULT_WEIGHTS = {"imaging": 1.2, "clinical": 0.8, "genomic": 1.0}
_LABEL = "diagnosis"


def _validate(
    patients: int,
    spatial_dims: int,
    size: int,
    modalities: Mapping[str, str],
    uninformative: Sequence[str],
    missing_rate: Mapping[str, float],
    weights: Mapping[str, float] | None,
    voxel_spacing: tuple[float, float] | None = None,
) -> None:
    problems = []
    if voxel_spacing is not None and not 0 < voxel_spacing[0] <= voxel_spacing[1]:
        problems.append(f"voxel spacing range {voxel_spacing}: need 0 < lo <= hi (mm)")
    if patients < 4:
        problems.append(f"patients = {patients}: need at least 4")
    if spatial_dims not in (2, 3):
        problems.append(f"spatial_dims = {spatial_dims}: must be 2 or 3")
    if size < 8:
        problems.append(f"size = {size}: images need at least 8 pixels per axis")
    for name, kind in modalities.items():
        if kind not in list_kinds():
            problems.append(f"modality '{name}': kind {kind!r} unknown; choose from {', '.join(list_kinds())}")
    for name in [*uninformative, *missing_rate, *(weights or {})]:
        if name not in modalities:
            problems.append(f"modality '{name}': unknown; choose from {', '.join(modalities)}")
    for name, rate in missing_rate.items():
        if not 0.0 <= rate < 1.0:
            problems.append(f"missing rate of '{name}' = {rate}: must be in [0, 1)")
    if problems:
        raise CohortError.from_list(problems)


def _presence(rng: np.random.Generator, n: int, names: list[str], missing_rate: Mapping[str, float]) -> np.ndarray:
    """(n, M) presence; a patient who lost every modality gets one back so nobody is left with none."""
    rates = np.array([missing_rate.get(m, 0.0) for m in names])
    present = rng.random((n, len(names))) >= rates
    for i in np.flatnonzero(~present.any(axis=1)):
        present[i, rng.integers(len(names))] = True
    return present


def _add_label(out: Path, table: str, identifiers: int, y: np.ndarray) -> None:
    """Insert the label column after the id and identifier columns of a table listing every patient."""
    frame = pd.read_csv(out / table, dtype=str, keep_default_na=False)
    frame.insert(1 + identifiers, _LABEL, y)
    frame.to_csv(out / table, index=False)


def synthesize_cohort(
    out: str | Path,
    patients: int = 120,
    spatial_dims: int = 3,
    size: int = 24,
    seed: int = 0,
    uninformative: Sequence[str] = (),
    missing_rate: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    n_genes: int = 200,
    name: str = "synthetic",
    modalities: Mapping[str, str] | None = None,
    voxel_spacing: tuple[float, float] | None = None,
) -> Path:
    """Write a synthetic cohort folder with known truth (``truth.json``).

    Args:
        out: folder to write (created; existing files are overwritten).
        patients: number of patients.
        spatial_dims: 2 (PNG images) or 3 (NIfTI volumes).
        size: image side length in pixels/voxels.
        seed: random seed; the same arguments always write the same cohort.
        uninformative: modalities whose weight is set to 0 (their latent does not affect the label).
        missing_rate: modality -> share of patients lacking it (nobody lacks all of them).
        weights: modality -> logit weight, overriding the defaults (imaging 1.2, clinical 0.8, genomic 1.0,
            any other modality 1.0).
        n_genes: genes of a genomic modality (10 of them form the informative pathway).
        name: cohort name written into cohort.yaml.
        modalities: modality name -> registered kind, in cohort order (default imaging, clinical, genomic);
            e.g. add ``{"ecg": "signal"}`` for a fourth kind.
        voxel_spacing: ``(lo, hi)`` mm: every 3D volume gets its own spacing per axis drawn from this range and a
            grid covering ``size`` mm (default: 1 mm isotropic, ``size`` voxels); lesion sizes are in mm.

    Returns:
        The cohort folder.
    """
    modalities = dict(modalities or DEFAULT_MODALITIES)
    missing_rate = dict(missing_rate or {})
    _validate(patients, spatial_dims, size, modalities, uninformative, missing_rate, weights, voxel_spacing)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(modalities)
    w = {m: DEFAULT_WEIGHTS.get(m, 1.0) for m in names} | dict(weights or {})
    for m in uninformative:
        w[m] = 0.0
    latents = {m: rng.standard_normal(patients) for m in names}
    logit = sum(w[m] * latents[m] for m in names)
    prob = 1.0 / (1.0 + np.exp(-logit))
    y = (rng.random(patients) < prob).astype(int)
    present = _presence(rng, patients, names, missing_rate)
    ids = [f"S{i:04d}" for i in range(1, patients + 1)]

    # Kinds generate in a fixed order (not cohort order) so adding a modality never changes the others' draws.
    order = sorted(range(len(names)), key=lambda k: (get_kind(modalities[names[k]]).synthesis_order, k))
    options = {"spatial_dims": spatial_dims, "size": size, "n_genes": n_genes, "voxel_spacing": voxel_spacing}
    results, seen = {}, dict.fromkeys(modalities.values(), 0)
    for k in order:
        m = names[k]
        kind = get_kind(modalities[m])
        results[m] = kind.synthesize(
            m, out, latents[m], present[:, k], ids, rng, options | {"ordinal": seen[kind.name]}
        )
        seen[kind.name] += 1
    label_table = next((results[names[k]] for k in order if results[names[k]].table), None)
    if label_table is not None:
        _add_label(out, label_table.table, len(label_table.entry.get("identifiers", [])), y)
        label_file = label_table.table
    else:
        label_file = "labels.csv"
        pd.DataFrame({"patient_id": ids, _LABEL: y}).to_csv(out / label_file, index=False)

    spec = {
        "name": name,
        "id_column": "patient_id",
        "label": {"table": label_file, "column": _LABEL, "task": "binary", "positive": 1},
        "modalities": {m: results[m].entry for m in names},
    }
    (out / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    contributions = {m: w[m] * (latents[m] - latents[m].mean()) for m in names}
    truth = {
        "seed": seed,
        "weights": w,
        "intercept": 0.0,
        "informative": {m: results[m].informative for m in names},
        "missing_rate": {m: missing_rate.get(m, 0.0) for m in names},
        "prevalence": float(y.mean()),
        "bayes_auroc": float(roc_auc_score(y, prob)) if 0 < y.sum() < patients else None,
        "contributions": {pid: {m: float(contributions[m][i]) for m in names} for i, pid in enumerate(ids)},
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return out


def ensure_demo_cohort(path: str | Path) -> Path:
    """The demo cohort (160 patients, 3D 24^3 images, some missing modalities), written when absent.

    Every modality carries a clear signal (logit weight 1.5 each, Bayes-optimal AUROC about 0.9) so that the
    demo's comparison can show what fusion adds over each modality alone.
    """
    path = Path(path)
    if not (path / "cohort.yaml").is_file():
        synthesize_cohort(
            path,
            patients=160,
            spatial_dims=3,
            size=24,
            seed=0,
            missing_rate={"imaging": 0.1, "genomic": 0.2},
            weights={"imaging": 1.5, "clinical": 1.5, "genomic": 1.5},
            name="demo",
        )
    return path
