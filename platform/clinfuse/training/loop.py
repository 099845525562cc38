"""The training loop of one model on one fold: loss, optimiser, schedule, early stopping, best checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from clinfuse.config import TrainingConfig
from clinfuse.fusion import MultimodalModel, modality_dropout
from clinfuse.metric_catalog import SURVIVAL_ALIASES
from clinfuse.training.distributed import (
    current_context,
    rank_seed,
    reduce_sums,
    shard_weight,
    sync_buffers,
    wrap_model,
)
from clinfuse.training.metrics import classification_metrics, survival_metrics
from clinfuse.training.survival import cox_ph_loss


@dataclass
class Predictions:
    """Model outputs for a set of patients (cohort indices in ``index``).

    ``logits`` is ``(n, n_outputs)``; ``gates`` is ``(n, modalities)`` or ``None``.
    """

    index: np.ndarray
    logits: np.ndarray
    gates: np.ndarray | None


@dataclass
class FoldResult:
    """What training one fold produced: the best weights and the per-epoch history."""

    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)


def scores_from_logits(logits: np.ndarray, task: str) -> np.ndarray:
    """Probabilities for classification (``(n,)`` binary, ``(n, K)`` multiclass) or risk for survival."""
    if task == "binary":
        return 1.0 / (1.0 + np.exp(-logits[:, 0]))
    if task == "multiclass":
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)
    return logits[:, 0]


def evaluate_scores(
    task: str, y: np.ndarray, scores: np.ndarray, threshold: float | None, time: np.ndarray | None = None
) -> dict[str, float]:
    """Metrics of the task: classification metrics, or the survival metrics (C-indices, td AUC, IBS)."""
    if task == "survival":
        return survival_metrics(time, y.astype(bool), scores)
    return classification_metrics(y, scores, threshold, task)


def _loss_fn(task: str, y_train: np.ndarray, n_outputs: int, class_weighting: bool, device: torch.device):
    if task == "survival":
        return lambda logits, batch: cox_ph_loss(logits[:, 0], batch["time"], batch["y"].float())
    counts = np.bincount(y_train, minlength=max(n_outputs, 2)).astype(float)
    if task == "binary":
        pos_weight = None
        if class_weighting and counts[1] > 0:
            pos_weight = torch.tensor([counts[0] / counts[1]], dtype=torch.float32, device=device)
        bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        return lambda logits, batch: bce(logits[:, 0], batch["y"].float())
    weight = None
    if class_weighting:
        weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(counts), dtype=torch.float32)
        weight = weight.to(device)
    ce = nn.CrossEntropyLoss(weight=weight)
    return lambda logits, batch: ce(logits, batch["y"].long())


def _to_device(batch: dict[str, Any], modalities: list[str], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _autocast(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "off":
        return nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    if amp == "auto" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def predict(model: MultimodalModel, loader: DataLoader, device: torch.device, amp: str = "off") -> Predictions:
    """Run the model over a loader in eval mode and collect logits (and gates when the method has them)."""
    model.eval()
    indices, logits, gates = [], [], []
    for batch in loader:
        batch = _to_device(batch, model.modalities, device)
        inputs = {m: batch[m] for m in model.modalities}
        with _autocast(device, amp):
            output = model(inputs, batch["present"])
        indices.append(batch["index"].cpu().numpy())
        logits.append(output.logits.float().cpu().numpy())
        if output.gates is not None:
            gates.append(output.gates.float().cpu().numpy())
    return Predictions(
        index=np.concatenate(indices),
        logits=np.concatenate(logits).astype(np.float64),
        gates=np.concatenate(gates) if gates else None,
    )


def _make_optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        optimizer_class: Any = torch.optim.SGD
        options: dict[str, Any] = {"momentum": 0.9}
    else:
        optimizer_class = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        options = {}
    # The fused kernels update every parameter in one pass. The default per-tensor path allocates several
    # parameter-sized temporaries per step, and for a 3D ResNet that roughly doubled a CPU epoch in `make bench`
    # (page faults on tens of MB every step). Devices or torch builds without fused kernels keep the default.
    try:
        return optimizer_class(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True, **options)
    except (RuntimeError, TypeError):
        return optimizer_class(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **options)


def _improved(score: float, best: float, mode: str) -> bool:
    if math.isnan(score):
        return False
    if math.isnan(best):
        return True
    return score > best if mode == "max" else score < best


def _keep_weights(kept: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Copy the model's weights into ``kept`` (CPU tensors), reusing the buffers of an earlier copy.

    Reusing the buffers matters on CPU: a fresh copy of a 3D ResNet's weights every improving epoch means
    page-faulting tens of MB each time.
    """
    for name, value in model.state_dict().items():
        held = kept.get(name)
        if held is None or held.shape != value.shape or held.dtype != value.dtype:
            kept[name] = value.detach().to("cpu", copy=True)
        else:
            held.copy_(value.detach())


