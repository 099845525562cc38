"""A synthetic cohort whose truth is known: which modality carries how much signal, for which patient.

The label follows an additive logistic model over one independent latent per modality,
``logit = b + sum_m w_m f_m``. The image latent sets a lesion's radius and contrast, the clinical latent
is spread over two numeric markers and the stage, the genomic latent shifts a pathway of genes.
``truth.json`` records the weights, the informative columns, the Bayes-optimal AUROC and each patient's
true contribution ``w_m (f_m - mean f_m)``, so tests and benchmarks can check what the models and the
Shapley explanations recover.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml
from PIL import Image
from sklearn.metrics import roc_auc_score

from clinfuse.errors import CohortError

MODALITIES = ("imaging", "clinical", "genomic")
DEFAULT_WEIGHTS = {"imaging": 1.2, "clinical": 0.8, "genomic": 1.0}
_STAGES = np.array(["I", "II", "III", "IV"])
_PATHWAY_SIZE = 10


def _validate(
    patients: int,
    spatial_dims: int,
    size: int,
    uninformative: Sequence[str],
    missing_rate: Mapping[str, float],
    weights: Mapping[str, float] | None,
) -> None:
    problems = []
    if patients < 4:
        problems.append(f"patients = {patients}: need at least 4")
    if spatial_dims not in (2, 3):
        problems.append(f"spatial_dims = {spatial_dims}: must be 2 or 3")
    if size < 8:
        problems.append(f"size = {size}: images need at least 8 pixels per axis")
    for name in [*uninformative, *missing_rate, *(weights or {})]:
        if name not in MODALITIES:
            problems.append(f"modality '{name}': unknown; choose from {', '.join(MODALITIES)}")
    for name, rate in missing_rate.items():
        if not 0.0 <= rate < 1.0:
            problems.append(f"missing rate of '{name}' = {rate}: must be in [0, 1)")
    if problems:
        raise CohortError.from_list(problems)


def _presence(rng: np.random.Generator, n: int, missing_rate: Mapping[str, float]) -> np.ndarray:
    """(n, 3) presence; a patient who lost every modality gets one back so nobody is left with none."""
    rates = np.array([missing_rate.get(m, 0.0) for m in MODALITIES])
    present = rng.random((n, len(MODALITIES))) >= rates
    for i in np.flatnonzero(~present.any(axis=1)):
        present[i, rng.integers(len(MODALITIES))] = True
    return present


def _lesion_images(rng: np.random.Generator, latent: np.ndarray, spatial_dims: int, size: int) -> np.ndarray:
    """(n, *spatial) noisy backgrounds with one bright ball whose radius and contrast grow with the latent."""
    grid = np.stack(np.meshgrid(*[np.arange(size, dtype=np.float32)] * spatial_dims, indexing="ij"))
    images = np.empty((len(latent), *[size] * spatial_dims), dtype=np.float32)
    for i, f in enumerate(latent):
        radius = size * (0.17 + 0.08 * np.tanh(f))
        contrast = 1.0 + 0.5 * np.tanh(f)
        margin = radius + 1
        centre = rng.uniform(margin, size - 1 - margin, size=spatial_dims).astype(np.float32)
        distance = np.sqrt(((grid - centre.reshape(-1, *[1] * spatial_dims)) ** 2).sum(axis=0))
        ball = np.clip(radius + 0.5 - distance, 0.0, 1.0)  # soft edge: partial-volume like a real scan
        images[i] = 0.2 + 0.25 * rng.standard_normal(images.shape[1:]) + contrast * ball
    return images


def _write_images(out: Path, numbers: list[int], images: np.ndarray, spatial_dims: int) -> list[str]:
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    # Files are numbered, not named after patients, so paths printed in messages carry no patient id.
    for number, image in zip(numbers, images, strict=True):
        if spatial_dims == 3:
            name = f"images/img{number:04d}.nii.gz"
            nib.save(nib.Nifti1Image(image, np.eye(4)), out / name)
        else:
            name = f"images/img{number:04d}.png"
            pixels = np.clip((image + 0.5) / 2.5 * 255, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(out / name)
        paths.append(name)
    return paths


def _clinical(rng: np.random.Generator, latent: np.ndarray) -> pd.DataFrame:
    n = len(latent)
    stage_score = latent + 0.7 * rng.standard_normal(n)
    stage = _STAGES[np.digitize(stage_score, np.quantile(stage_score, [0.25, 0.5, 0.75]))]
    age = np.round(rng.normal(62, 9, n), 0)
    age[rng.random(n) < 0.08] = np.nan  # realistic gaps exercise imputation and missingness indicators
    return pd.DataFrame(
        {
            "age": age,
            "sex": rng.choice(["F", "M"], n),
            "stage": stage,
            "marker_a": np.round(latent + 0.5 * rng.standard_normal(n), 4),
            "marker_b": np.round(10 + 2 * latent + rng.standard_normal(n), 4),
            "bmi": np.round(rng.normal(26, 4, n), 2),
        }
    )


def _genomic(rng: np.random.Generator, latent: np.ndarray, n_genes: int) -> tuple[pd.DataFrame, list[str]]:
    genes = [f"G{g:04d}" for g in range(1, n_genes + 1)]
    pathway = sorted(rng.choice(n_genes, size=min(_PATHWAY_SIZE, n_genes), replace=False).tolist())
    log_mean = rng.uniform(1.0, 7.0, n_genes)
    log_expr = log_mean + 0.5 * rng.standard_normal((len(latent), n_genes))
    log_expr[:, pathway] += 0.8 * latent[:, None]
    # Count-like expression spanning orders of magnitude, as RNA-seq is; preprocessing decides on log1p.
    return pd.DataFrame(np.round(np.exp(log_expr), 2), columns=genes), [genes[g] for g in pathway]


def _cohort_yaml(name: str, spatial_dims: int) -> dict:
    return {
        "name": name,
        "id_column": "patient_id",
        "label": {"table": "clinical.csv", "column": "diagnosis", "task": "binary", "positive": 1},
        "modalities": {
            "imaging": {
                "type": "image",
                "index": "images.csv",
                "path_column": "path",
                "spatial_dims": spatial_dims,
            },
            "clinical": {
                "type": "tabular",
                "table": "clinical.csv",
                "categorical": ["sex", "stage"],
                "identifiers": ["mrn"],
            },
            "genomic": {"type": "genomic", "table": "genomic.csv"},
        },
    }


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
) -> Path:
    """Write a synthetic cohort folder with known truth (``truth.json``).

    Args:
        out: folder to write (created; existing files are overwritten).
        patients: number of patients.
        spatial_dims: 2 (PNG images) or 3 (NIfTI volumes).
        size: image side length in pixels/voxels.
        seed: random seed; the same arguments always write the same cohort.
        uninformative: modalities whose weight is set to 0 (their latent does not affect the label).
        missing_rate: modality -> share of patients lacking it (nobody lacks all three).
        weights: modality -> logit weight, overriding the defaults (imaging 1.2, clinical 0.8, genomic 1.0).
        n_genes: genes in genomic.csv (10 of them form the informative pathway).
        name: cohort name written into cohort.yaml.

    Returns:
        The cohort folder.
    """
    missing_rate = dict(missing_rate or {})
    _validate(patients, spatial_dims, size, uninformative, missing_rate, weights)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    for m in uninformative:
        w[m] = 0.0
    latents = {m: rng.standard_normal(patients) for m in MODALITIES}
    logit = sum(w[m] * latents[m] for m in MODALITIES)
    prob = 1.0 / (1.0 + np.exp(-logit))
    y = (rng.random(patients) < prob).astype(int)
    present = _presence(rng, patients, missing_rate)
    ids = [f"S{i:04d}" for i in range(1, patients + 1)]

    clinical = _clinical(rng, latents["clinical"])
    clinical.loc[~present[:, 1]] = np.nan  # row kept for the label, but no clinical data: modality absent
    clinical.insert(0, "diagnosis", y)
    clinical.insert(0, "mrn", [f"MRN{rng.integers(10**6, 10**7)}" for _ in ids])
    clinical.insert(0, "patient_id", ids)
    clinical.to_csv(out / "clinical.csv", index=False)

    genomic, pathway = _genomic(rng, latents["genomic"], n_genes)
    genomic.insert(0, "patient_id", ids)
    genomic[present[:, 2]].to_csv(out / "genomic.csv", index=False)
    groups = [(g, "pathway") for g in pathway] + [
        (g, f"set{i % 5}") for i, g in enumerate(genomic.columns[1:]) if g not in pathway
    ]
    pd.DataFrame(groups, columns=["gene", "group"]).to_csv(out / "gene_groups.csv", index=False)

    keep = np.flatnonzero(present[:, 0])
    images = _lesion_images(rng, latents["imaging"][keep], spatial_dims, size)
    paths = _write_images(out, [int(i) + 1 for i in keep], images, spatial_dims)
    pd.DataFrame({"patient_id": [ids[i] for i in keep], "path": paths}).to_csv(out / "images.csv", index=False)

    (out / "cohort.yaml").write_text(yaml.safe_dump(_cohort_yaml(name, spatial_dims), sort_keys=False))
    contributions = {m: w[m] * (latents[m] - latents[m].mean()) for m in MODALITIES}
    truth = {
        "seed": seed,
        "weights": w,
        "intercept": 0.0,
        "informative": {
            "imaging": ["lesion radius", "lesion contrast"],
            "clinical": ["marker_a", "marker_b", "stage"],
            "genomic": pathway,
        },
        "missing_rate": {m: missing_rate.get(m, 0.0) for m in MODALITIES},
        "prevalence": float(y.mean()),
        "bayes_auroc": float(roc_auc_score(y, prob)) if 0 < y.sum() < patients else None,
        "contributions": {pid: {m: float(contributions[m][i]) for m in MODALITIES} for i, pid in enumerate(ids)},
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
