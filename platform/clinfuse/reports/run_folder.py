"""Read a run folder (the "Training outputs" contract) tolerantly: every file may be absent.

The report never fails because an optional file is missing; it records what is missing and each section
says so. Only a folder that does not exist, or holds none of the expected files, is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from clinfuse import outputs
from clinfuse.errors import RunError

EXPECTED_FILES = (outputs.CONFIG, *outputs.JSON_FILES, *outputs.CSV_FILES)


@dataclass
class RunFolder:
    """The contents of one run folder; ``None`` marks a file that is absent or unreadable.

    Args:
        path: the run folder.
        files: parsed files keyed by file name (JSON as dicts, CSV as DataFrames, ``config.yaml`` as text).
        features: ``features_<modality>.csv`` tables keyed by modality.
        overlays: saliency PNGs (``overlays/<modality>/<patient>.png``) keyed by modality, then pseudonymous id;
            a run from before per-modality folders has them under the modality ``""``.
        missing: expected file names that are absent.
        problems: one line per file that exists but could not be read.
    """

    path: Path
    files: dict[str, Any] = field(default_factory=dict)
    features: dict[str, pd.DataFrame] = field(default_factory=dict)
    overlays: dict[str, dict[str, Path]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def get(self, name: str) -> Any:
        """A parsed file of the contract (:mod:`clinfuse.outputs`), or ``None`` when it is absent or unreadable."""
        if name not in EXPECTED_FILES:
            raise KeyError(f"{name!r} is not a file of the run folder contract (clinfuse.outputs)")
        return self.files.get(name)

    @property
    def run_info(self) -> dict[str, Any]:
        return self.files.get(outputs.RUN_INFO) or {}

    @property
    def task(self) -> str:
        """``binary``, ``multiclass`` or ``survival`` (inferred from predictions when run_info lacks it)."""
        task = self.run_info.get("task")
        if task:
            return str(task)
        predictions = self.get("predictions.csv")
        if predictions is not None:
            if "risk" in predictions.columns:
                return "survival"
            if any(c.startswith("prob_") for c in predictions.columns):
                return "multiclass"
        return "binary"

    @property
    def classes(self) -> list[str]:
        """Class names in index order (``["0", "1"]`` when run_info does not name them)."""
        classes = self.run_info.get("classes")
        if classes:
            return [str(c) for c in classes]
        predictions = self.get("predictions.csv")
        if predictions is not None:
            named = [c[len("prob_") :] for c in predictions.columns if c.startswith("prob_")]
            if named:
                return named
        return ["censored", "event"] if self.task == "survival" else ["0", "1"]

    @property
    def modalities(self) -> list[str]:
        """Modality names in presence-column order."""
        named = self.run_info.get("modalities")
        if named:
            return [str(m) for m in named]
        contributions = self.get("contributions.csv")
        if contributions is not None:
            return [c[len("phi_") :] for c in contributions.columns if c.startswith("phi_")]
        summary = self.get("cohort_summary.json") or {}
        return list(summary.get("modality_counts", {}))

    @property
    def modality_kinds(self) -> dict[str, str]:
        """Modality -> registered kind, as the run recorded it (empty for runs from before kinds)."""
        kinds = self.run_info.get("modality_kinds")
        return {str(m): str(k) for m, k in kinds.items()} if isinstance(kinds, dict) else {}

    @property
    def linear_base(self) -> bool:
        """Whether the deep models started from a linear base (``fusion.linear_base``; false in runs predating it)."""
        try:
            config = yaml.safe_load(self.get("config.yaml") or "")
        except yaml.YAMLError:
            return False
        fusion = config.get("fusion") if isinstance(config, dict) else None
        return bool(isinstance(fusion, dict) and fusion.get("linear_base", False))

    @property
    def classical_models(self) -> list[str]:
        """The run's classical baselines (``kind: classical`` in metrics.json), in metrics order."""
        metrics = self.get("metrics.json") or {}
        return [str(m) for m, entry in metrics.items() if isinstance(entry, dict) and entry.get("kind") == "classical"]

    @property
    def primary_model(self) -> str | None:
        """The model the run is about: run_info's ``model_name``, else the first fusion model in metrics."""
        name = self.run_info.get("model_name")
        if name:
            return str(name)
        metrics = self.get("metrics.json") or {}
        for model, entry in metrics.items():
            if isinstance(entry, dict) and entry.get("kind") == "fusion":
                return str(model)
        return next(iter(metrics), None)


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("top level is not an object")
    return data


