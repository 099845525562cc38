"""Benchmark: training throughput of the real clinfuse data path against the model's compute bound.

Pipeline: a synthetic 3D cohort is loaded like ``clinfuse run`` does (memory-cached ``ImageStore``, fold-fitted
tables, ``PatientDataset`` + ``make_loader``) and trained with ``training.loop.train_fold``; an epoch's time is
read between the ``on_epoch`` callbacks (first epoch dropped: warm-up) minus the validation pass, timed apart.
Compute bound: the same architecture's forward + backward + optimiser step on the same batches already
collated in memory. The ratio says how much of the epoch the data path costs, independent of machine speed.

Run: ``python bench/throughput.py [--patients 256] [--size 32]`` (prints JSON).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clinfuse.cohort import load_cohort
from clinfuse.cohort.synthetic import synthesize_cohort
from clinfuse.config import EncoderConfig, ExperimentConfig, FusionConfig, TrainingConfig
from clinfuse.fusion import build_model, modality_dropout
from clinfuse.training.data import (
    PatientDataset,
    fit_fold_tables,
    load_image_stores,
    make_loader,
    modality_specs,
)
from clinfuse.training.loop import _loss_fn, _make_optimizer, predict, train_fold


def bench_config(cohort: Path, size: int, batch_size: int, epochs: int) -> ExperimentConfig:
    """A small 3D gated-fusion config (resnet10 image encoder) used by the training benchmarks."""
    return ExperimentConfig(
        cohort=cohort,
        encoders={
            "imaging": EncoderConfig(name="resnet10", embed_dim=16),
            "clinical": EncoderConfig(embed_dim=16, hidden=[32]),
            "genomic": EncoderConfig(embed_dim=16, hidden=[64], top_k_genes=100),
        },
        fusion=FusionConfig(method="gated", hidden=32),
        training=TrainingConfig(
            epochs=epochs,
            batch_size=batch_size,
            image_size=[size] * 3,
            cache="memory",
            schedule="none",
            early_stopping={"patience": 0},
        ),
    )


def _compute_bound(model: torch.nn.Module, batches: list[dict[str, Any]], config: ExperimentConfig, y: np.ndarray,
                   epochs: int) -> float:
    """Seconds per epoch of forward + backward + step on pre-collated batches (no data path at all)."""
    loss_fn = _loss_fn("binary", y, 1, True, torch.device("cpu"))
    optimizer = _make_optimizer(model, config.training)
    generator = torch.Generator().manual_seed(0)
    model.train()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for batch in batches:
            present = modality_dropout(batch["present"], config.training.modality_dropout, generator)
            logits = model({m: batch[m] for m in model.modalities}, present).logits.float()
            loss = loss_fn(logits, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:] if len(times) > 1 else times))


def benchmark_throughput(
    patients: int = 256, size: int = 32, batch_size: int = 16, epochs: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Patients/s of a clinfuse training epoch (3D gated fusion) and its ratio to the compute bound.

    Args:
        patients: training patients (plus a validation set of a tenth of that).
        size: volume side in voxels (cohort and model input).
        batch_size: training batch size.
        epochs: epochs timed (the first is dropped as warm-up when there are more than one).
        seed: seeds cohort and model.
    """
    n_val = max(8, patients // 10)
    with tempfile.TemporaryDirectory() as tmp:
        root = synthesize_cohort(Path(tmp) / "cohort", patients=patients + n_val, spatial_dims=3, size=size,
                                 seed=seed, missing_rate={"genomic": 0.2})
        config = bench_config(root, size, batch_size, epochs)
        cohort = load_cohort(root)
        modalities = list(cohort.modalities)
        start = time.perf_counter()
        images = load_image_stores(cohort, modalities, config, Path(tmp) / "cache")
        cache_seconds = time.perf_counter() - start
        train_idx, val_idx = np.arange(patients), np.arange(patients, patients + n_val)
        tables = fit_fold_tables(cohort, modalities, config, train_idx)
        specs = modality_specs(cohort, modalities, config, tables)
        torch.manual_seed(seed)
        model = build_model(specs, config.fusion, 1)
        train_ds = PatientDataset(train_idx, cohort, modalities, tables, images, False, seed)
        val_ds = PatientDataset(val_idx, cohort, modalities, tables, images)
        train_loader = make_loader(train_ds, batch_size, True, seed)
        val_loader = make_loader(val_ds, batch_size, False, seed)
        stamps = [time.perf_counter()]
        train_fold(model, train_loader, val_loader, config.training, "binary", cohort.y[train_idx],
                   cohort.y[val_idx], None, torch.device("cpu"), seed, 1,
                   on_epoch=lambda epoch, metrics: stamps.append(time.perf_counter()))
        epoch_times = np.diff(stamps)
        start = time.perf_counter()
        predict(model, val_loader, torch.device("cpu"))
        val_seconds = time.perf_counter() - start
        pipeline_epoch = float(np.median(epoch_times[1:] if len(epoch_times) > 1 else epoch_times)) - val_seconds

        start = time.perf_counter()
        batches = list(train_loader)
        data_seconds = time.perf_counter() - start
        torch.manual_seed(seed)
        bound_model = build_model(specs, config.fusion, 1)
        bound_epoch = _compute_bound(bound_model, batches, config, cohort.y[train_idx], epochs)
    return {
        "patients": patients,
        "volume": f"{size}^3",
        "batch_size": batch_size,
        "cache_fill_seconds": cache_seconds,
        "data_only_epoch_seconds": data_seconds,
        "pipeline_epoch_seconds": pipeline_epoch,
        "pipeline_patients_per_s": patients / pipeline_epoch,
        "compute_bound_epoch_seconds": bound_epoch,
        "compute_bound_patients_per_s": patients / bound_epoch,
        "throughput_ratio": bound_epoch / pipeline_epoch,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(benchmark_throughput(args.patients, args.size, args.batch_size, args.epochs), indent=2))


if __name__ == "__main__":
    main()
