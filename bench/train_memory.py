"""Benchmark: peak resident memory of training on a 2,000-patient 3D cohort, memory cache against disk cache.

Each case runs in a fresh interpreter: load the cohort, build the image stores exactly as ``clinfuse run`` does
(``training.cache: memory`` fills a MONAI ``CacheDataset`` with every volume up front; ``disk`` uses a
``PersistentDataset``), fit one fold's tables and train one epoch with ``train_fold``. The epoch is cut to
``train_patients`` patients: after the first batch, a step's tensors are freed, so more batches add time but not
memory, while the cache holds all ``patients`` volumes either way. The memory-minus-disk difference divided by
the number of patients is the cache's cost per patient, which gives the memory model in docs/scaling.md.

Run: ``python bench/train_memory.py [--patients 2000] [--size 24]`` (prints JSON).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import run_in_child

from clinfuse.cohort.synthetic import synthesize_cohort

_GIB = 1024**3


def _train_one_epoch(path: str, size: int, cache: str, train_patients: int, cache_dir: str) -> dict[str, Any]:
    """Child side: cache every volume, then one epoch of ``train_fold`` on ``train_patients`` patients."""
    import torch
    from throughput import bench_config

    from clinfuse.cohort import load_cohort
    from clinfuse.fusion import build_model
    from clinfuse.training.cpu import training_process
    from clinfuse.training.data import (
        PatientDataset,
        encoder_specs,
        fit_fold_inputs,
        make_loader,
        prepare_inputs,
    )
    from clinfuse.training.loop import train_fold

    config = bench_config(Path(path), size, batch_size=16, epochs=1)
    config.training.cache = cache
    cohort = load_cohort(path)
    modalities = list(cohort.modalities)
    start = time.perf_counter()
    prepared = prepare_inputs(cohort, modalities, config, Path(cache_dir))
    cache_seconds = time.perf_counter() - start
    train_idx = np.arange(train_patients)
    val_idx = np.arange(train_patients, train_patients + 16)
    inputs = fit_fold_inputs(cohort, modalities, config, np.arange(cohort.n), prepared)
    model = build_model(encoder_specs(cohort, modalities, config, inputs), config.fusion, 1)
    train = make_loader(PatientDataset(train_idx, cohort, modalities, inputs, True), 16, True, 0)
    val = make_loader(PatientDataset(val_idx, cohort, modalities, inputs), 16, False, 0)
    start = time.perf_counter()
    with training_process(torch.device("cpu")):
        train_fold(
            model,
            train,
            val,
            config.training,
            "binary",
            cohort.y[train_idx],
            cohort.y[val_idx],
            None,
            torch.device("cpu"),
            0,
            1,
        )
    return {"cache_seconds": cache_seconds, "epoch_seconds": time.perf_counter() - start}


def benchmark_train_memory(
    patients: int = 2000, size: int = 24, train_patients: int = 128, seed: int = 0
) -> dict[str, Any]:
    """Peak RSS of a one-epoch run with every volume cached in memory, against the disk cache.

    Args:
        patients: patients in the cohort (all cached).
        size: volume side in voxels.
        train_patients: patients the timed epoch trains on (memory does not grow with more batches).
        seed: seeds the cohort.

    Returns:
        Peak RSS of both cases (MiB), the cache's cost per patient and per voxel, and extrapolations.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = synthesize_cohort(Path(tmp) / "cohort", patients=patients, spatial_dims=3, size=size, seed=seed)
        runs = {
            cache: run_in_child(
                "train_memory",
                "_train_one_epoch",
                path=str(root),
                size=size,
                cache=cache,
                train_patients=min(train_patients, patients - 16),
                cache_dir=str(Path(tmp) / f"cache_{cache}"),
            )
            for cache in ("memory", "disk")
        }
    voxels = size**3
    memory, disk = runs["memory"]["peak_rss_mib"], runs["disk"]["peak_rss_mib"]
    per_patient = max(memory - disk, 0.0) * 1024**2 / patients
    # Bytes the cache holds per voxel: float32 is 4; the rest is per-item overhead (dicts, tensor headers).
    per_voxel = per_patient / voxels
    fixed_gib = disk / 1024
    budget = 24 * _GIB - disk * 1024**2

    def fits(side: int) -> int:
        return int(budget / (max(per_voxel, 4.0) * side**3))

    return {
        "patients": patients,
        "volume": f"{size}^3",
        "memory_cache_peak_rss_mib": memory,
        "disk_cache_peak_rss_mib": disk,
        "memory_cache_fill_seconds": runs["memory"]["cache_seconds"],
        "cache_bytes_per_patient": per_patient,
        "cache_bytes_per_voxel": per_voxel,
        "fixed_peak_gib": fixed_gib,
        "memory_cache_peak_gib": memory / 1024,
        "fits_24_gib": memory / 1024 < 24,
        "max_patients_in_24_gib_at_64^3": fits(64),
        "max_patients_in_24_gib_at_128^3": fits(128),
        "max_patients_in_24_gib_at_256^3": fits(256),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--train-patients", type=int, default=128)
    args = parser.parse_args()
    print(json.dumps(benchmark_train_memory(args.patients, args.size, args.train_patients), indent=2))


if __name__ == "__main__":
    main()
