"""Per-fold tensors: fold-fitted tabular preprocessing, cached image volumes, and batches for the model.

Images need no fitted preprocessing (each volume is normalised on its own), so they are loaded and resized once
per run and cached (in memory or on disk through MONAI's datasets); tables are preprocessed per fold with
pipelines fitted on that fold's training patients only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose, RandAffine, RandFlip
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from clinfuse.cohort import Cohort, ModalityData, image_transforms
from clinfuse.cohort.preprocess import feature_groups, feature_names, fit_preprocessor, load_gene_groups
from clinfuse.config import ExperimentConfig
from clinfuse.fusion import ModalitySpec


def image_size_for(config_size: list[int], spatial_dims: int) -> list[int]:
    """The config's ``image_size`` shaped for ``spatial_dims`` (one value is repeated; extra values dropped)."""
    if len(config_size) == 1:
        return config_size * spatial_dims
    if len(config_size) < spatial_dims:
        return (config_size + [config_size[-1]] * spatial_dims)[:spatial_dims]
    return list(config_size[:spatial_dims])


class ImageStore:
    """The resized, normalised volumes of one image modality, loaded once per run.

    Args:
        modality: the cohort's image modality.
        size: spatial size every volume is resized to.
        cache: ``memory`` (CacheDataset), ``disk`` (PersistentDataset under ``cache_dir``) or ``none``.
        cache_dir: folder for the disk cache.
        num_workers: workers used to fill the memory cache.
    """

    def __init__(
        self,
        modality: ModalityData,
        size: list[int],
        cache: str = "memory",
        cache_dir: Path | None = None,
        num_workers: int = 0,
    ) -> None:
        self.size = list(size)
        self.spatial_dims = int(modality.spatial_dims or len(size))
        self._positions = {i: k for k, i in enumerate(np.flatnonzero(modality.present))}
        items = [{"image": str(modality.paths[i])} for i in self._positions]
        transform = image_transforms(self.spatial_dims, self.size, augment=False)
        if cache == "memory":
            self._data: Any = CacheDataset(
                items, transform, cache_rate=1.0, num_workers=num_workers or None, progress=False
            )
        elif cache == "disk":
            if cache_dir is None:
                raise ValueError("cache='disk' needs a cache_dir")
            self._data = PersistentDataset(items, transform, cache_dir=cache_dir)
        else:
            self._data = Dataset(items, transform)

    def get(self, patient: int) -> torch.Tensor:
        """Volume ``(1, *size)`` of one patient (cohort index); zeros when the modality is absent."""
        position = self._positions.get(patient)
        if position is None:
            return torch.zeros((1, *self.size), dtype=torch.float32)
        image = self._data[position]["image"]
        return torch.as_tensor(np.asarray(image), dtype=torch.float32).reshape(1, *self.size)


@dataclass
class FoldTables:
    """Fold-fitted preprocessing of the tabular modalities and the resulting feature matrices.

    ``features[m]`` is ``(n_patients, n_features)`` float32 for every cohort patient (rows of absent patients are
    zeros and never reach an encoder).
    """

    preprocessors: dict[str, Any] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)


def fit_fold_tables(
    cohort: Cohort, modalities: list[str], config: ExperimentConfig, train_idx: np.ndarray
) -> FoldTables:
    """Fit each tabular/genomic modality's preprocessing on ``train_idx`` and transform every patient."""
    tables = FoldTables()
    for name in modalities:
        modality = cohort.modalities[name]
        if modality.type == "image":
            continue
        preprocessor = fit_preprocessor(modality, config.encoder_for(name), train_idx)
        present_rows = np.flatnonzero(modality.present)
        transformed = np.asarray(preprocessor.transform(modality.frame.iloc[present_rows]), dtype=np.float32)
        matrix = np.zeros((len(cohort.patient_ids), transformed.shape[1]), dtype=np.float32)
        matrix[present_rows] = transformed
        tables.preprocessors[name] = preprocessor
        tables.features[name] = matrix
        tables.groups[name] = feature_groups(preprocessor, modality)
        tables.names[name] = feature_names(preprocessor, modality)
    return tables


