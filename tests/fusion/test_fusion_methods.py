"""Method-specific behaviour: gated gates, Kronecker products, late combination, unimodal models."""

from __future__ import annotations

import pytest
import torch
from fusion_support import METHODS, make_batch, make_model, make_specs, mixed_presence

from clinfuse.config import FusionConfig
from clinfuse.fusion import build_model, create_fusion, list_fusions, modality_dropout
from clinfuse.fusion.gated import _kronecker, _kronecker_width
from clinfuse.fusion.late import LateFusion


def test_registered_methods() -> None:
    assert list_fusions() == ["attention", "concat", "gated", "late"]


def test_kronecker_product_holds_every_interaction() -> None:
    a = torch.tensor([[2.0, 3.0]])
    b = torch.tensor([[5.0, 7.0, 11.0]])
    fused = _kronecker([a, b])
    expected = torch.outer(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 5.0, 7.0, 11.0])).flatten()
    assert torch.equal(fused[0], expected)
    c = torch.tensor([[13.0]])
    assert _kronecker([a, b, c]).shape == (1, 3 * 4 * 2)
    assert _kronecker([a, b, c])[0, -1] == 3.0 * 11.0 * 13.0


@pytest.mark.parametrize(("n", "width"), [(1, 16), (2, 16), (3, 15), (4, 7)])
def test_kronecker_width_keeps_features_bounded(n: int, width: int) -> None:
    assert _kronecker_width(n) == width
    assert (width + 1) ** n <= 4096


def test_gated_kronecker_head_size() -> None:
    model = make_model("gated_kronecker")
    assert model.head.head[0].in_features == 16**3
    assert all(t[0].out_features == 15 for t in model.head.transforms)


def test_gates_scale_the_embeddings() -> None:
    """Forcing one gate shut removes its modality's influence on the logits."""
    model = make_model("gated").eval()
    gate = model.head.gate[0]
    with torch.no_grad():
        gate.weight[0].zero_()
        gate.bias[0] = -1e4  # sigmoid(-1e4) = 0: the image gate is closed
        gate.weight[:, :8] = 0.0  # and no gate reads the image embedding (its first 8 inputs)
        present = mixed_presence()
        inputs = make_batch()
        out = model(inputs, present)
        changed = dict(inputs, ct=inputs["ct"] * -5.0)
        torch.testing.assert_close(model(changed, present).logits, out.logits)
    assert torch.all(out.gates[:, 0] == 0)


def test_late_mean_averages_per_modality_logits() -> None:
    model = make_model("late_mean", n_outputs=2).eval()
    present = mixed_presence()
    embeddings = model.encode(make_batch(), present)
    with torch.no_grad():
        fused = model.fuse(embeddings, present).logits
        filled = [
            torch.where(present[:, i : i + 1], embeddings[m], model.missing[m]) for i, m in enumerate(model.modalities)
        ]
        per = torch.stack([h(e) for h, e in zip(model.head.heads, filled, strict=True)])
    torch.testing.assert_close(fused, per.mean(dim=0))
    assert "weight_logits" not in dict(model.head.named_parameters())


def test_late_learned_weights_train() -> None:
    model = make_model("late_learned")
    assert isinstance(model.head, LateFusion)
    torch.testing.assert_close(model.head.weights, torch.full((3,), 1 / 3))
    model(make_batch(), mixed_presence()).logits.sum().backward()
    assert model.head.weight_logits.grad is not None and model.head.weight_logits.grad.abs().sum() > 0


def test_attention_width_rounds_up_to_heads() -> None:
    head = create_fusion("attention", [4, 6], 1, FusionConfig(method="attention", hidden=10, attention_heads=4))
    assert head.cls.shape[-1] == 12
    out = head([torch.randn(3, 4), torch.randn(3, 6)], torch.ones(3, 2, dtype=torch.bool))
    assert out.logits.shape == (3, 1)


@pytest.mark.parametrize("config", list(METHODS.values()), ids=list(METHODS))
@pytest.mark.parametrize("modality", ["ct", "clinical", "rna"])
def test_unimodal_models(config: FusionConfig, modality: str) -> None:
    torch.manual_seed(0)
    model = build_model({modality: make_specs()[modality]}, config, n_outputs=3)
    assert model.modalities == [modality]
    inputs = {modality: make_batch()[modality]}
    present = torch.ones(6, 1, dtype=torch.bool)
    out = model(inputs, present)
    assert out.logits.shape == (6, 3)
    out.logits.sum().backward()
    assert sum(p.grad.norm() for p in model.encoders[modality].parameters() if p.grad is not None) > 0


