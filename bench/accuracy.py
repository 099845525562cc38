"""Benchmark: test AUROC of a real ``clinfuse`` run as a share of the Bayes-optimal AUROC, and its wall time.

A synthetic cohort knows each patient's true logit (``truth.json``: the per-modality contributions sum to it up
to a constant), so the best any model can do on the held-out test patients is the AUROC of that logit. The run
goes through ``pipeline.run_experiment`` (tracking into a temporary MLflow store) with explanations and the
report switched off: the figure is the time to a trained, evaluated model.

Run: ``python bench/accuracy.py [--patients 1000] [--epochs 15] [--seeds 0 1 2]`` (prints JSON).
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
from sklearn.metrics import roc_auc_score

from clinfuse.cohort import load_cohort, make_splits
from clinfuse.cohort.synthetic import synthesize_cohort
from clinfuse.config import validate_config
from clinfuse.pipeline.experiment import run_experiment


def _config(cohort: Path, size: int, epochs: int, folds: int, encoder: str | None) -> dict[str, Any]:
    return {
        "name": "bench_accuracy",
        "cohort": str(cohort),
        "encoders": {
            "imaging": {"name": encoder, "embed_dim": 16},
            "clinical": {"embed_dim": 16, "hidden": [32]},
            "genomic": {"embed_dim": 16, "hidden": [64], "top_k_genes": 100},
        },
        "fusion": {"method": "gated", "hidden": 32},
        "training": {
            "epochs": epochs,
            "batch_size": 32,
            "lr": 2e-3,
            "image_size": [size, size],
            "early_stopping": {"patience": 5},
        },
        "evaluation": {"folds": folds, "test_fraction": 0.3, "bootstrap": 200},
        "explain": {"enabled": False},
        "report": {"enabled": False},
        "tracking": {"log_model": False},
    }


def benchmark_accuracy(
    patients: int = 1000,
    size: int = 32,
    epochs: int = 15,
    folds: int = 3,
    seeds: list[int] | None = None,
    encoder: str | None = None,
) -> dict[str, Any]:
    """Test AUROC as a share of the Bayes-optimal AUROC, averaged over synthetic cohorts drawn with ``seeds``.

    One cohort is one draw: on 1,000 patients the share moves by several points between seeds (0.84-0.92 on
    the same recipe), so the headline is the mean over draws and the spread is reported beside it.

    Args:
        patients: cohort size (30% held out for test).
        size: image side in pixels.
        epochs: maximum epochs per fold (early stopping may end sooner).
        folds: cross-validation folds (the test prediction is their ensemble).
        seeds: each seeds one cohort and its run (default ``[0, 1, 2]``).
        encoder: the image encoder (None: the image kind's default for the input size).

    The classical baselines of every run (same folds and test patients) are reported beside the primary model.
    """
    chosen = seeds if seeds is not None else [0, 1, 2]
    runs = [_one_cohort(patients, size, epochs, folds, seed, encoder) for seed in chosen]
    shares = [run["auroc_share_of_bayes"] for run in runs]
    classical = sorted({name for run in runs for name in run["classical_test_auroc"]})
    return {
        "patients": patients,
        "image": f"{size}^2",
        "folds": folds,
        "max_epochs": epochs,
        "cohorts": len(runs),
        "auroc_share_of_bayes": float(np.mean(shares)),
        "auroc_share_of_bayes_min": float(np.min(shares)),
        "auroc_share_of_bayes_max": float(np.max(shares)),
        "encoder": encoder or "default",
        "classical_share_of_bayes": {
            name: float(np.mean([run["classical_test_auroc"][name] / run["bayes_test_auroc"] for run in runs]))
            for name in classical
        },
        "wall_seconds_mean": float(np.mean([run["wall_seconds"] for run in runs])),
        "runs": runs,
    }


def _benchmark_cohort(folder: Path, patients: int, size: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """One draw of the benchmark's synthetic cohort and its truth (the deep and classical runs share it)."""
    root = synthesize_cohort(
        folder / "cohort",
        patients=patients,
        spatial_dims=2,
        size=size,
        seed=seed,
        missing_rate={"genomic": 0.2, "imaging": 0.1},
    )
    return root, json.loads((root / "truth.json").read_text())


def _one_cohort(patients: int, size: int, epochs: int, folds: int, seed: int, encoder: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root, truth = _benchmark_cohort(Path(tmp), patients, size, seed)
        config = validate_config(_config(root, size, epochs, folds, encoder))
        config.seed = seed
        previous = Path.cwd()
        os.chdir(tmp)  # the MLflow store, reports/ and the salt go to the temporary folder
        try:
            start, start_cpu = time.perf_counter(), time.process_time()
            outcome = run_experiment(config, project_dir=Path(tmp))
            seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        finally:
            os.chdir(previous)
        cohort = load_cohort(root)
    splits = make_splits(cohort.y, folds, 0.3, seed)
    test = splits.test
    true_logit = np.array([sum(truth["contributions"][cohort.patient_ids[i]].values()) for i in test])
    bayes = float(roc_auc_score(cohort.y[test], true_logit))
    auroc = float(outcome.metrics["gated"]["test"]["auroc"])
    return {
        "seed": seed,
        "test_patients": len(test),
        "test_auroc": auroc,
        "bayes_test_auroc": bayes,
        "bayes_cohort_auroc": truth["bayes_auroc"],
        "auroc_share_of_bayes": auroc / bayes,
        "classical_test_auroc": {
            name: float(m["test"]["auroc"]) for name, m in outcome.metrics.items() if m["kind"] == "classical"
        },
        "wall_seconds": seconds,
        "cpu_seconds": cpu,
    }


def classical_only(patients: int = 1000, size: int = 16, folds: int = 3, seeds: list[int] | None = None) -> dict:
    """The classical baselines alone on the benchmark's cohorts, folds and test patients (seconds, not minutes):
    test AUROC as a share of Bayes and CPU seconds per cohort, to set beside a full run's figures."""
    from clinfuse.training.classical import classical_plans, train_classical
    from clinfuse.training.data import prepare_inputs
    from clinfuse.training.loop import evaluate_scores, scores_from_logits

    runs = []
    for seed in seeds if seeds is not None else [0, 1, 2]:
        with tempfile.TemporaryDirectory() as tmp:
            root, truth = _benchmark_cohort(Path(tmp), patients, size, seed)
            config = validate_config(_config(root, size, 1, folds, None))
            config.seed = seed
            cohort = load_cohort(root)
            splits = make_splits(cohort.y, folds, 0.3, seed)
            test = splits.test
            true_logit = np.array([sum(truth["contributions"][cohort.patient_ids[i]].values()) for i in test])
            bayes = float(roc_auc_score(cohort.y[test], true_logit))
            prepared = prepare_inputs(cohort, cohort.modality_names, config, Path(tmp) / "cache")
            row: dict[str, Any] = {"seed": seed, "bayes_test_auroc": bayes}
            for plan in classical_plans(config, cohort.modality_names, cohort.task):
                start = time.process_time()
                model = train_classical(plan, cohort, config, splits, prepared)
                scores = scores_from_logits(model.test.logits, cohort.task)
                auroc = evaluate_scores(cohort.task, cohort.y[test], scores, model.threshold)["auroc"]
                row[plan.name] = {"test_auroc": auroc, "share_of_bayes": auroc / bayes}
                row[plan.name]["cpu_seconds"] = time.process_time() - start
            runs.append(row)
    names = [k for k in runs[0] if isinstance(runs[0][k], dict)]
    return {
        "patients": patients,
        "image": f"{size}^2",
        "share_of_bayes": {n: float(np.mean([r[n]["share_of_bayes"] for r in runs])) for n in names},
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--encoder", default=None, help="image encoder (default: the image kind's choice)")
    parser.add_argument("--classical-only", action="store_true", help="only the classical baselines (seconds)")
    args = parser.parse_args()
    if args.classical_only:
        print(json.dumps(classical_only(args.patients, args.size, args.folds, args.seeds), indent=2))
        return
    result = benchmark_accuracy(args.patients, args.size, args.epochs, args.folds, args.seeds, args.encoder)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
