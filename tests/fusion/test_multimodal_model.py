"""The encode/fuse contract of MultimodalModel, for every fusion method."""

from __future__ import annotations

import itertools

import pytest
import torch
from fusion_support import MODALITIES, make_batch, make_model, mixed_presence

from clinfuse.fusion import FusionOutput


def test_forward_backward_reaches_every_encoder(method: str) -> None:
    model = make_model(method).train()
    present = mixed_presence()
    out = model(make_batch(), present)
    assert isinstance(out, FusionOutput)
    assert out.logits.shape == (6, 1)
    out.logits.sum().backward()
    for m in MODALITIES:
        grads = [p.grad for p in model.encoders[m].parameters() if p.grad is not None]
        assert grads and sum(g.norm() for g in grads) > 0, m
        # Each modality is absent somewhere, so its missing embedding learns too.
        assert model.missing[m].grad is not None and model.missing[m].grad.norm() > 0, m
    head_grads = [p.grad for p in model.head.parameters() if p.requires_grad]
    assert all(g is not None for g in head_grads)


@pytest.mark.parametrize("n_outputs", [1, 4])
def test_every_coalition_gives_finite_logits(method: str, n_outputs: int) -> None:
    model = make_model(method, n_outputs=n_outputs).eval()
    inputs = make_batch()
    for coalition in itertools.product([False, True], repeat=len(MODALITIES)):
        present = torch.tensor(coalition).expand(6, -1)
        out = model(inputs, present)
        assert out.logits.shape == (6, n_outputs)
        assert torch.isfinite(out.logits).all(), coalition
        if not any(coalition):
            # Nothing present: every row sees only missing embeddings, so all rows agree.
            torch.testing.assert_close(out.logits, out.logits[:1].expand(6, -1))


def test_absent_inputs_never_matter(method: str) -> None:
    model = make_model(method).eval()
    present = mixed_presence()
    inputs = make_batch()
    with torch.no_grad():
        reference = model(inputs, present).logits
        for i, m in enumerate(MODALITIES):
            for fill in (float("nan"), 1e6, 0.0):
                changed = dict(inputs)
                changed[m] = inputs[m].clone()
                changed[m][~present[:, i]] = fill
                assert torch.equal(model(changed, present).logits, reference), (m, fill)


def test_nan_in_absent_rows_keeps_training_finite(method: str) -> None:
    model = make_model(method).train()
    present = mixed_presence()
    inputs = make_batch()
    for i, m in enumerate(MODALITIES):
        inputs[m][~present[:, i]] = float("nan")
    model(inputs, present).logits.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_changing_present_inputs_changes_output(method: str) -> None:
    model = make_model(method).eval()
    present = mixed_presence()
    inputs = make_batch()
    with torch.no_grad():
        reference = model(inputs, present).logits
        changed = dict(inputs)
        changed["clinical"] = inputs["clinical"] + 3.0
        moved = (model(changed, present).logits - reference).abs().squeeze(1)
    # Rows 2 lacks clinical data; every other row sees the change.
    assert moved[2] == 0
    assert torch.all(moved[[0, 1, 3, 4, 5]] > 0)


def test_gates(method: str) -> None:
    model = make_model(method).eval()
    out = model(make_batch(), mixed_presence())
    if method.startswith("gated"):
        assert out.gates is not None and out.gates.shape == (6, 3)
        assert torch.all((out.gates >= 0) & (out.gates <= 1))
    else:
        assert out.gates is None


def test_batch_size_independence(method: str) -> None:
    model = make_model(method, n_outputs=3).eval()
    present = mixed_presence()
    inputs = make_batch()
    with torch.no_grad():
        embeddings = model.encode(inputs, present)
        full = model.fuse(embeddings, present)
        parts = [
            model.fuse({m: e[rows] for m, e in embeddings.items()}, present[rows])
            for rows in (slice(0, 2), slice(2, 6))
        ]
        forward_parts = [
            model({m: x[rows] for m, x in inputs.items()}, present[rows]) for rows in (slice(0, 3), slice(3, 6))
        ]
    torch.testing.assert_close(full.logits, torch.cat([p.logits for p in parts]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full.logits, torch.cat([p.logits for p in forward_parts]), rtol=1e-4, atol=1e-5)
    if full.gates is not None:
        torch.testing.assert_close(full.gates, torch.cat([p.gates for p in parts]))


def test_encode_zeros_absent_rows_and_skips_unused_encoders() -> None:
    model = make_model("concat").eval()
    present = mixed_presence()
    present[:, 0] = False
    calls: list[int] = []
    model.encoders["ct"].register_forward_hook(lambda *_: calls.append(1))
    inputs = make_batch()
    del inputs["ct"]  # a modality absent from every row may be left out
    embeddings = model.encode(inputs, present)
    assert calls == []
    assert torch.equal(embeddings["ct"], torch.zeros(6, 8))
    assert torch.equal(embeddings["rna"][~present[:, 2]], torch.zeros(2, 4))
    assert torch.all(embeddings["rna"][present[:, 2]].abs().sum(dim=1) > 0)
    assert {m: e.shape[1] for m, e in embeddings.items()} == model.embed_dims


def test_fuse_treats_left_out_embeddings_as_absent() -> None:
    model = make_model("gated").eval()
    present = mixed_presence()
    embeddings = model.encode(make_batch(), present)
    absent_rna = present.clone()
    absent_rna[:, 2] = False
    without = {m: e for m, e in embeddings.items() if m != "rna"}
    torch.testing.assert_close(model.fuse(without, absent_rna).logits, model.fuse(embeddings, absent_rna).logits)


def test_explanation_batch_of_coalitions() -> None:
    """fuse over n_patients × 2^M rows (as exact Shapley does) matches per-coalition calls."""
    model = make_model("gated_kronecker").eval()
    actual = mixed_presence()
    embeddings = model.encode(make_batch(), actual)
    coalitions = torch.tensor(list(itertools.product([False, True], repeat=3)))
    rows = torch.arange(6).repeat_interleave(len(coalitions))
    present = actual[rows] & coalitions.repeat(6, 1)
    with torch.no_grad():
        big = model.fuse({m: e[rows] for m, e in embeddings.items()}, present).logits.view(6, 8)
        for k, coalition in enumerate(coalitions):
            single = model.fuse(embeddings, actual & coalition).logits.squeeze(1)
            torch.testing.assert_close(big[:, k], single, rtol=1e-5, atol=1e-6)


def test_single_present_image_row_trains_with_batch_norm() -> None:
    model = make_model("gated").train()
    present = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 1, 0]], dtype=torch.bool)
    inputs = {m: x[:3] for m, x in make_batch().items()}
    model(inputs, present).logits.sum().backward()
    assert all(m.training for m in model.encoders["ct"].modules())
    assert model.encoders["ct"].proj.weight.grad.norm() > 0
