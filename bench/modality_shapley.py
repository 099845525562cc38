"""Benchmark: exact modality Shapley from cached embeddings versus shap's Exact explainer on raw inputs.

The batched path encodes each patient once and evaluates the 2^M coalitions with ``fuse`` in large batches.
The reference wraps the whole model (encoders included) as a function of a binary modality mask and explains
each patient with ``shap.explainers.Exact``; it is timed on a subset and extrapolated per patient.

Run: ``python bench/modality_shapley.py [--patients 10000] [--reference 50]`` (prints JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import shap
import torch

from clinfuse.config import EncoderConfig, FusionConfig
from clinfuse.encoders import encoder_spec
from clinfuse.explain.modality import model_modality_shapley
from clinfuse.fusion import build_model

# Realistic head sizes for tabular cohorts: embeddings of 32, a fusion head of 64, three modalities.
_FEATURES = {"clinical": 30, "genomic": 500, "pathology": 100}


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    specs = {
        "clinical": encoder_spec(
            "clinical", "vector", "mlp", EncoderConfig(embed_dim=32, hidden=[64]), {"in_features": 30}
        ),
        "genomic": encoder_spec(
            "genomic", "vector", "snn", EncoderConfig(embed_dim=32, hidden=[128]), {"in_features": 500}
        ),
        "pathology": encoder_spec(
            "pathology", "vector", "mlp", EncoderConfig(embed_dim=32, hidden=[64]), {"in_features": 100}
        ),
    }
    model = build_model(specs, FusionConfig(method="gated", hidden=64), n_outputs=1)
    with torch.no_grad():
        for parameter in model.missing.values():
            parameter.normal_()
    return model.eval()


def _data(n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(n, f, generator=generator) for m, f in _FEATURES.items()}
    present = torch.rand(n, len(_FEATURES), generator=generator) > 0.2
    present[:, 0] = True
    return inputs, present


def _shap_exact_raw(model: torch.nn.Module, inputs: dict[str, torch.Tensor], present: torch.Tensor) -> np.ndarray:
    """shap Exact on the mask game, re-running the encoders for every coalition (no cache)."""
    masker = shap.maskers.Independent(np.zeros((1, present.shape[1])))
    phi = np.zeros(present.shape, dtype=np.float64)
    for p in range(present.shape[0]):

        def game(masks: np.ndarray, p: int = p) -> np.ndarray:
            mask = torch.as_tensor(masks > 0.5)
            rows = {m: x[p : p + 1].expand(len(mask), -1) for m, x in inputs.items()}
            with torch.no_grad():
                return model(rows, present[p : p + 1] & mask).logits[:, 0].double().numpy()

        phi[p] = shap.explainers.Exact(game, masker)(np.ones((1, present.shape[1])), silent=True).values[0]
    return phi


def benchmark_modality_shapley(n_patients: int = 10000, n_reference: int = 50, seed: int = 0) -> dict[str, Any]:
    """Time batched exact modality Shapley for ``n_patients`` against shap Exact on raw inputs.

    Args:
        n_patients: patients explained by the batched path.
        n_reference: patients explained by shap (timed, then extrapolated to ``n_patients``).
        seed: seeds the model and the synthetic inputs.

    Returns:
        Seconds of both paths, the speed-up ratio and the largest disagreement on the reference patients.
    """
    model = _model(seed)
    inputs, present = _data(n_patients, seed + 1)
    subset = {m: x[:n_reference] for m, x in inputs.items()}
    _shap_exact_raw(model, subset, present[:2])  # compile shap's numba kernels outside the timing

    start = time.perf_counter()
    result = model_modality_shapley(model, (inputs, present))
    batched = time.perf_counter() - start

    start = time.perf_counter()
    reference = _shap_exact_raw(model, subset, present[:n_reference])
    per_patient = (time.perf_counter() - start) / n_reference

    efficiency = np.abs(result.phi.sum(1) - (result.f_x - result.f_empty)).max()
    return {
        "n_patients": n_patients,
        "n_modalities": present.shape[1],
        "batched_seconds": batched,
        "batched_seconds_per_patient": batched / n_patients,
        "reference_patients": n_reference,
        "reference_seconds_per_patient": per_patient,
        "reference_seconds_extrapolated": per_patient * n_patients,
        "speedup": per_patient * n_patients / batched,
        "max_abs_diff_vs_shap": float(np.abs(result.phi[:n_reference] - reference).max()),
        "max_efficiency_error": float(efficiency),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10000)
    parser.add_argument("--reference", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(benchmark_modality_shapley(args.patients, args.reference, args.seed), indent=2))


if __name__ == "__main__":
    main()
