"""SAGE modality importance: efficiency, an analytic additive game, noise versus signal, bootstrap, ensembles."""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score
from sksurv.metrics import concordance_index_censored
from torch import Tensor, nn

from clinfuse.explain.coalition_outputs import average_coalition_outputs, model_coalition_outputs
from clinfuse.explain.modality import model_modality_shapley
from clinfuse.explain.sage import influence_without_usefulness, modality_importance, model_modality_importance
from clinfuse.training.survival import cox_ph_loss

DIMS3 = {"image": 5, "clinical": 3, "genomic": 7}


class Output(NamedTuple):
    logits: Tensor
    gates: Tensor | None


class SumFusion(nn.Module):
    """``logits = sum over present m of x_m @ W_m``; a missing modality adds 0 (its missing embedding is 0).

    Args:
        weights: ``(d_m, K)`` weight matrix per modality; fixes the modality order and the outputs.
    """

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.modalities = list(weights)
        self.encoders = nn.ModuleDict()
        for m, w in weights.items():
            linear = nn.Linear(w.shape[0], w.shape[1], bias=False)
            linear.weight.data = torch.as_tensor(w.T, dtype=torch.float32).contiguous()
            self.encoders[m] = linear
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.zeros(w.shape[1])) for m, w in weights.items()})

    def encode(self, inputs: dict[str, Tensor], present: Tensor) -> dict[str, Tensor]:
        return {m: self.encoders[m](inputs[m]) * present[:, [k]] for k, m in enumerate(self.modalities)}

    def fuse(self, embeddings: dict[str, Tensor], present: Tensor) -> Output:
        parts = [torch.where(present[:, [k]], embeddings[m], self.missing[m]) for k, m in enumerate(self.modalities)]
        return Output(torch.stack(parts).sum(0), None)

    def forward(self, inputs: dict[str, Tensor], present: Tensor) -> Output:
        return self.fuse(self.encode(inputs, present), present)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _targets(task: str, eta: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Outcomes drawn from a true linear predictor ``eta`` (``(n,)``, or ``(n, K)`` for multiclass)."""
    if task == "binary":
        return (rng.random(len(eta)) < _sigmoid(eta)).astype(float), None
    if task == "multiclass":
        return (eta + rng.gumbel(size=eta.shape)).argmax(axis=1), None
    event_time = rng.exponential(1 / np.exp(eta))
    censor_time = rng.exponential(2 * np.median(event_time), size=len(eta))
    return (event_time <= censor_time).astype(float), np.minimum(event_time, censor_time)


def _independent_value(task: str, game: str, logits: np.ndarray, y: np.ndarray, time: np.ndarray | None) -> float:
    """The loss or metric of one set of model outputs, from sklearn / scikit-survival / training."""
    if task == "survival":
        if game == "metric":
            return concordance_index_censored(y.astype(bool), time, logits[:, 0])[0]
        return cox_ph_loss(torch.tensor(logits[:, 0]), torch.tensor(time), torch.tensor(y)).item()
    if task == "binary":
        prob = _sigmoid(logits[:, 0])
        return roc_auc_score(y, prob) if game == "metric" else log_loss(y, prob)
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if game == "metric":
        return roc_auc_score(y, prob, multi_class="ovr", average="macro")
    return log_loss(y, prob, labels=range(logits.shape[1]))


@pytest.mark.parametrize("game", ["loss", "metric"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "survival"])
def test_efficiency_and_end_values_on_a_nonlinear_fusion(toy_fusion, make_batch, task: str, game: str) -> None:
    n_outputs = 3 if task == "multiclass" else 1
    model = toy_fusion(DIMS3, n_outputs=n_outputs, seed=7).eval()
    inputs, present = make_batch(DIMS3, 90, seed=8)
    with torch.no_grad():
        model.double()
        full = model({m: x.double() for m, x in inputs.items()}, present).logits.numpy()
        empty = model({m: x.double() for m, x in inputs.items()}, torch.zeros_like(present)).logits.numpy()
        model.float()
    # Outcomes follow the model's own full-input output, so the modalities matter and the game is not flat.
    y, time = _targets(task, full if task == "multiclass" else full[:, 0], np.random.default_rng(9))

    result = model_modality_importance(model, (inputs, present), y, task=task, time=time, game=game, n_boot=50)

    sign = 1.0 if game == "loss" else -1.0
    assert result.values.sum() == pytest.approx(sign * (result.value_empty - result.value_full), abs=1e-9)
    assert result.value_full == pytest.approx(_independent_value(task, game, full, y, time), abs=1e-9)
    if game == "metric":
        # Without modalities every patient gets the same output up to ~1e-17 of float64 rounding, which sklearn
        # would rank; it must rank nobody.
        assert np.ptp(empty, axis=0).max() < 1e-12 and result.value_empty == 0.5
    else:
        assert result.value_empty == pytest.approx(_independent_value(task, game, empty, y, time), abs=1e-9)
    assert np.abs(result.values).max() > 1e-3
    assert result.n_patients == 90 and result.n_present.tolist() == present.sum(0).tolist()


def test_additive_two_modalities_match_the_hand_computed_game() -> None:
    """logit = a x_a + b x_b over present modalities: v of the 4 coalitions by hand, then the Shapley formula."""
    rng = np.random.default_rng(3)
    n = 40
    x_a, x_b = rng.normal(size=n), rng.normal(size=n)
    has_a, has_b = rng.random(n) < 0.8, rng.random(n) < 0.6
    y = (rng.random(n) < _sigmoid(1.5 * x_a - 0.5 * x_b)).astype(float)
    model = SumFusion({"a": np.array([[1.2]]), "b": np.array([[-0.7]])})
    inputs = {
        "a": torch.tensor(x_a[:, None], dtype=torch.float32),
        "b": torch.tensor(x_b[:, None], dtype=torch.float32),
    }
    present = torch.tensor(np.stack([has_a, has_b], axis=1))

    result = model_modality_importance(model, (inputs, present), y, task="binary", n_boot=0)

    # The model rounds its weights to float32; the hand computation uses the same float32 numbers.
    term_a = np.float32(1.2) * x_a.astype(np.float32).astype(float)
    term_b = np.float32(-0.7) * x_b.astype(np.float32).astype(float)

    def v(with_a: bool, with_b: bool) -> float:
        z = term_a * (has_a & with_a) + term_b * (has_b & with_b)
        return float(np.mean(np.log1p(np.exp(-z)) * y + np.log1p(np.exp(z)) * (1 - y)))

    empty, only_a, only_b, both = v(False, False), v(True, False), v(False, True), v(True, True)
    phi_a = 0.5 * ((empty - only_a) + (only_b - both))
    phi_b = 0.5 * ((empty - only_b) + (only_a - both))
    assert empty == pytest.approx(np.log(2), abs=1e-12)
    assert result.value_empty == pytest.approx(empty, abs=1e-9)
    assert result.value_full == pytest.approx(both, abs=1e-9)
    np.testing.assert_allclose(result.values, [phi_a, phi_b], atol=1e-9, rtol=0)
    assert phi_a > 0.02 and abs(phi_a - phi_b) > 0.02  # a real, asymmetric game
    assert np.isnan(result.ci_low).all() and len(result.resamples) == 0


def _noise_setup(n: int, signal: float, noise: float, seed: int):
    """y depends on clinical only; the model also adds ``noise * imaging``, which is unrelated to y."""
    rng = np.random.default_rng(seed)
    x = {"clinical": rng.normal(size=(n, 1)), "imaging": rng.normal(size=(n, 1))}
    y = (rng.random(n) < _sigmoid(signal * x["clinical"][:, 0])).astype(float)
    model = SumFusion({"clinical": np.array([[signal]]), "imaging": np.array([[noise]])})
    batch = ({m: torch.tensor(v, dtype=torch.float32) for m, v in x.items()}, torch.ones(n, 2, dtype=torch.bool))
    return model, batch, y


def test_noise_the_model_reacts_to_is_flagged_as_not_useful() -> None:
    model, batch, y = _noise_setup(n=200, signal=1.0, noise=0.4, seed=0)
    importance = model_modality_importance(model, batch, y, task="binary", n_boot=400, seed=1)
    shapley = model_modality_shapley(model, batch)
    influence = np.abs(shapley.phi).mean(axis=0)

    clinical, imaging = 0, 1
    assert influence[imaging] > 0.35 * influence[clinical]  # the model clearly reacts to imaging
    assert importance.ci_low[clinical] > 0.01  # clinical reduces the loss
    assert abs(importance.values[imaging]) < 0.2 * importance.values[clinical]
    assert importance.ci_low[imaging] < 0 < importance.ci_high[imaging]
    flags = influence_without_usefulness(importance, shapley)
    assert list(flags) == ["imaging"]
    assert "reacts to imaging" in flags["imaging"] and "does not improve its predictions" in flags["imaging"]
    # Raising the influence bar above imaging's share clears the flag.
    assert influence_without_usefulness(importance, shapley, ratio=0.5) == {}


def test_strong_noise_is_flagged_as_harmful() -> None:
    """More noise in the logit costs log-loss beyond the bootstrap's reach: the CI lies below 0."""
    model, batch, y = _noise_setup(n=300, signal=2.0, noise=0.8, seed=0)
    importance = model_modality_importance(model, batch, y, task="binary", n_boot=400, seed=1)
    assert importance.ci_high[1] < 0
    influence = {"clinical": 2.0 * np.abs(batch[0]["clinical"]).mean().item(), "imaging": 0.8 * 0.8}
    flags = influence_without_usefulness(importance, influence)
    assert list(flags) == ["imaging"] and "makes its predictions worse" in flags["imaging"]


@pytest.mark.parametrize("game", ["loss", "metric"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "survival"])
def test_genomic_only_signal_is_the_most_important(task: str, game: str) -> None:
    """Every modality moves the logit equally, but only genomic predicts the outcome."""
    rng = np.random.default_rng(4)
    n, n_outputs = 300, 3 if task == "multiclass" else 1
    x = {m: rng.normal(size=(n, n_outputs)) for m in ("image", "clinical", "genomic")}
    y, time = _targets(task, x["genomic"] if task == "multiclass" else x["genomic"][:, 0], rng)
    model = SumFusion({m: np.eye(n_outputs) for m in x})
    present = torch.tensor(rng.random((n, 3)) < 0.85)
    batch = ({m: torch.tensor(v, dtype=torch.float32) for m, v in x.items()}, present)

    result = model_modality_importance(model, batch, y, task=task, time=time, game=game, n_boot=200, seed=5)

    genomic = result.modalities.index("genomic")
    assert result.values.argmax() == genomic
    assert result.ci_low[genomic] > 0
    others = np.delete(result.values, genomic)
    assert (others < 0.25 * result.values[genomic]).all()


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    model, batch, y = _noise_setup(n=150, signal=1.5, noise=0.5, seed=2)
    outputs = model_coalition_outputs(model, batch)
    first = modality_importance(outputs, y, task="binary", n_boot=300, level=0.9, seed=11)
    again = modality_importance(outputs, y, task="binary", n_boot=300, level=0.9, seed=11)
    other = modality_importance(outputs, y, task="binary", n_boot=300, level=0.9, seed=12)
    wider = modality_importance(outputs, y, task="binary", n_boot=300, level=0.99, seed=11)

    np.testing.assert_array_equal(first.ci_low, again.ci_low)
    np.testing.assert_array_equal(first.resamples, again.resamples)
    assert np.abs(first.ci_low - other.ci_low).max() > 1e-6
    assert (first.ci_low <= first.values).all() and (first.values <= first.ci_high).all()
    assert (wider.ci_low < first.ci_low).all() and (wider.ci_high > first.ci_high).all()
    assert first.resamples.shape == (300, 2)
    # Each resample is itself an exact game: its values sum to its own loss reduction, which varies.
    totals = first.resamples.sum(axis=1)
    assert totals.std() > 1e-3 and first.values.sum() == pytest.approx(first.value_empty - first.value_full)


def test_fold_ensemble_is_explained_on_mean_logits(toy_fusion, make_batch) -> None:
    folds = [toy_fusion(DIMS3, seed=s).eval() for s in (20, 21)]
    inputs, present = make_batch(DIMS3, 60, seed=22)
    with torch.no_grad():
        mean_full = np.mean([f.double()({m: x.double() for m, x in inputs.items()}, present).logits for f in folds], 0)
    for fold in folds:
        fold.float()
    y = (np.random.default_rng(23).random(60) < _sigmoid(mean_full[:, 0])).astype(float)
    per_fold = [model_coalition_outputs(f, (inputs, present)) for f in folds]

    ensemble = modality_importance(average_coalition_outputs(per_fold), y, task="binary", n_boot=0)

    assert ensemble.value_full == pytest.approx(log_loss(y, _sigmoid(mean_full[:, 0])), abs=1e-9)
    assert ensemble.values.sum() == pytest.approx(ensemble.value_empty - ensemble.value_full, abs=1e-9)
    averaged = np.mean([modality_importance(o, y, task="binary", n_boot=0).values for o in per_fold], axis=0)
    assert np.abs(ensemble.values - averaged).max() > 1e-4  # the loss is not linear in the logits


def test_frame_and_dict_are_ready_to_write() -> None:
    model, batch, y = _noise_setup(n=100, signal=1.5, noise=0.5, seed=3)
    result = model_modality_importance(model, batch, y, task="binary", n_boot=100)
    frame = result.to_frame()
    assert frame.columns.tolist() == ["modality", "value", "ci_low", "ci_high", "n_present", "unit"]
    assert frame["modality"].tolist() == ["clinical", "imaging"] and (frame["unit"] == "log-loss").all()
    np.testing.assert_array_equal(frame["value"], result.values)
    written = json.loads(json.dumps(result.to_dict()))
    assert written["modalities"]["imaging"]["ci_high"] == pytest.approx(result.ci_high[1])
    assert written["n_patients"] == 100 and written["n_resamples"] == 100 and written["unit"] == "log-loss"
    assert (
        json.loads(
            json.dumps(modality_importance(model_coalition_outputs(model, batch), y, task="binary", n_boot=0).to_dict())
        )["modalities"]["clinical"]["ci_low"]
        is None
    )


def test_arguments_are_checked_at_the_boundary() -> None:
    model, batch, y = _noise_setup(n=30, signal=1.0, noise=0.5, seed=4)
    outputs = model_coalition_outputs(model, batch)
    with pytest.raises(ValueError, match="y has 29 entries"):
        modality_importance(outputs, y[:-1], task="binary")
    with pytest.raises(ValueError, match="time="):
        modality_importance(outputs, y, task="survival")
    with pytest.raises(ValueError, match="class indices"):
        modality_importance(outputs, y, task="multiclass")
    with pytest.raises(ValueError, match="game"):
        modality_importance(outputs, y, task="binary", game="accuracy")  # type: ignore[arg-type]
    no_ci = modality_importance(outputs, y, task="binary", n_boot=0)
    with pytest.raises(ValueError, match="n_boot > 0"):
        influence_without_usefulness(no_ci, {"clinical": 1.0, "imaging": 1.0})
