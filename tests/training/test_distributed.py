"""Data-parallel training: sharded batches, and a 2-process torchrun (gloo, CPU) run against a 1-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch.utils.data import Dataset

from clinfuse.training.data import make_loader
from clinfuse.training.distributed import DistContext, init_from_env, make_train_loader, shard_weight

BIN = Path(sys.executable).parent
EPOCHS, FOLDS = 2, 2


class _Indices(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _ctx(rank: int, world_size: int) -> DistContext:
    return DistContext(rank, world_size, rank, rank == 0, torch.device("cpu"))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_shards_rebuild_the_single_process_batches_every_epoch(num_workers: int) -> None:
    single = make_loader(_Indices(21), 8, True, 5, num_workers)
    ranks = [make_train_loader(_Indices(21), 8, 5, _ctx(r, 2), num_workers) for r in range(2)]
    for _ in range(3):
        expected = [sorted(b.tolist()) for b in single]
        shards = [[b.tolist() for b in loader] for loader in ranks]
        assert [sorted(a + b) for a, b in zip(*shards, strict=True)] == expected
        # Sizes 8, 8, 5 split 4/4, 4/4, 3/2: ranks never differ by more than one patient.
        assert [len(b) for b in shards[0]] == [4, 4, 3]
        assert [len(b) for b in shards[1]] == [4, 4, 2]


def test_short_last_batch_is_padded_so_every_rank_steps() -> None:
    shards = [[b.tolist() for b in make_train_loader(_Indices(9), 8, 0, _ctx(r, 3))] for r in range(3)]
    assert [len(s) for s in shards] == [2, 2, 2]
    last = [s[-1] for s in shards]
    assert last[1] == last[0] and len(last[0]) == 1


def test_without_torchrun_everything_is_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert shard_weight(7, ctx) == 1.0


def _write_config(folder: Path) -> Path:
    subprocess.run(
        [BIN / "clinfuse", "cohort", "synth", str(folder / "coh"), "--patients", "40", "--seed", "3"],
        check=True,
        capture_output=True,
    )
    config = {
        "name": "ddp",
        "cohort": str(folder / "coh"),
        "modalities": ["clinical", "genomic"],
        # Dropout off: its masks are drawn per rank, so only then is the 2-process run the 1-process run.
        "encoders": {
            "clinical": {"embed_dim": 8, "hidden": [16], "dropout": 0.0},
            "genomic": {"embed_dim": 8, "hidden": [16], "top_k_genes": 40, "dropout": 0.0},
        },
        "fusion": {"method": "gated", "hidden": 16, "dropout": 0.0},
        "compare": [],
        "training": {"epochs": EPOCHS, "batch_size": 8, "modality_dropout": 0.0},
        "evaluation": {"folds": FOLDS, "test_fraction": 0.25, "bootstrap": 20},
        "explain": {"enabled": False},
        "report": {"enabled": False},
        "tracking": {"log_model": False},
    }
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _run(command: list[str], cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _runs(folder: Path) -> tuple[Any, list[Any]]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ddp")
    return client, client.search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_two_process_run_matches_single_process_and_tracks_once(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir(), multi.mkdir()
    _run([str(BIN / "clinfuse"), "run", str(config)], single)
    _run(
        [
            str(BIN / "torchrun"),
            "--nproc-per-node",
            "2",
            "--standalone",
            "-m",
            "clinfuse",
            "run",
            str(config),
        ],
        multi,
    )

    client, runs = _runs(multi)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = Counter(r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    # Each fold once, and the classical baselines once (rank 0 fits and tracks them alone).
    assert children == {**{f"gated/fold{f}": 1 for f in range(FOLDS)}, "logistic_regression": 1, "gradient_boosting": 1}
    for run in runs:
        if "mlflow.parentRunId" in run.data.tags and "/fold" in run.info.run_name:
            # Rank 1 logging too would double every epoch's point.
            assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    artifacts = [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    assert len(artifacts) == len(set(artifacts)) and "metrics.json" in artifacts
    run_dirs = list((multi / "reports" / "ddp").iterdir())
    assert [d.name for d in run_dirs] == [parents[0].info.run_id]
    checkpoints = sorted(p.name for p in (run_dirs[0] / "checkpoints" / "gated").iterdir())
    assert checkpoints == [f"fold{f}.pt" for f in range(FOLDS)]

    (single_dir,) = (single / "reports" / "ddp").iterdir()
    expected = json.loads((single_dir / "metrics.json").read_text())["gated"]
    got = json.loads((run_dirs[0] / "metrics.json").read_text())["gated"]
    # Same global batches and gradient: equal up to float summation order (observed ~1e-8).
    for name in ("auroc", "brier", "log_loss"):
        assert got["test"][name] == pytest.approx(expected["test"][name], abs=1e-4)
    for fold_got, fold_expected in zip(got["folds"], expected["folds"], strict=True):
        assert fold_got["best_epoch"] == fold_expected["best_epoch"]
        assert fold_got["log_loss"] == pytest.approx(fold_expected["log_loss"], abs=1e-4)
    assert parents[0].data.metrics["test_log_loss"] == pytest.approx(expected["test"]["log_loss"], abs=1e-4)
