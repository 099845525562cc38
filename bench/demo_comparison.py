"""Benchmark: the demo config's full comparison on an 800-patient 24³ cohort, wall time and accuracy (issue 18).

``configs/demo.yaml`` with only the cohort path changed (gated and concat fusion, each modality alone, the
classical baselines; explanations and the report off: the figure is the time to the evaluated comparison) on
a synthetic 3D cohort with known truth. The same cohort and splits can be run with the earlier recipe
(``--recipe previous``: resnet10 image encoder, Pathomic Fusion's gated head with projected embeddings, gates
from 0.5 and no skip read-out) so the right-sized defaults are compared with what they replaced on equal terms.

Run: ``python bench/demo_comparison.py [--patients 800] [--size 24] [--seed 7] [--recipe default|previous]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from common import BENCH_DIR
from sklearn.metrics import roc_auc_score

from clinfuse.cohort.synthetic import synthesize_cohort
from clinfuse.config import validate_config
from clinfuse.pipeline.experiment import run_experiment

DEMO_CONFIG = BENCH_DIR.parent / "configs" / "demo.yaml"
# What the demo config trained before the right-sized defaults (issue 18), for the side-by-side figure.
PREVIOUS_RECIPE = {
    "encoders": {"imaging": {"name": "resnet10"}},
    "fusion": {"skip": False, "project": True, "gate_init": 0.5},
}


def _demo_config(cohort: Path, recipe: str, compare: list[str] | None, epochs: int | None) -> dict[str, Any]:
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["cohort"] = str(cohort)
    data["explain"] = {"enabled": False}
    data["report"] = {"enabled": False}
    data["tracking"] = {"log_model": False}
    data["privacy"] = {"pseudonymise": False}  # ids stay raw inside the temporary folder to look up the truth
    if compare is not None:
        data["compare"] = compare
    if epochs is not None:
        data["training"]["epochs"] = epochs
    if recipe == "previous":
        for section, values in PREVIOUS_RECIPE.items():
            for key, value in values.items():
                target = data.setdefault(section, {})
                if isinstance(value, dict):
                    target.setdefault(key, {}).update(value)
                else:
                    target[key] = value
    return data


def benchmark_demo_comparison(
    patients: int = 800,
    size: int = 24,
    seed: int = 7,
    recipe: str = "default",
    compare: list[str] | None = None,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Wall and CPU time of the demo comparison and each model's test AUROC as a share of Bayes.

    Args:
        patients: cohort size (the demo config holds out 25% for test).
        size: volume side in voxels (3D, 1 mm isotropic; the demo config crops/resamples to 16³).
        seed: cohort draw (the run's seed stays the config's).
        recipe: ``default`` (the config as shipped) or ``previous`` (the recipe it replaced).
        compare: override the config's ``compare`` (None: as shipped, the full comparison).
        epochs: override ``training.epochs`` (None: as shipped; the smoke test uses 1).
    """
    if recipe not in ("default", "previous"):
        raise ValueError(f"recipe must be default or previous, got {recipe!r}")
    with tempfile.TemporaryDirectory() as tmp:
        root = synthesize_cohort(
            Path(tmp) / "cohort",
            patients=patients,
            size=size,
            seed=seed,
            missing_rate={"imaging": 0.1, "genomic": 0.2},
        )
        truth = json.loads((root / "truth.json").read_text())
        config = validate_config(_demo_config(root, recipe, compare, epochs))
        previous = Path.cwd()
        os.chdir(tmp)  # the MLflow store, reports/ and the salt go to the temporary folder
        try:
            start, start_cpu = time.perf_counter(), time.process_time()
            outcome = run_experiment(config, project_dir=Path(tmp))
            seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        finally:
            os.chdir(previous)
        predictions = pd.read_csv(outcome.run_dir / "predictions.csv")
    test = predictions[(predictions["fold"] == "test") & (predictions["model"] == predictions["model"].iloc[0])]
    true_logit = np.array([sum(truth["contributions"][p].values()) for p in test["patient"]])
    bayes = float(roc_auc_score(test["label"], true_logit))
    aurocs = {name: float(m["test"]["auroc"]) for name, m in outcome.metrics.items()}
    kinds = {name: m["kind"] for name, m in outcome.metrics.items()}
    primary = next(iter(aurocs))
    classical = {n: a for n, a in aurocs.items() if kinds[n] == "classical"}
    best_classical = max(classical, key=classical.__getitem__) if classical else None
    return {
        "patients": patients,
        "image": f"{size}^3",
        "recipe": recipe,
        "models": len(aurocs),
        "wall_seconds": seconds,
        "cpu_seconds": cpu,
        "bayes_test_auroc": bayes,
        "primary": primary,
        "primary_test_auroc": aurocs[primary],
        "primary_share_of_bayes": aurocs[primary] / bayes,
        "best_classical": best_classical,
        "primary_minus_best_classical": None if best_classical is None else aurocs[primary] - classical[best_classical],
        "test_auroc": aurocs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=800)
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--recipe", choices=["default", "previous"], default="default")
    args = parser.parse_args()
    print(json.dumps(benchmark_demo_comparison(args.patients, args.size, args.seed, args.recipe), indent=2))


if __name__ == "__main__":
    main()
