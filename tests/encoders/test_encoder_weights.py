"""Initialising encoders from local weights files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clinfuse.encoders import create_encoder, load_weights
from clinfuse.errors import ConfigError


def _resnet10(**kwargs: object) -> torch.nn.Module:
    return create_encoder("resnet10", spatial_dims=3, in_channels=1, embed_dim=8, **kwargs).eval()


def test_round_trip_through_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = _resnet10()
    path = tmp_path / "encoder.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    loaded = _resnet10(weights=path)
    fresh = _resnet10()
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x))
        assert not torch.allclose(fresh(x), source(x))


def test_medicalnet_style_checkpoint(tmp_path: Path) -> None:
    """A bare backbone under ``state_dict`` with DataParallel ``module.`` prefixes loads into the backbone."""
    torch.manual_seed(0)
    source = _resnet10()
    path = tmp_path / "resnet_10.pth"
    state = {f"module.{k}": v for k, v in source.backbone.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, path)
    target = _resnet10()
    missing, unexpected = load_weights(target, path)
    assert (missing, unexpected) == (2, 0)  # only our projection's weight and bias are new
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(target.backbone(x), source.backbone(x))


def test_mismatched_shapes_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "w3d.pt"
    torch.save(_resnet10().state_dict(), path)
    target = create_encoder("resnet10", spatial_dims=2, in_channels=1, embed_dim=8)
    before = target.backbone.conv1.weight.clone()
    missing, unexpected = load_weights(target, path)
    n_convs = sum(1 for k in target.state_dict() if k.endswith("weight") and target.state_dict()[k].ndim == 4)
    assert unexpected == n_convs and missing == n_convs
    assert torch.equal(target.backbone.conv1.weight, before)


@pytest.mark.parametrize(
    "content", [[1, 2, 3], torch.zeros(3), {"a": 1}, {}], ids=["list", "tensor", "no-tensors", "empty"]
)
def test_not_a_state_dict(tmp_path: Path, content: object) -> None:
    path = tmp_path / "bad.pt"
    torch.save(content, path)
    with pytest.raises(ConfigError, match="bad.pt: not a state dict"):
        _resnet10(weights=path)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ConfigError, match="garbage.pt: cannot be read"):
        _resnet10(weights=garbage)
    with pytest.raises(ConfigError, match="nope.pt: weights file not found"):
        _resnet10(weights=tmp_path / "nope.pt")


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "mlp.pt"
    torch.save(create_encoder("mlp", in_features=4, hidden=[3]).state_dict(), path)
    with pytest.raises(ConfigError, match="none of its .* tensors match"):
        _resnet10(weights=path)