def _validation_metrics(
    model: MultimodalModel,
    loader: DataLoader,
    device: torch.device,
    amp: str,
    task: str,
    y: np.ndarray,
    time: np.ndarray | None,
) -> dict[str, float]:
    """The task's metrics on the validation patients, keyed ``val_<metric>`` (0.5 threshold for classification)."""
    scores = scores_from_logits(predict(model, loader, device, amp).logits, task)
    metrics = evaluate_scores(task, y, scores, None if task == "survival" else 0.5, time)
    return {f"val_{k}": v for k, v in metrics.items()}


def train_fold(
    model: MultimodalModel,
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: TrainingConfig,
    task: str,
    y_train: np.ndarray,
    val_y: np.ndarray,
    val_time: np.ndarray | None,
    device: torch.device,
    seed: int,
    n_outputs: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FoldResult:
    """Train ``model`` with early stopping on the validation metric and return the best weights.

    Args:
        model: the multimodal model, already on ``device``.
        train_loader: shuffled training batches.
        val_loader: validation batches (in ``val_y`` order).
        cfg: training settings (epochs, optimiser, schedule, early stopping, modality dropout, AMP).
        task: ``binary``, ``multiclass`` or ``survival``.
        y_train: training labels (event indicators for survival), for class weights.
        val_y: validation labels; ``val_time``: validation times (survival).
        device: where to train.
        seed: seeds modality dropout.
        n_outputs: logits per patient (classes for multiclass).
        on_epoch: called with ``(epoch, metrics)`` after every epoch (logging, progress).
    """
    loss_fn = _loss_fn(task, y_train, n_outputs, cfg.class_weighting, device)
    optimizer = _make_optimizer(model, cfg)
    if cfg.schedule == "cosine":
        scheduler: Any = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    elif cfg.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=cfg.early_stopping.mode, patience=max(1, cfg.early_stopping.patience // 3)
        )
    else:
        scheduler = None
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp == "fp16")
    ctx = current_context()
    # Under torchrun the training step runs through DDP; evaluation uses the plain model on the full set.
    net = wrap_model(model, ctx)
    if ctx.rank:
        # Other ranks draw their own dropout masks; rank 0 keeps the single-process random stream.
        torch.manual_seed(rank_seed(seed, ctx))
    generator = torch.Generator(device="cpu").manual_seed(rank_seed(seed, ctx))
    metric = cfg.early_stopping.metric
    if task == "survival":
        metric = SURVIVAL_ALIASES.get(metric, metric)
    best = FoldResult({}, 0, float("nan"))
    if model.linear_terms is not None:
        # The linear base alone (the penalised fit, networks off) is epoch 0: a fitted model, kept when no epoch
        # of training improves on it. Without a base, epoch 1 always records its weights below.
        with model.networks_off():
            start = _validation_metrics(model, val_loader, device, cfg.amp, task, val_y, val_time)
            _keep_weights(best.state_dict, model)
        if on_epoch is not None:
            on_epoch(0, start)
        best.history.append({"epoch": 0.0, **start})
        best.best_score = float(start.get(f"val_{metric}", float("nan")))
    stale = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, count = 0.0, 0
        for batch in train_loader:
            batch = _to_device(batch, model.modalities, device)
            present = modality_dropout(batch["present"].cpu(), cfg.modality_dropout, generator).to(device)
            inputs = {m: batch[m] for m in model.modalities}
            with _autocast(device, cfg.amp):
                logits = net(inputs, present).logits.float()
                loss = loss_fn(logits, batch)
            optimizer.zero_grad(set_to_none=True)
            # Weighting by this rank's share of the global batch turns DDP's mean into the global-batch mean.
            scaler.scale(loss * shard_weight(len(batch["y"]), ctx)).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach()) * len(batch["y"])
            count += len(batch["y"])
        total, count = reduce_sums([total, count], ctx)
        sync_buffers(model, ctx)
        metrics = {"train_loss": total / max(count, 1)}
        metrics.update(_validation_metrics(model, val_loader, device, cfg.amp, task, val_y, val_time))
        score = float(metrics.get(f"val_{metric}", float("nan")))
        if scheduler is not None:
            if cfg.schedule == "plateau":
                scheduler.step(score if not math.isnan(score) else 0.0)
            else:
                scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        best.history.append({"epoch": float(epoch), **metrics})
        if _improved(score, best.best_score, cfg.early_stopping.mode) or not best.state_dict:
            _keep_weights(best.state_dict, model)
            best.best_epoch, best.best_score = epoch, score
            stale = 0
        else:
            stale += 1
            if cfg.early_stopping.patience and stale >= cfg.early_stopping.patience:
                break
    return best
