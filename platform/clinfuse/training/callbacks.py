"""What training reports while it runs, through callbacks (the Lightning way).

Training calls these hooks and knows nothing of MLflow or the console; the pipeline layer attaches the
callbacks it wants (MLflow logging on the main rank, the live progress display). A notebook that calls
:func:`~clinfuse.training.run.train_model` without callbacks gets no tracking at all.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path


class TrainingCallback:
    """Hooks called by :func:`~clinfuse.training.run.train_model`; override the ones you need."""

    def fold_scope(self, model: str, fold: int) -> AbstractContextManager[object]:
        """A context entered around the training of one fold that is not reused from a checkpoint."""
        return nullcontext()

    def on_epoch(self, model: str, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        """After each epoch: ``train_loss`` and the validation metrics (``val_<metric>``). A model with a linear
        base also reports epoch 0, its fitted start before any training step (validation metrics only)."""

    def on_fold_end(self, model: str, fold: int, metrics: dict[str, float], best_epoch: int) -> None:
        """After a fold was trained: its validation metrics at the best epoch."""

    def on_checkpoint(self, model: str, fold: int, path: Path) -> None:
        """After a trained fold's checkpoint was written to ``path`` (main rank only)."""
