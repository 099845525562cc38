"""Usefulness beside influence: SAGE of the primary model's modalities on held-out patients, and the flags.

Modality Shapley values (``contributions.csv``) say how much each modality moves the model's output:
influence. SAGE (:mod:`clinfuse.explain.sage`) says how much each modality lowers the model's loss on patients
it never trained on: usefulness. A modality with large influence whose usefulness CI includes 0 is one the
model reacts to without being helped by it, likely noise it fitted; those are flagged here, and the pipeline
can retrain the model without them (:mod:`clinfuse.pipeline.ablation`).

The fold ensemble predicts with the mean logit of its fold models, and a loss is not linear in the logit, so
the ensemble's SAGE is computed from the mean of the folds' coalition outputs (never the mean of their SAGE
values). Each fold model is also scored on its own validation patients.

This module writes ``modality_importance.json`` and ``modality_importance.csv`` (named in :mod:`clinfuse.outputs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinfuse import outputs
from clinfuse.cohort import Cohort, Splits
from clinfuse.config import ExperimentConfig
from clinfuse.explain import ModalityShapley
from clinfuse.explain.coalition_outputs import CoalitionOutputs, average_coalition_outputs, model_coalition_outputs
from clinfuse.explain.sage import ModalityImportance, influence_without_usefulness, modality_importance
from clinfuse.pipeline.artifacts import write_json
from clinfuse.tracking import log_final_metrics
from clinfuse.training.data import PatientDataset, make_loader
from clinfuse.training.run import FoldModel, TrainedModel

GAMES = ("loss", "metric")
# A modality counts as influential when its mean |phi| exceeds this share of the top modality's.
INFLUENCE_RATIO = 1 / 3
FLAG_RULE = (
    "flagged when the modality's mean |phi| exceeds 1/3 of the top modality's while its loss-based SAGE CI "
    "on the held-out test patients does not lie above 0"
)


@dataclass
class Usefulness:
    """Usefulness (SAGE) and influence (mean |phi|) of each modality of one model.

    Args:
        model: the model's name.
        test: game (``loss``, ``metric``) -> SAGE of the fold ensemble on the held-out test patients.
        folds: per fold, game -> SAGE of that fold's model on its validation patients.
        influence: modality -> mean |phi| (logit units) over the explained test patients.
        flags: modality -> plain-words sentence, for modalities influential but not useful.
    """

    model: str
    test: dict[str, ModalityImportance]
    folds: list[dict[str, ModalityImportance]]
    influence: dict[str, float]
    flags: dict[str, str]

    @property
    def modalities(self) -> list[str]:
        return list(self.test["loss"].modalities)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``modality_importance.json``)."""
        return {
            "model": self.model,
            "usefulness": (
                "SAGE: the Shapley value of each modality in the game 'reduction of the model's test loss (or "
                "gain in its metric) when this set of modalities is present'; positive means the modality makes "
                "predictions on held-out patients better"
            ),
            "influence": "mean |phi|: how much the modality moves the model's logit, whether or not that helps",
            "flag_rule": FLAG_RULE,
            "test": {game: importance.to_dict() for game, importance in self.test.items()},
            "folds": [
                {"fold": k, **{game: importance.to_dict() for game, importance in games.items()}}
                for k, games in enumerate(self.folds)
            ],
            "mean_abs_phi": {m: float(v) for m, v in self.influence.items()},
            "flags": dict(self.flags),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per scope (``test``, ``fold<k>``), game and modality (``modality_importance.csv``)."""
        frames = []
        scopes = [("test", self.test), *((f"fold{k}", games) for k, games in enumerate(self.folds))]
        for scope, games in scopes:
            for game, importance in games.items():
                frame = importance.to_frame()
                frame.insert(0, "game", game)
                frame.insert(0, "scope", scope)
                frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        table["mean_abs_phi"] = table["modality"].map(self.influence)
        table["flagged"] = table["modality"].isin(list(self.flags))
        return table

    def summary(self) -> dict[str, Any]:
        """The part of ``modality_summary.json`` that sits beside the Shapley means."""
        loss = self.test["loss"]
        return {
            "usefulness": {
                m: {
                    "sage_loss": _number(loss.values[k]),
                    "ci_low": _number(loss.ci_low[k]),
                    "ci_high": _number(loss.ci_high[k]),
                    "unit": loss.unit,
                }
                for k, m in enumerate(loss.modalities)
            },
            "influence_without_usefulness": dict(self.flags),
        }


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _fold_outputs(fold: FoldModel, trained: TrainedModel, cohort: Cohort, indices: np.ndarray) -> CoalitionOutputs:
    """One fold model's coalition outputs on ``indices``, with the preprocessing fitted on its training patients."""
    dataset = PatientDataset(indices, cohort, list(trained.plan.modalities), fold.inputs)
    outputs = model_coalition_outputs(fold.model, make_loader(dataset, 256, False, 0))
    if outputs.index is not None and not np.array_equal(outputs.index, indices):
        raise RuntimeError("coalition outputs came back in another patient order than asked")
    return outputs


def _games(outputs: CoalitionOutputs, cohort: Cohort, indices: np.ndarray, config: ExperimentConfig) -> dict:
    time = None if cohort.time is None else cohort.time[indices]
    return {
        game: modality_importance(
            outputs,
            cohort.y[indices],
            task=cohort.task,  # type: ignore[arg-type]
            time=time,
            game=game,  # type: ignore[arg-type]
            n_boot=config.evaluation.bootstrap,
            level=config.evaluation.ci_level,
            seed=config.seed,
        )
        for game in GAMES
    }


def flag_modalities(importance: ModalityImportance, influence: dict[str, float]) -> dict[str, str]:
    """Modalities influential but not useful; none when the importance has no CIs (``bootstrap: 0``)."""
    if not (np.isfinite(importance.ci_low).all() and np.isfinite(importance.ci_high).all()):
        return {}
    return influence_without_usefulness(importance, influence, ratio=INFLUENCE_RATIO)


def modality_usefulness(
    trained: TrainedModel,
    cohort: Cohort,
    splits: Splits,
    config: ExperimentConfig,
    influence: ModalityShapley,
) -> Usefulness:
    """SAGE of a trained model's modalities (both games, with CIs) and the influence-without-usefulness flags.

    Args:
        trained: the model (its fold models on the CPU or the device they were trained on).
        cohort: the cohort.
        splits: the run's splits.
        config: the experiment config (``evaluation.bootstrap``, ``ci_level``, ``seed``).
        influence: the ensemble's per-patient modality Shapley values on the explained test patients.
    """
    test = np.asarray(splits.test)
    ensemble = average_coalition_outputs([_fold_outputs(f, trained, cohort, test) for f in trained.folds])
    folds = []
    for fold in trained.folds:
        validation = np.asarray(splits.folds[fold.fold][1])
        folds.append(_games(_fold_outputs(fold, trained, cohort, validation), cohort, validation, config))
    games = _games(ensemble, cohort, test, config)
    mean_abs = dict(zip(influence.modalities, np.abs(influence.phi).mean(axis=0).tolist(), strict=True))
    return Usefulness(trained.plan.name, games, folds, mean_abs, flag_modalities(games["loss"], mean_abs))


def write_usefulness(usefulness: Usefulness, run_dir: Path) -> None:
    """Write ``modality_importance.json`` and ``modality_importance.csv`` into the run folder."""
    write_json(run_dir / outputs.MODALITY_IMPORTANCE, usefulness.to_dict())
    usefulness.to_frame().to_csv(run_dir / outputs.MODALITY_IMPORTANCE_CSV, index=False)


def metric_prefixes(usefulness: Usefulness) -> dict[str, str]:
    """Game -> MLflow metric prefix: ``sage_loss`` and ``sage_auroc`` (``sage_c_index`` for survival)."""
    unit = usefulness.test["metric"].unit
    return {"loss": "sage_loss", "metric": "sage_c_index" if unit == "C-index" else "sage_auroc"}


def log_usefulness(usefulness: Usefulness) -> None:
    """Log ``sage_<game>_<modality>`` with ``_ci_low``/``_ci_high``, and ``sage_flag_<modality>`` (0/1)."""
    for game, prefix in metric_prefixes(usefulness).items():
        importance = usefulness.test[game]
        log_final_metrics(prefix, dict(zip(importance.modalities, importance.values.tolist(), strict=True)))
        bounds = zip(importance.ci_low.tolist(), importance.ci_high.tolist(), strict=True)
        log_final_metrics(prefix, dict(zip(importance.modalities, bounds, strict=True)))
    log_final_metrics("sage_flag", {m: float(m in usefulness.flags) for m in usefulness.modalities})


def read_flags(run_dir: Path) -> list[str]:
    """Flagged modalities recorded in a run folder's ``modality_importance.json`` (none when it is absent)."""
    path = run_dir / outputs.MODALITY_IMPORTANCE
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("flags") or {})
