"""Image channels reach the encoder (RGB pictures, MRI sequences on different grids), augmentation is seeded per
worker, and synthetic volumes with their own voxel spacing are preprocessed at one physical spacing."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from clinfuse.cohort import load_cohort, synthesize_cohort
from clinfuse.config import EncoderConfig, FusionConfig, load_config
from clinfuse.fusion import build_model
from clinfuse.kinds import RunCache
from clinfuse.training.data import FoldInputs, PatientDataset, make_loader

_LABEL_ROWS = "name: ch\nid_column: patient_id\nlabel: {table: index.csv, column: y, task: binary}\n"


def _fit(root: Path, tmp: Path, size: list[int], **settings: object):
    cohort = load_cohort(root, verify_images=True)
    data = cohort.modalities["img"]
    kind = data.kind
    parsed = kind.settings_model.model_validate(settings)
    prepared = kind.prepare(data, parsed, RunCache(tmp / "cache", image_size=size))
    fitted = kind.fit(data, prepared, np.arange(cohort.n), EncoderConfig(embed_dim=4), parsed, cohort.root)
    return cohort, kind, data, prepared, fitted


def test_rgb_png_reaches_the_encoder_as_three_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(4):
        picture = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
        picture[..., 0] = 255 * (k % 2)  # the red channel alone tells the classes apart
        Image.fromarray(picture).save(tmp_path / f"p{k}.png")
        rows.append({"patient_id": f"p{k}", "path": f"p{k}.png", "y": k % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    (tmp_path / "cohort.yaml").write_text(
        _LABEL_ROWS + "modalities:\n  img: {type: image, index: index.csv, spatial_dims: 2, channels: rgb}\n"
    )
    cohort, kind, data, prepared, fitted = _fit(tmp_path, tmp_path, [16, 16])
    assert fitted.input_shape == {"spatial_dims": 2, "in_channels": 3, "size": [16, 16]}
    items = torch.stack([fitted.item(i) for i in range(4)])
    assert items.shape == (4, 3, 16, 16)
    # Red is constant within an image: after z-scoring per channel it is flat while green and blue are not.
    assert float(items[:, 0].std()) < 1e-4 < float(items[:, 1].std())
    spec = kind.encoder("img", EncoderConfig(embed_dim=4), fitted)
    assert spec.args["in_channels"] == 3
    model = build_model({"img": spec}, FusionConfig(method="concat"), 2)
    out = model.fuse(*_encode(model, items))
    assert out.logits.shape == (4, 2)


def _encode(model: torch.nn.Module, items: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    present = torch.ones((len(items), 1), dtype=torch.bool)
    return model.encode({"img": items}, present), present


def _sequences(root: Path, n: int, seed: int) -> Path:
    """``n`` patients, T1 / T2 / FLAIR on different grids; the label is the lesion radius (mm)."""
    root.mkdir()
    rng = np.random.default_rng(seed)
    grids = {"t1": [1.0, 1.0, 1.0], "t2": [0.8, 0.8, 2.0], "flair": [1.5, 1.5, 1.5]}
    rows = []
    for k in range(n):
        y = k % 2
        radius = 3.0 + 3.0 * y + rng.uniform(-0.5, 0.5)
        row = {"patient_id": f"p{k:02d}", "y": y}
        for name, spacing in grids.items():
            shape = [int(round(20 / s)) for s in spacing]
            axes = [(np.arange(m) + 0.5) * s - 10 for m, s in zip(shape, spacing, strict=True)]
            grid = np.meshgrid(*axes, indexing="ij")
            ball = (np.sqrt(sum(g**2 for g in grid)) <= radius).astype(np.float32)
            image = ball + 0.2 * rng.standard_normal(shape).astype(np.float32)
            nib.save(nib.Nifti1Image(image, np.diag([*spacing, 1.0])), root / f"{name}_{k:02d}.nii.gz")
            row[name] = f"{name}_{k:02d}.nii.gz"
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    (root / "cohort.yaml").write_text(
        _LABEL_ROWS + "modalities:\n  img: {type: image, index: index.csv, spatial_dims: 3, "
        "path_columns: [t1, t2, flair]}\n"
    )
    return root


def test_three_sequences_on_different_grids_are_stacked_and_train(tmp_path: Path) -> None:
    root = _sequences(tmp_path / "c", 8, seed=0)
    cohort, kind, data, prepared, fitted = _fit(root, tmp_path, [12], spacing=[2.0, 2.0, 2.0])
    assert fitted.input_shape["in_channels"] == 3
    items = torch.stack([fitted.item(i) for i in range(cohort.n)])
    assert items.shape == (8, 3, 12, 12, 12)
    # Every sequence was resampled onto the first's grid: the lesions' centres coincide within half a voxel.
    weights = items.clamp(min=1.0) - 1.0
    axes = torch.meshgrid(*[torch.arange(12.0)] * 3, indexing="ij")
    centres = torch.stack([(weights * a).sum(dim=(2, 3, 4)) / weights.sum(dim=(2, 3, 4)) for a in axes], dim=-1)
    assert float((centres - centres[:, :1]).abs().max()) < 0.5, centres
    restored = kind.restore(kind.describe(data, kind.settings_model()), fitted.state())
    torch.testing.assert_close(restored.transform(kind.raw(data, np.arange(3))), items[:3], atol=1e-5, rtol=0)
    frame = pd.DataFrame(kind.to_frame("img", data, np.arange(cohort.n)))
    assert list(frame.columns) == ["img.t1", "img.t2", "img.flair"]
    model = build_model({"img": kind.encoder("img", EncoderConfig(embed_dim=4), fitted)}, FusionConfig(), 2)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    y = torch.as_tensor(cohort.y)
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model.fuse(*_encode(model, items)).logits, y)
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


def test_augmented_items_repeat_per_seed_and_differ_between_workers(tmp_path: Path) -> None:
    root = synthesize_cohort(tmp_path / "s", patients=8, spatial_dims=2, size=12, seed=0, n_genes=20)
    cohort = load_cohort(root)
    data = cohort.modalities["imaging"]
    settings = data.kind.settings_model.model_validate({"augment": {"flip_axes": [0, 1], "noise": 0.1, "prob": 1}})
    prepared = data.kind.prepare(data, settings, RunCache(tmp_path / "cache", image_size=[12]))
    fitted = data.kind.fit(data, prepared, np.arange(8), EncoderConfig(), settings, cohort.root)
    inputs = FoldInputs({"imaging": fitted})

    def draws(seed: int) -> torch.Tensor:
        dataset = PatientDataset(np.zeros(8, dtype=int), cohort, ["imaging"], inputs, train=True, augment=True)
        loader = make_loader(dataset, batch_size=2, shuffle=False, seed=seed, num_workers=2)
        return torch.cat([batch["imaging"] for batch in loader])

    first, again, other = draws(3), draws(3), draws(4)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert not torch.equal(first, other)
    # Patient 0 eight times, batches of two from two workers: no two batches may be the same random draw.
    batches = first.reshape(4, 2, -1)
    assert all(not torch.equal(batches[a], batches[b]) for a in range(4) for b in range(a + 1, 4))


def test_synthetic_volumes_with_their_own_spacing_get_one_physical_spacing(tmp_path: Path) -> None:
    root = synthesize_cohort(
        tmp_path / "s", patients=12, size=16, seed=0, n_genes=20, voxel_spacing=(0.7, 2.1), modalities={"img": "image"}
    )
    spacings = {nib.load(root / p).header.get_zooms() for p in pd.read_csv(root / "images.csv")["path"]}
    assert len(spacings) == 12 and min(min(s) for s in spacings) >= 0.7 and max(max(s) for s in spacings) <= 2.1
    cohort, kind, data, prepared, fitted = _fit(root, tmp_path, [8])
    assert prepared.pipeline.fit == "crop"
    # Median spacing about 1.4 mm, coarsened so the median 16 mm field of view fits in 8 voxels: 2 mm.
    assert prepared.pipeline.spacing == pytest.approx([2.0, 2.0, 2.0], abs=0.15)
    (note,) = kind.notes(data, prepared)
    assert "spacing auto" in note and "12 images" in note
    assert fitted.item(0).shape == (1, 8, 8, 8)


@pytest.mark.slow
def test_two_runs_with_two_workers_and_augmentation_give_identical_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinfuse.pipeline import run_experiment

    root = _sequences(tmp_path / "c", 16, seed=1)
    monkeypatch.chdir(tmp_path)
    config = {
        "name": "workers",
        "cohort": str(root),
        "encoders": {"img": {"name": "resnet10", "embed_dim": 4}},
        "inputs": {"img": {"spacing": [2.5, 2.5, 2.5], "augment": {"flip_axes": [0, 1, 2], "noise": 0.05}}},
        "training": {"epochs": 2, "batch_size": 4, "image_size": [8], "num_workers": 2, "augment": True},
        "evaluation": {"folds": 2, "test_fraction": 0.25, "bootstrap": 10},
        "explain": {"enabled": False},
        "report": {"enabled": False},
        "tracking": {"log_model": False},
        "device": "cpu",
    }
    (tmp_path / "workers.yaml").write_text(yaml.safe_dump(config))
    metrics = []
    for _ in range(2):
        outcome = run_experiment(load_config(tmp_path / "workers.yaml"), project_dir=tmp_path)
        metrics.append(json.loads((Path(outcome.run_dir) / "metrics.json").read_text()))
    assert metrics[0] == metrics[1]


@pytest.mark.parametrize(
    ("size", "expected"),
    [([16, 16, 16], "cnn"), ([32, 32, 32], "cnn"), ([48, 48, 48], "resnet10"), ([224, 224], "resnet10")],
)
def test_default_image_encoder_follows_the_input_size(size: list[int], expected: str) -> None:
    from types import SimpleNamespace

    from clinfuse.kinds import get_kind

    kind = get_kind("image")
    fitted = SimpleNamespace(input_shape={"spatial_dims": len(size), "in_channels": 1, "size": size})
    assert kind.encoder("img", EncoderConfig(embed_dim=4), fitted).name == expected
    # A configured encoder always wins over the size rule.
    assert kind.encoder("img", EncoderConfig(name="resnet18", embed_dim=4), fitted).name == "resnet18"
