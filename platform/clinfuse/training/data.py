"""Per-fold model inputs: each modality's kind prepares its data once per run and fits its preprocessing per fold.

Kinds decide what is run-level (e.g. images loaded, normalised and cached once) and what is fitted on a fold's
training patients only (table scaling, signal normalisation). This module loops over the modalities and asks
their kinds; it never looks at what kind a modality is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data.utils import set_rnd
from pydantic import ValidationError
from torch.utils.data import DataLoader, get_worker_info
from torch.utils.data import Dataset as TorchDataset

from clinfuse.cohort import Cohort
from clinfuse.config import ExperimentConfig
from clinfuse.encoders import EncoderSpec
from clinfuse.errors import ConfigError
from clinfuse.kinds import Fitted, KindSettings, RunCache


def kind_settings(config: ExperimentConfig, cohort: Cohort, modality: str) -> KindSettings:
    """The ``inputs.<modality>`` settings of the config, validated by the modality's kind.

    Raises:
        ConfigError: an unknown or invalid key, one line each.
    """
    kind = cohort.modalities[modality].kind
    try:
        return kind.settings_model.model_validate(config.inputs.get(modality, {}))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(["inputs", modality, *(str(p) for p in error["loc"])])
            reason = "unknown key for this kind" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"config key '{key}': {reason} (modality {modality!r} is a {kind.name} modality)")
        raise ConfigError.from_list(problems) from None


def check_inputs(config: ExperimentConfig, cohort: Cohort) -> None:
    """Validate every ``inputs.<modality>`` block and what each kind can check of its encoder settings (family,
    files) before a run is tracked, so no run fails late on them."""
    unknown = [m for m in config.inputs if m not in cohort.modalities]
    if unknown:
        raise ConfigError.from_list(
            f"config key 'inputs.{m}': the cohort has no modality {m!r} (it has {', '.join(cohort.modalities)})"
            for m in unknown
        )
    problems = []
    for modality, data in cohort.modalities.items():
        try:
            settings = kind_settings(config, cohort, modality)
        except ConfigError as exc:
            problems += exc.problems
            continue
        problems += data.kind.config_problems(data, config.encoder_for(modality), settings, cohort.root)
    if problems:
        raise ConfigError.from_list(problems)


def input_notes(cohort: Cohort, prepared: dict[str, Any]) -> list[str]:
    """What each modality's kind says about its run-level choices (resampling, windows, padding...)."""
    return [
        note
        for name, value in prepared.items()
        for note in cohort.modalities[name].kind.notes(cohort.modalities[name], value)
    ]


def prepare_inputs(cohort: Cohort, modalities: list[str], config: ExperimentConfig, cache_dir: Path) -> dict[str, Any]:
    """Each modality's run-level preparation (e.g. the image cache), done once and shared by every fold."""
    prepared = {}
    for name in modalities:
        data = cohort.modalities[name]
        cache = RunCache(
            cache_dir / name, config.training.cache, config.training.num_workers, list(config.training.image_size)
        )
        prepared[name] = data.kind.prepare(data, kind_settings(config, cohort, name), cache)
    return prepared


@dataclass
class FoldInputs:
    """The fold-fitted preprocessing of each modality (``fitted[m].item(i)`` is patient ``i``'s input)."""

    fitted: dict[str, Fitted] = field(default_factory=dict)


def fit_fold_inputs(
    cohort: Cohort, modalities: list[str], config: ExperimentConfig, train_idx: np.ndarray, prepared: dict[str, Any]
) -> FoldInputs:
    """Fit each modality's preprocessing on the fold's training patients ``train_idx`` only."""
    inputs = FoldInputs()
    for name in modalities:
        data = cohort.modalities[name]
        settings = kind_settings(config, cohort, name)
        inputs.fitted[name] = data.kind.fit(
            data, prepared.get(name), train_idx, config.encoder_for(name), settings, cohort.root
        )
    return inputs


def encoder_specs(
    cohort: Cohort, modalities: list[str], config: ExperimentConfig, inputs: FoldInputs
) -> dict[str, EncoderSpec]:
    """Each modality's encoder as its kind chooses it for this fold's fitted inputs, in model order."""
    return {
        name: cohort.modalities[name].kind.encoder(name, config.encoder_for(name), inputs.fitted[name])
        for name in modalities
    }


class PatientDataset(TorchDataset):
    """One item per patient: each modality's input, the presence row, label and (survival) time.

    Args:
        indices: cohort indices of the patients in this split.
        cohort: the cohort (labels, presence).
        modalities: the modalities the model uses, in model order.
        inputs: the fold's fitted inputs.
        train: a training split: kinds may draw random training items (random crops of signals...).
        augment: the config's ``training.augment`` (image augmentation), used only when ``train``.
        seed: seeds those random draws so runs repeat exactly.
    """

    def __init__(
        self,
        indices: np.ndarray,
        cohort: Cohort,
        modalities: list[str],
        inputs: FoldInputs,
        train: bool = False,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        self.indices = np.asarray(indices)
        self.cohort = cohort
        self.modalities = modalities
        self.inputs = inputs
        self.presence = np.stack([cohort.modalities[m].present for m in modalities], axis=1)
        self._random = {}
        for k, m in enumerate(modalities):
            random_item = inputs.fitted[m].augmenter(seed + k, augment) if train else None
            if random_item is not None:
                self._random[m] = random_item
        # A list MONAI's set_rnd walks: each DataLoader worker reseeds these (see _seed_worker).
        self.random_items = list(self._random.values())

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        i = int(self.indices[position])
        item: dict[str, Any] = {"index": i, "present": torch.as_tensor(self.presence[i])}
        for column, m in enumerate(self.modalities):
            if m in self._random and self.presence[i, column]:
                item[m] = self._random[m](i)
            else:
                item[m] = self.inputs.fitted[m].item(i)
        item["y"] = torch.as_tensor(int(self.cohort.y[i]))
        if self.cohort.time is not None:
            item["time"] = torch.as_tensor(float(self.cohort.time[i]), dtype=torch.float32)
        return item


def _seed_worker(worker_id: int) -> None:
    """Give each DataLoader worker its own seeded random draws (the seed derives from the loader's generator)."""
    info = get_worker_info()
    if info is not None:
        set_rnd(getattr(info.dataset, "random_items", []), seed=info.seed)


def make_loader(
    dataset: PatientDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    pin: bool = False,
) -> DataLoader:
    """A seeded DataLoader: shuffling and every worker's random draws are reproducible from ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        pin_memory=pin,
        persistent_workers=num_workers > 0,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
    )