def modality_specs(
    cohort: Cohort, modalities: list[str], config: ExperimentConfig, tables: FoldTables
) -> dict[str, ModalitySpec]:
    """The model's per-modality specs (input sizes come from the fold's fitted preprocessing)."""
    specs: dict[str, ModalitySpec] = {}
    for name in modalities:
        modality = cohort.modalities[name]
        encoder = config.encoder_for(name)
        if modality.type == "image":
            dims = int(modality.spatial_dims)
            specs[name] = ModalitySpec(
                type="image",
                encoder=encoder,
                spatial_dims=dims,
                in_channels=1,
                image_size=image_size_for(config.training.image_size, dims),
            )
        else:
            mask = None
            if encoder.gene_groups is not None:
                groups = encoder.gene_groups
                path = groups if groups.is_absolute() else cohort.root / groups
                mask = load_gene_groups(path, tables.names[name])
            specs[name] = ModalitySpec(
                type=modality.type,
                encoder=encoder,
                in_features=tables.features[name].shape[1],
                gene_mask=mask,
            )
    return specs


def _augmentation(spatial_dims: int) -> Compose:
    return Compose(
        [
            RandFlip(prob=0.5, spatial_axis=0),
            RandAffine(
                prob=0.3,
                rotate_range=[0.15] * (1 if spatial_dims == 2 else 3),
                scale_range=[0.1] * spatial_dims,
                padding_mode="zeros",
            ),
        ]
    )


class PatientDataset(TorchDataset):
    """One item per patient: each modality's input, the presence row, label and (survival) time.

    Args:
        indices: cohort indices of the patients in this split.
        cohort: the cohort (labels, presence).
        modalities: the modalities the model uses, in model order.
        tables: the fold's tabular features.
        images: image stores by modality.
        augment: apply random flips/affine to images (training only).
        seed: seeds the augmentation so runs repeat exactly.
    """

    def __init__(
        self,
        indices: np.ndarray,
        cohort: Cohort,
        modalities: list[str],
        tables: FoldTables,
        images: dict[str, ImageStore],
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        self.indices = np.asarray(indices)
        self.cohort = cohort
        self.modalities = modalities
        self.tables = tables
        self.images = images
        self.presence = np.stack([cohort.modalities[m].present for m in modalities], axis=1)
        self._augment = {m: _augmentation(s.spatial_dims) for m, s in images.items()} if augment else {}
        for k, transform in enumerate(self._augment.values()):
            transform.set_random_state(seed=seed + k)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        i = int(self.indices[position])
        item: dict[str, Any] = {"index": i, "present": torch.as_tensor(self.presence[i])}
        for m in self.modalities:
            if m in self.images:
                image = self.images[m].get(i)
                if m in self._augment and self.presence[i, self.modalities.index(m)]:
                    image = torch.as_tensor(np.asarray(self._augment[m](image)), dtype=torch.float32)
                item[m] = image
            else:
                item[m] = torch.from_numpy(self.tables.features[m][i])
        item["y"] = torch.as_tensor(int(self.cohort.y[i]))
        if self.cohort.time is not None:
            item["time"] = torch.as_tensor(float(self.cohort.time[i]), dtype=torch.float32)
        return item


def make_loader(
    dataset: PatientDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    pin: bool = False,
) -> DataLoader:
    """A seeded DataLoader (shuffling is reproducible from ``seed``)."""
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
    )


def load_image_stores(
    cohort: Cohort, modalities: list[str], config: ExperimentConfig, cache_dir: Path
) -> dict[str, ImageStore]:
    """Load (and cache) every image modality the run uses, once."""
    stores = {}
    for name in modalities:
        modality = cohort.modalities[name]
        if modality.type != "image":
            continue
        size = image_size_for(config.training.image_size, int(modality.spatial_dims))
        stores[name] = ImageStore(modality, size, config.training.cache, cache_dir / name, config.training.num_workers)
    return stores
