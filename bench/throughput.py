"""Benchmark: training throughput of the real clinfuse data path against the model's compute bound.

Pipeline: a synthetic 3D cohort is loaded like ``clinfuse run`` does (memory-cached ``ImageStore``, fold-fitted
tables, ``PatientDataset`` + ``make_loader``) and trained with ``training.loop.train_fold``; an epoch's time is
timed around a multi-epoch ``train_fold`` call minus its validation passes (timed apart), per epoch.
Compute bound: the same architecture's forward + backward + optimiser step on the same batches already
collated in memory. The ratio says how much of the epoch the data path costs, independent of machine speed.

Run: ``python bench/throughput.py [--patients 64] [--size 24]`` (prints JSON).
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
from clinfuse.training.cpu import training_process
from clinfuse.training.data import (
    PatientDataset,
    encoder_specs,
    fit_fold_inputs,
    make_loader,
    prepare_inputs,
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


def _bound_epoch(
    model: torch.nn.Module,
    batches: list[dict[str, Any]],
    config: ExperimentConfig,
    optimizer: torch.optim.Optimizer,
    loss_fn: Any,
    generator: torch.Generator,
) -> float:
    """Seconds of one epoch of forward + backward + step on pre-collated batches (no data path at all)."""
    model.train()
    start = time.perf_counter()
    for batch in batches:
        present = modality_dropout(batch["present"], config.training.modality_dropout, generator)
        logits = model({m: batch[m] for m in model.modalities}, present).logits.float()
        loss = loss_fn(logits, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def benchmark_throughput(
    patients: int = 64, size: int = 24, batch_size: int = 16, rounds: int = 3, epochs: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Patients/s of a clinfuse training epoch (3D gated fusion) and its ratio to the compute bound.

    Pipeline and compute-bound epochs alternate for ``rounds`` rounds and the fastest of each is kept, so that
    other processes sharing the CPU slow both sides alike instead of skewing the ratio.

    Args:
        patients: training patients (plus one validation batch, whose pass is timed and subtracted).
        size: volume side in voxels (cohort and model input).
        batch_size: training batch size.
        rounds: alternating pipeline/compute-bound measurements.
        epochs: epochs per measurement; a real ``train_fold`` runs many epochs, so its per-call set-up (optimiser
            state, first best-weights copy) is spread over ``epochs`` here as it is in training.
        seed: seeds cohort and model.
    """
    n_val = batch_size
    cpu = torch.device("cpu")
    # The same process-wide switches `clinfuse run` sets (denormal flushing, kept heap, deterministic kernels).
    with training_process(cpu), tempfile.TemporaryDirectory() as tmp:
        root = synthesize_cohort(
            Path(tmp) / "cohort",
            patients=patients + n_val,
            spatial_dims=3,
            size=size,
            seed=seed,
            missing_rate={"genomic": 0.2},
        )
        config = bench_config(root, size, batch_size, epochs=epochs)
        cohort = load_cohort(root)
        modalities = list(cohort.modalities)
        start = time.perf_counter()
        prepared = prepare_inputs(cohort, modalities, config, Path(tmp) / "cache")
        cache_seconds = time.perf_counter() - start
        train_idx, val_idx = np.arange(patients), np.arange(patients, patients + n_val)
        inputs = fit_fold_inputs(cohort, modalities, config, train_idx, prepared)
        specs = encoder_specs(cohort, modalities, config, inputs)
        torch.manual_seed(seed)
        # One model for both sides: "the same model's forward+backward", with the same weights as they evolve.
        model = build_model(specs, config.fusion, 1)
        train_ds = PatientDataset(train_idx, cohort, modalities, inputs, True, False, seed)
        val_ds = PatientDataset(val_idx, cohort, modalities, inputs)
        train_loader = make_loader(train_ds, batch_size, True, seed)
        val_loader = make_loader(val_ds, batch_size, False, seed)
        start = time.perf_counter()
        batches = list(train_loader)
        data_seconds = time.perf_counter() - start
        loss_fn = _loss_fn("binary", cohort.y[train_idx], 1, True, cpu)
        optimizer = _make_optimizer(model, config.training)
        generator = torch.Generator().manual_seed(seed)
        pipeline, bound = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            train_fold(
                model,
                train_loader,
                val_loader,
                config.training,
                "binary",
                cohort.y[train_idx],
                cohort.y[val_idx],
                None,
                cpu,
                seed,
                1,
            )
            elapsed = time.perf_counter() - start
            start = time.perf_counter()
            predict(model, val_loader, cpu)
            validation = time.perf_counter() - start
            pipeline.append((elapsed - epochs * validation) / epochs)
            bound_total = sum(
                _bound_epoch(model, batches, config, optimizer, loss_fn, generator) for _ in range(epochs)
            )
            bound.append(bound_total / epochs)
    pipeline_epoch, bound_epoch = min(pipeline), min(bound)
    return {
        "patients": patients,
        "volume": f"{size}^3",
        "batch_size": batch_size,
        "cache_fill_seconds": cache_seconds,
        "data_path_epoch_seconds": data_seconds,
        "pipeline_epoch_seconds": pipeline_epoch,
        "pipeline_patients_per_s": patients / pipeline_epoch,
        "compute_bound_epoch_seconds": bound_epoch,
        "compute_bound_patients_per_s": patients / bound_epoch,
        "throughput_ratio": bound_epoch / pipeline_epoch,
        "data_path_share": data_seconds / pipeline_epoch,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(benchmark_throughput(args.patients, args.size, args.batch_size, args.rounds), indent=2))


if __name__ == "__main__":
    main()