def _read_csv(path: Path) -> pd.DataFrame:
    # Patient ids stay strings: a pseudonym such as "0012" must not become the number 12.
    return pd.read_csv(path, dtype={"patient": str})


def load_run_folder(run_dir: str | Path) -> RunFolder:
    """Read every file of the run-folder contract that exists under ``run_dir``.

    Args:
        run_dir: a run folder written by ``clinfuse run`` (``reports/<experiment>/<run_id>/``).

    Returns:
        The parsed run; absent files are listed in ``missing``, unreadable ones in ``problems``.

    Raises:
        RunError: the folder does not exist or holds none of the expected files.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"{path}: run folder not found; pass a folder written by 'clinfuse run'")
    run = RunFolder(path=path)
    readers = {**dict.fromkeys(outputs.JSON_FILES, _read_json), **dict.fromkeys(outputs.CSV_FILES, _read_csv)}
    readers[outputs.CONFIG] = lambda p: p.read_text(encoding="utf-8")
    for name, reader in readers.items():
        file = path / name
        if not file.is_file():
            run.missing.append(name)
            continue
        try:
            run.files[name] = reader(file)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            run.problems.append(f"{name}: could not be read ({first}); the report leaves it out")
    for modality, file in outputs.feature_files(path).items():
        try:
            run.features[modality] = _read_csv(file)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
            run.problems.append(f"{file.name}: could not be read; the report leaves it out")
    overlay_dir = path / outputs.OVERLAYS
    if overlay_dir.is_dir():
        flat = {p.stem: p for p in sorted(overlay_dir.glob("*.png"))}
        if flat:
            run.overlays[""] = flat
        for folder in sorted(p for p in overlay_dir.iterdir() if p.is_dir()):
            run.overlays[folder.name] = {p.stem: p for p in sorted(folder.glob("*.png"))}
    if not run.files and not run.features and not run.overlays:
        raise RunError(
            f"{path}: none of the run outputs ({', '.join(EXPECTED_FILES)}) are here; "
            "pass the folder of a finished run (reports/<experiment>/<run_id>/)"
        )
    return run


def label_indices(labels: pd.Series, classes: list[str]) -> np.ndarray:
    """Class indices of a label column that holds either class names or indices, shape ``(n,)``."""
    text = labels.astype(str)
    if text.isin(classes).all():
        lookup = {name: i for i, name in enumerate(classes)}
        return text.map(lookup).to_numpy(dtype=np.int64)
    return pd.to_numeric(labels, errors="coerce").fillna(-1).to_numpy(dtype=np.int64)


def held_out_predictions(run: RunFolder) -> tuple[pd.DataFrame | None, str]:
    """The primary model's held-out test predictions and a phrase saying how they were chosen."""
    predictions = run.get("predictions.csv")
    if predictions is None:
        return None, "no predictions"
    if "model" in predictions.columns and run.primary_model in set(predictions["model"].astype(str)):
        predictions = predictions[predictions["model"].astype(str) == run.primary_model]
    if "fold" in predictions.columns:
        is_test = predictions["fold"].astype(str).str.lower() == "test"
        if is_test.any():
            return predictions[is_test], "held-out test patients"
    splits = run.get("splits.csv")
    if splits is not None and {"patient", "split"} <= set(splits.columns):
        test_ids = set(splits.loc[splits["split"].astype(str).str.lower() == "test", "patient"].astype(str))
        is_test = predictions["patient"].astype(str).isin(test_ids)
        if is_test.any():
            return predictions[is_test], "held-out test patients (from splits.csv)"
    return predictions, "every row of predictions.csv (no test split is marked)"
