"""Orchestration: the end-to-end workflows (run, resume, explain, report) the CLI and notebooks call."""

from __future__ import annotations

from clinfuse.pipeline.experiment import RunOutcome, prepare, run_experiment

__all__ = ["RunOutcome", "prepare", "run_experiment"]