def _signal_data(n: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    inputs = {
        "clinical": torch.randn(n, 5, generator=generator),
        "rna": torch.randn(n, 12, generator=generator),
    }
    return inputs, (inputs["rna"][:, 0] + inputs["rna"][:, 1] > 0).float()


@pytest.mark.parametrize("config", list(METHODS.values()), ids=list(METHODS))
def test_learns_a_signal_carried_by_one_modality(config: FusionConfig) -> None:
    """The label lives in the genomic modality; with modality dropout on, every method learns it."""
    torch.manual_seed(0)
    specs = {name: make_specs()[name] for name in ("clinical", "rna")}
    model = build_model(specs, config.model_copy(update={"dropout": 0.0}), n_outputs=1)
    generator = torch.Generator().manual_seed(0)
    inputs, y = _signal_data(128, generator)
    present = torch.ones(128, 2, dtype=torch.bool)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(150):
        optimizer.zero_grad()
        thinned = modality_dropout(present, 0.2, generator)
        loss_fn(model(inputs, thinned).logits.squeeze(1), y).backward()
        optimizer.step()
    model.eval()
    test_inputs, test_y = _signal_data(256, generator)
    with torch.no_grad():
        full = model(test_inputs, torch.ones(256, 2, dtype=torch.bool)).logits.squeeze(1)
        without_rna = model(test_inputs, torch.tensor([[True, False]]).expand(256, -1)).logits.squeeze(1)
    assert ((full > 0).float() == test_y).float().mean() > 0.85
    # Without the informative modality, held-out patients are close to chance.
    assert ((without_rna > 0).float() == test_y).float().mean() < 0.7


def test_gated_skip_adds_a_gated_linear_read_out_of_each_embedding() -> None:
    """With the MLP head silenced, the logits are exactly sum_m gate_m * w_m . e_m (the Pathomic skip path)."""
    torch.manual_seed(0)
    model = build_model(make_specs(), FusionConfig(method="gated", hidden=16, skip=True, linear_base=False), 1).eval()
    fusion = model.head
    assert fusion.skip is not None
    with torch.no_grad():
        fusion.head[-1].weight.zero_()
        fusion.head[-1].bias.zero_()
        present = mixed_presence()
        embeddings = model.encode(make_batch(), present)
        out = model.fuse(embeddings, present)
        filled = [
            torch.where(present[:, i : i + 1], embeddings[m], model.missing[m].expand_as(embeddings[m]))
            for i, m in enumerate(model.modalities)
        ]
        expected = sum(out.gates[:, i : i + 1] * fusion.skip[i](e) for i, e in enumerate(filled))
    torch.testing.assert_close(out.logits, expected)


def test_gated_without_skip_has_no_read_out() -> None:
    torch.manual_seed(0)
    model = build_model(make_specs(), FusionConfig(method="gated", skip=False), 1)
    assert model.head.skip is None


def test_unprojected_gates_weigh_the_embeddings_themselves_from_gate_init() -> None:
    """Without ``project`` each embedding is gated as it is, and ``gate_init`` is every gate's starting value."""
    torch.manual_seed(0)
    config = FusionConfig(method="gated", hidden=8, project=False, gate_init=0.9, skip=False)
    fusion = create_fusion("gated", [3, 4], 1, config).eval()
    embeddings = [torch.randn(5, 3), torch.randn(5, 4)]
    with torch.no_grad():
        fusion.gate[0].weight.zero_()  # no gate reads the embeddings: each sits at its initial value
        out = fusion(embeddings, torch.ones(5, 2, dtype=torch.bool))
        expected = fusion.head(0.9 * torch.cat(embeddings, dim=1))
    torch.testing.assert_close(out.gates, torch.full((5, 2), 0.9))
    torch.testing.assert_close(out.logits, expected)
    assert not list(fusion.transforms.parameters())
    # The Kronecker product needs the small projected widths, so it projects regardless.
    kronecker = create_fusion("gated", [3, 4], 1, config.model_copy(update={"kronecker": True}))
    assert [t[0].out_features for t in kronecker.transforms] == [16, 16]


def test_projected_gates_start_at_gate_init_too() -> None:
    config = FusionConfig(method="gated", project=True, gate_init=0.2)
    fusion = create_fusion("gated", [3, 4], 1, config)
    with torch.no_grad():
        fusion.gate[0].weight.zero_()
        gates = fusion([torch.randn(2, 3), torch.randn(2, 4)], torch.ones(2, 2, dtype=torch.bool)).gates
    torch.testing.assert_close(gates, torch.full((2, 2), 0.2))
