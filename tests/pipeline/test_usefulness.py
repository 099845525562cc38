"""Issue 20 without training: flags from constructed coalition outputs, the files, the report part, ablation plans."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from clinfuse.config import validate_config
from clinfuse.explain.coalition_outputs import CoalitionOutputs
from clinfuse.explain.sage import modality_importance
from clinfuse.pipeline.ablation import ablation_enabled, ablation_plans
from clinfuse.pipeline.usefulness import Usefulness, flag_modalities, read_flags, write_usefulness
from clinfuse.reports.markup import fmt
from clinfuse.reports.run_folder import load_run_folder
from clinfuse.reports.section_usefulness import usefulness_parts
from clinfuse.training.models import ModelPlan

MODALITIES = ["imaging", "clinical", "genomic"]


def _outputs(n: int, weights: dict[str, float], noise: dict[str, float], seed: int):
    """An additive model: logit = sum over present modalities of (w_m + noise_m) * x_m; y follows w only."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(MODALITIES)))
    truth = x @ np.array([weights[m] for m in MODALITIES])
    y = (rng.random(n) < 1 / (1 + np.exp(-truth))).astype(float)
    slope = np.array([weights[m] + noise[m] for m in MODALITIES])
    mask = (np.arange(2 ** len(MODALITIES))[:, None] >> np.arange(len(MODALITIES))) & 1  # (C, M)
    logits = np.einsum("nm,cm,m->nc", x, mask, slope)[:, :, None]
    outputs = CoalitionOutputs(list(MODALITIES), logits, np.ones((n, len(MODALITIES)), dtype=bool))
    phi = x * slope  # exact Shapley values of an additive model
    return outputs, y, dict(zip(MODALITIES, np.abs(phi).mean(axis=0), strict=True))


def _usefulness(n_boot: int = 300) -> Usefulness:
    outputs, y, influence = _outputs(
        400, {"imaging": 0.0, "clinical": 0.8, "genomic": 1.0}, {"imaging": 0.4, "clinical": 0, "genomic": 0}, seed=1
    )
    games = {
        game: modality_importance(outputs, y, task="binary", game=game, n_boot=n_boot, seed=1)
        for game in ("loss", "metric")
    }
    return Usefulness("gated", games, [games], influence, flag_modalities(games["loss"], influence))


def test_noise_modality_with_large_influence_is_flagged() -> None:
    result = _usefulness()
    loss = result.test["loss"]
    imaging, genomic = 0, 2
    # The model reacts to imaging (over a third of genomic's mean |phi|), but imaging carries no information.
    assert result.influence["imaging"] > result.influence["genomic"] / 3
    assert loss.ci_low[imaging] < 0 < loss.ci_high[imaging]
    assert loss.ci_low[genomic] > 0 and loss.ci_low[1] > 0
    assert list(result.flags) == ["imaging"]
    assert "does not improve its predictions" in result.flags["imaging"]
    assert sum(loss.values) == pytest.approx(loss.value_empty - loss.value_full, abs=1e-12)


def test_genomic_only_signal_dwarfs_the_noise_the_model_reacts_to() -> None:
    outputs, y, influence = _outputs(
        400, {"imaging": 0.0, "clinical": 0.0, "genomic": 1.5}, {"imaging": 0.3, "clinical": 0.3, "genomic": 0}, seed=2
    )
    loss = modality_importance(outputs, y, task="binary", n_boot=200, seed=1)
    assert loss.values[2] >= 5 * max(loss.values[0], loss.values[1], 1e-12)
    assert (loss.ci_low[:2] < 0).all() and list(flag_modalities(loss, influence)) == []


def test_no_flags_without_bootstrap() -> None:
    result = _usefulness(n_boot=0)
    assert result.flags == {} and np.isnan(result.test["loss"].ci_low).all()


def test_files_and_report_part(tmp_path: Path) -> None:
    result = _usefulness()
    write_usefulness(result, tmp_path)
    assert read_flags(tmp_path) == ["imaging"]
    data = json.loads((tmp_path / "modality_importance.json").read_text())
    assert data["mean_abs_phi"]["imaging"] == pytest.approx(result.influence["imaging"])
    assert list(data["flags"]) == ["imaging"] and "loss" in data["folds"][0]
    (tmp_path / "run_info.json").write_text(json.dumps({"task": "binary", "modalities": MODALITIES}))
    (tmp_path / "metrics.json").write_text(json.dumps({"genomic_only": {"kind": "unimodal", "test": {"auroc": 0.81}}}))
    text = html.unescape(re.sub(r"<[^>]+>", " ", "".join(usefulness_parts(load_run_folder(tmp_path)))))
    loss_entry = result.test["loss"]
    share = result.influence["imaging"] / max(result.influence.values())
    assert (
        f"The model reacts to imaging (mean |φ| {fmt(result.influence['imaging'])}, {share:.0%} of the top "
        f"modality's), but imaging does not improve its predictions on held-out patients (SAGE "
        f"{fmt(loss_entry.values[0], 4)} log-loss, 95% CI {fmt(loss_entry.ci_low[0], 4)} to "
        f"{fmt(loss_entry.ci_high[0], 4)}): likely noise the model fitted."
    ) in text
    assert "reacts to clinical" not in text and "reacts to genomic" not in text
    loss = result.test["loss"]
    genomic = f"{fmt(loss.values[2], 4)} ({fmt(loss.ci_low[2], 4)} to {fmt(loss.ci_high[2], 4)})"
    assert genomic in text and "0.810" in text
    assert "influence: mean |φ|" in text and "usefulness: SAGE log-loss" in text


def test_report_part_without_the_file(tmp_path: Path) -> None:
    (tmp_path / "run_info.json").write_text(json.dumps({"task": "binary"}))
    text = "".join(usefulness_parts(load_run_folder(tmp_path)))
    assert "modality_importance.json was not found" in text


def test_ablation_plans_and_default(tmp_path: Path) -> None:
    config = validate_config({"cohort": str(tmp_path), "fusion": {"method": "attention"}})
    primary = ModelPlan("attention", "fusion", ("imaging", "clinical", "genomic"), config.fusion)
    (plan,) = ablation_plans(primary, ["clinical", "unknown"])
    assert (plan.name, plan.kind, plan.modalities) == ("attention_without_clinical", "ablation", ("imaging", "genomic"))
    assert plan.fusion.method == "attention"
    pair = ModelPlan("attention", "fusion", ("imaging", "genomic"), config.fusion)
    (single,) = ablation_plans(pair, ["imaging"])
    assert single.modalities == ("genomic",) and single.fusion.method == "concat"
    assert ablation_plans(ModelPlan("genomic_only", "unimodal", ("genomic",), config.fusion), ["genomic"]) == []
    assert not ablation_enabled(config)
    assert ablation_enabled(config.model_copy(update={"compare": ["concat"]}))
    off = config.model_copy(
        update={"compare": ["concat"], "explain": config.explain.model_copy(update={"ablate_flagged": False})}
    )
    assert not ablation_enabled(off)
