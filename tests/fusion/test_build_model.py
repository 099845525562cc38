"""build_model: default encoders, configuration errors and modality dropout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fusion_support import make_specs
from monai.networks.nets import ResNet

from clinfuse.config import EncoderConfig, FusionConfig
from clinfuse.encoders.image import ImageEncoder
from clinfuse.encoders.tabular import MaskedLinear, MLPEncoder, SNNEncoder
from clinfuse.errors import ConfigError
from clinfuse.fusion import build_model, modality_dropout
from clinfuse.kinds import get_kind


def test_default_encoders_by_kind(gene_mask: np.ndarray) -> None:
    model = build_model(make_specs(gene_mask=gene_mask), FusionConfig(), n_outputs=1)
    defaults = {k: get_kind(k).default_encoder for k in ("image", "tabular", "genomic", "signal")}
    assert defaults == {"image": "resnet10", "tabular": "mlp", "genomic": "snn", "signal": "cnn"}
    # 16x16 images are small inputs: the image kind sizes its default down to the cnn (resnet10 above 32³).
    assert isinstance(model.encoders["ct"], ImageEncoder) and not isinstance(model.encoders["ct"].backbone, ResNet)
    assert get_kind("image").default_encoder_for({"size": [64, 64, 64]}) == "resnet10"
    assert isinstance(model.encoders["clinical"], MLPEncoder)
    assert isinstance(model.encoders["rna"], SNNEncoder)
    assert isinstance(model.encoders["rna"].net[0], MaskedLinear)
    assert model.modalities == ["ct", "clinical", "rna"]
    assert model.embed_dims == {"ct": 8, "clinical": 6, "rna": 4}
    assert model.method == "gated"


def test_named_encoder_and_tabular_weights(tmp_path: Path) -> None:
    specs = make_specs({"clinical": EncoderConfig(name="snn", embed_dim=6, hidden=[8])})
    torch.manual_seed(0)
    first = build_model(specs, FusionConfig(method="concat"), 1)
    path = tmp_path / "clinical.pt"
    torch.save(first.encoders["clinical"].state_dict(), path)
    specs = make_specs({"clinical": EncoderConfig(name="snn", embed_dim=6, hidden=[8], weights=path)})
    second = build_model(specs, FusionConfig(method="concat"), 1)
    x = torch.randn(3, 5)
    torch.testing.assert_close(second.encoders["clinical"].eval()(x), first.encoders["clinical"].eval()(x))


@pytest.mark.parametrize(
    ("modality", "encoder", "message"),
    [
        (
            "ct",
            "resnet9",
            r"encoders.ct.name: unknown encoder 'resnet9'; choose one of: cnn, densenet121.*"
            r"\(did you mean 'resnet",
        ),
        ("ct", "mlp", r"encoders.ct.name: 'mlp' cannot encode modality 'ct' \(spatial inputs\); choose one of: cnn"),
        ("clinical", "vit", r"encoders.clinical.name: 'vit' cannot encode .* choose one of: mlp, snn"),
    ],
)
def test_bad_encoder_names(modality: str, encoder: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_specs({modality: EncoderConfig(name=encoder)})


def test_gene_mask_needs_snn(gene_mask: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="encoders.rna: encoder 'mlp' does not take gene_mask.*snn"):
        make_specs({"rna": EncoderConfig(name="mlp")}, gene_mask=gene_mask)


def test_unknown_fusion_lists_choices() -> None:
    with pytest.raises(ConfigError, match="fusion.method: unknown method 'bilinear'; choose one of: attention, concat"):
        build_model(make_specs(), FusionConfig(method="bilinear"), 1)


@pytest.mark.parametrize("name", ["a.b", "", "keys"])
def test_unusable_modality_names(name: str) -> None:
    spec = make_specs()["clinical"]
    with pytest.raises(ConfigError, match="cannot name a model part"):
        build_model({name: spec}, FusionConfig(), 1)


def test_no_modalities() -> None:
    with pytest.raises(ConfigError, match="no modalities"):
        build_model({}, FusionConfig(), 1)


def test_modality_dropout_rate_and_rows() -> None:
    generator = torch.Generator().manual_seed(0)
    present = torch.ones(20000, 3, dtype=torch.bool)
    present[:5000, 1] = False
    present[5000:7000, :2] = False  # single-modality rows
    thinned = modality_dropout(present, 0.3, generator)
    assert thinned.dtype == torch.bool
    assert not torch.any(thinned & ~present)  # never invents a modality
    assert torch.all(thinned.any(dim=1))
    assert torch.all(thinned[5000:7000, 2])  # a lone modality is always kept
    full = thinned[7000:]
    # Drop 0.3 each, minus the rescued rows where all three were dropped (0.3³ of rows, one kept).
    assert 1 - full.float().mean().item() == pytest.approx(0.3 - 0.3**3 / 3, abs=0.01)
    rescued = thinned[7000:].sum(dim=1) == 1
    # Rescued modality is uniform: each column gets about a third of the single-kept rows.
    counts = thinned[7000:][rescued].float().mean(dim=0)
    assert torch.all((counts > 0.25) & (counts < 0.42))


def test_modality_dropout_is_reproducible_and_off_at_zero() -> None:
    present = torch.rand(50, 3, generator=torch.Generator().manual_seed(1)) > 0.3
    present[:, 0] |= ~present.any(dim=1)
    a = modality_dropout(present, 0.5, torch.Generator().manual_seed(7))
    b = modality_dropout(present, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, present)
    assert torch.equal(modality_dropout(present, 0.0), present)


@pytest.mark.parametrize("name", ["mlp", "snn"])
def test_linear_skip_is_configured_and_old_specs_rebuild_without_it(name: str) -> None:
    """``linear_skip`` reaches table encoders from the config; a spec saved before the key existed has no skip."""
    from clinfuse.encoders import EncoderSpec, create_encoder, encoder_spec

    config = EncoderConfig(name=name, embed_dim=4, hidden=[8])
    spec = encoder_spec("x", "vector", "mlp", config, {"in_features": 5})
    assert spec.args["linear_skip"] is True
    torch.manual_seed(0)
    encoder = create_encoder(spec.name, **spec.args).eval()
    x = torch.randn(7, 5)
    with torch.no_grad():
        assert encoder.skip is not None
        torch.testing.assert_close(encoder(x), encoder.net(x) + encoder.skip(x))
    old = EncoderSpec.from_json({"name": name, "args": {k: v for k, v in spec.args.items() if k != "linear_skip"}})
    assert create_encoder(old.name, **old.args).skip is None
    off = encoder_spec("x", "vector", "mlp", EncoderConfig(name=name, linear_skip=False), {"in_features": 5})
    assert create_encoder(off.name, **off.args).skip is None
    # Image encoders whose factory does not take the key never receive it.
    assert "linear_skip" not in encoder_spec("x", "spatial", "vit", EncoderConfig(name="vit"), {"spatial_dims": 2}).args


def test_image_linear_skip_is_configured_and_old_specs_rebuild_without_it(tmp_path: Path) -> None:
    """``linear_skip`` reaches the cnn from an experiment YAML (on by default); an older spec without it
    rebuilds as trained, without the skip, and loads its weights."""
    from clinfuse.config import load_config
    from clinfuse.encoders import EncoderSpec, create_encoder, encoder_spec
    from clinfuse.encoders.summary import SummarySkip

    (tmp_path / "on.yaml").write_text("cohort: c\nencoders:\n  ct: {embed_dim: 4}\n")
    (tmp_path / "off.yaml").write_text("cohort: c\nencoders:\n  ct: {embed_dim: 4, linear_skip: false}\n")
    inputs = {"spatial_dims": 2, "in_channels": 1, "size": [16, 16]}
    config = load_config(tmp_path / "on.yaml").encoder_for("ct")
    spec = encoder_spec("ct", "spatial", "cnn", config, inputs)
    assert spec.args["linear_skip"] is True
    assert isinstance(create_encoder(spec.name, **spec.args).skip, SummarySkip)
    off = load_config(tmp_path / "off.yaml").encoder_for("ct")
    assert create_encoder("cnn", **encoder_spec("ct", "spatial", "cnn", off, inputs).args).skip is None
    old_args = {k: v for k, v in spec.to_json()["args"].items() if k != "linear_skip"}
    old = EncoderSpec.from_json({"name": "cnn", "args": old_args, "weights": None})
    trained_without = create_encoder("cnn", **{**spec.args, "linear_skip": False}).state_dict()
    rebuilt = create_encoder(old.name, **old.args)
    assert rebuilt.skip is None
    rebuilt.load_state_dict(trained_without)


def test_models_saved_before_the_gated_options_rebuild_as_trained(tmp_path: Path) -> None:
    """A model spec or run config without ``skip``/``project``/``gate_init`` was trained before they existed
    (projected embeddings, no skip): it rebuilds that way and its weights load, whatever today's defaults."""
    import yaml

    from clinfuse import outputs
    from clinfuse.config import FusionConfig, saved_fusion
    from clinfuse.pipeline.resume import config_of_run
    from clinfuse.training.inference import model_from_spec

    specs = make_specs()
    torch.manual_seed(0)
    trained = build_model(specs, FusionConfig(method="gated", hidden=16, skip=False, project=True), 1)
    saved = FusionConfig(method="gated", hidden=16).model_dump(mode="json")
    for key in ("skip", "project", "gate_init"):
        del saved[key]
    spec = {
        "fusion": saved,
        "modalities": [{"name": m} for m in specs],
        "encoders": [{m: s.to_json() for m, s in specs.items()}],
        "n_outputs": 1,
    }
    rebuilt = model_from_spec(spec)
    rebuilt.folds[0].load_state_dict(trained.state_dict())  # strict: the same parameters, no more, no fewer
    assert rebuilt.folds[0].head.skip is None
    assert FusionConfig.model_validate(saved_fusion({"project": False})).project is False  # saved values win
    # Today's defaults differ, so the fill-in is what keeps the old weights loadable.
    today = build_model(specs, FusionConfig(method="gated", hidden=16), 1)
    assert today.state_dict().keys() != trained.state_dict().keys()

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = {"name": "old_run", "cohort": str(tmp_path), "fusion": saved}
    (run_dir / outputs.CONFIG).write_text(yaml.safe_dump(config))
    (run_dir / outputs.RUN_INFO).write_text("{}")
    fusion = config_of_run(str(run_dir), tmp_path).fusion
    assert (fusion.skip, fusion.project, fusion.gate_init) == (False, True, 0.5)
