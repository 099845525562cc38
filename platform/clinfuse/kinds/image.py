"""The ``image`` kind: 2D pictures and slices, 3D volumes (NIfTI, DICOM file or series folder, PNG, JPEG).

An index table maps each patient to one file or DICOM folder. Volumes are loaded, normalised and resized once
per run through MONAI transforms and cached (memory or disk); they need no fold-fitted preprocessing. The
default encoder is a MONAI ResNet; explanations are occlusion saliency maps drawn over the image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose, RandAffine, RandFlip
from PIL import Image

from clinfuse.cohort.images import image_format, image_transforms, inspect_image
from clinfuse.cohort.load import CohortReader, ModalityData
from clinfuse.config import EncoderConfig
from clinfuse.errors import RunError
from clinfuse.explain.saliency import image_saliency, save_overlay
from clinfuse.kinds.base import (
    ExplainContext,
    Fitted,
    KindSettings,
    LoadedModality,
    Mismatch,
    ModalityEntry,
    ModalityKind,
    RunCache,
    SynthResult,
)
from clinfuse.kinds.registry import register_kind


class ImageEntry(ModalityEntry):
    """An imaging modality: an index table mapping each patient to one image file or DICOM folder.

    Args:
        type: ``image``.
        index: CSV or Parquet with the id column and ``path_column``.
        path_column: column holding paths relative to the cohort folder.
        spatial_dims: 2 (PNG/JPEG/2D DICOM/2D NIfTI) or 3 (NIfTI volume, DICOM series folder).
    """

    type: Literal["image"]
    index: str
    path_column: str = "path"
    spatial_dims: Literal[2, 3]


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
        assert modality.paths is not None
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


class ImageFitted(Fitted):
    """Images need no fold-fitted preprocessing: items come from the run's cache, new images through the same
    MONAI transforms."""

    def __init__(self, spatial_dims: int, size: list[int], store: ImageStore | None = None) -> None:
        self.spatial_dims, self.size, self.store = spatial_dims, list(size), store
        self.input_shape = {"spatial_dims": spatial_dims, "in_channels": 1, "size": list(size)}

    def item(self, patient: int) -> torch.Tensor:
        assert self.store is not None
        return self.store.get(patient)

    def transform(self, raw: list[str]) -> torch.Tensor:
        steps = image_transforms(self.spatial_dims, self.size, augment=False)
        volumes = [torch.as_tensor(np.asarray(steps({"image": str(path)})["image"])) for path in raw]
        return torch.stack(volumes) if volumes else torch.zeros((0, 1, *self.size))

    def state(self) -> Any:
        return {"spatial_dims": self.spatial_dims, "size": self.size}

    def augmenter(self, seed: int, augment: bool) -> Callable[[int], torch.Tensor] | None:
        if not augment:
            return None
        transform = _augmentation(self.spatial_dims)
        transform.set_random_state(seed=seed)
        return lambda patient: torch.as_tensor(np.asarray(transform(self.item(patient))), dtype=torch.float32)


@register_kind
class ImageKind(ModalityKind):
    """Medical images and photographs (one file or DICOM series per patient)."""

    name = "image"
    entry_model = ImageEntry
    encoder_family = "spatial"
    default_encoder = "resnet10"
    synthesis_order = 30
    attribution = (
        "occlusion saliency is the logit drop when a patch around each voxel is occluded; it is a map, it does "
        "not sum to the prediction."
    )

    def load(self, name: str, entry: Any, reader: CohortReader, verify: bool) -> LoadedModality | None:
        frame, ids = reader.table(entry.index, f"modalities.{name}.index")
        if frame is None or ids is None:
            return None
        if entry.path_column not in frame.columns:
            reader.problem(
                f"{entry.index}: column '{entry.path_column}' named in cohort.yaml (modalities.{name}.path_column) "
                "does not exist; fix the name or the table"
            )
            return None
        paths: dict[str, Path] = {}
        shapes: dict[str, int] = {}
        spacings: dict[str, int] = {}
        for row, (pid, relative) in enumerate(zip(ids, frame[entry.path_column], strict=True), start=1):
            if not isinstance(pid, str) or not isinstance(relative, str):
                continue
            where = f"{entry.index} row {row} column '{entry.path_column}' ({relative})"
            path = reader.resolve(relative)
            if path is None:
                reader.problem(
                    f"{where}: path resolves outside the cohort folder ('..' or a symlink); move the image in"
                )
                continue
            if not path.exists():
                reader.problem(f"{where}: image not found; fix the path or remove the row")
                continue
            if image_format(path) is None:
                reader.problem(f"{where}: unsupported image format; use NIfTI, DICOM, PNG or JPEG")
                continue
            if verify:
                info, found = inspect_image(path, entry.spatial_dims, where)
                reader.problems += found
                if found:
                    continue
                shape, spacing = str(info.get("shape")), str(info.get("spacing"))
                shapes[shape] = shapes.get(shape, 0) + 1
                spacings[spacing] = spacings.get(spacing, 0) + 1
            paths.setdefault(pid, path)
        return LoadedModality(
            ids=set(paths),
            listed=set(ids.dropna()),
            paths=paths,
            info={"spatial_dims": entry.spatial_dims},
            details={
                "missing": {entry.path_column: int(frame[entry.path_column].isna().sum())},
                "shapes": shapes,
                "spacings": spacings,
            },
            files=sorted(set(paths.values())),
            tables=[entry.index],
        )

    def summarise(self, data: ModalityData, details: dict[str, Any]) -> dict[str, Any]:
        return {
            "spatial_dims": data.spatial_dims,
            "shapes": details.get("shapes", {}),
            "spacings": details.get("spacings", {}),
        }

    def summary_lines(self, name: str, info: dict[str, Any]) -> list[str]:
        if not info.get("shapes"):
            return []
        return [
            f"  {name} shapes: " + ", ".join(f"{k} x{v}" for k, v in info["shapes"].items()),
            f"  {name} spacings: " + ", ".join(f"{k} x{v}" for k, v in info.get("spacings", {}).items()),
        ]

    def prepare(self, data: ModalityData, settings: KindSettings, cache: RunCache) -> ImageStore:
        size = image_size_for(cache.image_size, int(data.spatial_dims or 3))
        return ImageStore(data, size, cache.mode, cache.folder, cache.num_workers)

    def fit(
        self,
        data: ModalityData,
        prepared: Any,
        train: np.ndarray,
        encoder: EncoderConfig,
        settings: KindSettings,
        root: Path,
    ) -> ImageFitted:
        return ImageFitted(prepared.spatial_dims, prepared.size, prepared)

    def describe(self, data: ModalityData, settings: KindSettings) -> dict[str, Any]:
        return {"spatial_dims": int(data.spatial_dims or 3)}

    def raw(self, data: ModalityData, rows: np.ndarray) -> list[str]:
        assert data.paths is not None
        return [str(data.paths[i]) for i in rows]

    def frame_columns(self, modality: str, description: dict[str, Any]) -> list[str]:
        return [f"{modality}.path"]

    def to_frame(self, modality: str, data: ModalityData, rows: np.ndarray) -> dict[str, list[Any]]:
        assert data.paths is not None
        return {f"{modality}.path": [str(data.paths[i]) if data.present[i] else None for i in rows]}

    def from_frame(self, modality: str, description: dict[str, Any], frame: pd.DataFrame) -> tuple[Any, np.ndarray]:
        column = f"{modality}.path"
        if column not in frame.columns:
            raise RunError(f"input frame: missing column '{column}' (image path of modality '{modality}')")
        values = frame[column]
        present = ~(values.isna() | values.astype(str).str.strip().isin(["", "nan", "None"])).to_numpy()
        return [str(v) for v in values[present]], present

    def restore(self, description: dict[str, Any], state: Any) -> ImageFitted:
        return ImageFitted(int(state["spatial_dims"]), list(state["size"]))

    def compatibility(
        self, modality: str, description: dict[str, Any], states: list[Any], data: ModalityData, *, max_missing: float
    ) -> list[Mismatch]:
        # Colour channels are averaged to one on loading (cohort/images.py), so only the dimensionality can
        # differ in a way the encoder cannot take.
        trained, found = int(description["spatial_dims"]), int(data.spatial_dims or 3)
        if trained != found:
            return [
                Mismatch(
                    f"modality '{modality}': the model was trained on {trained}D images, the cohort declares "
                    f"{found}D (spatial_dims); use images of the training dimensionality",
                    error=True,
                )
            ]
        return []

    def explain(self, context: ExplainContext) -> None:
        """Occlusion saliency of the most confident patients' images, averaged over fold models."""
        for position in context.confident_patients():
            patient = int(context.indices[position])
            maps = []
            for view in context.folds:
                embeddings, present, inputs = view.embed(np.array([patient]))
                maps.append(
                    image_saliency(
                        view.model,
                        context.modality,
                        inputs[context.modality],
                        embeddings,
                        present,
                        int(context.classes[position]),
                    )
                )
            image = context.folds[0].fitted[context.modality].item(patient).numpy()
            pseudo = context.pseudo_ids[patient]
            save_overlay(
                image,
                np.mean(maps, axis=0),
                context.overlay_path(patient),
                f"{pseudo}: {context.modality} occlusion saliency",
            )

    def synthesize(
        self,
        name: str,
        out: Path,
        latent: np.ndarray,
        present: np.ndarray,
        ids: list[str],
        rng: np.random.Generator,
        options: dict[str, Any],
    ) -> SynthResult:
        """Noisy backgrounds with one bright ball whose radius and contrast grow with the latent."""
        spatial_dims, size = int(options.get("spatial_dims", 3)), int(options.get("size", 24))
        keep = np.flatnonzero(present)
        grid = np.stack(np.meshgrid(*[np.arange(size, dtype=np.float32)] * spatial_dims, indexing="ij"))
        # The first image modality writes images/ and images.csv; a second one gets its own names.
        first = int(options.get("ordinal", 0)) == 0
        prefix = "images" if first else f"images_{name}"
        (out / prefix).mkdir(parents=True, exist_ok=True)
        paths = []
        for i in keep:
            f = latent[i]
            radius = size * (0.17 + 0.08 * np.tanh(f))
            contrast = 1.0 + 0.5 * np.tanh(f)
            margin = radius + 1
            centre = rng.uniform(margin, size - 1 - margin, size=spatial_dims).astype(np.float32)
            distance = np.sqrt(((grid - centre.reshape(-1, *[1] * spatial_dims)) ** 2).sum(axis=0))
            ball = np.clip(radius + 0.5 - distance, 0.0, 1.0)  # soft edge: partial-volume like a real scan
            image = (0.2 + 0.25 * rng.standard_normal(grid.shape[1:]) + contrast * ball).astype(np.float32)
            # Files are numbered, not named after patients, so paths printed in messages carry no patient id.
            if spatial_dims == 3:
                relative = f"{prefix}/img{i + 1:04d}.nii.gz"
                nib.save(nib.Nifti1Image(image, np.eye(4)), out / relative)
            else:
                relative = f"{prefix}/img{i + 1:04d}.png"
                Image.fromarray(np.clip((image + 0.5) / 2.5 * 255, 0, 255).astype(np.uint8)).save(out / relative)
            paths.append(relative)
        index = f"{prefix}.csv"
        pd.DataFrame({"patient_id": [ids[i] for i in keep], "path": paths}).to_csv(out / index, index=False)
        entry = {"type": "image", "index": index, "path_column": "path", "spatial_dims": spatial_dims}
        return SynthResult(entry, ["lesion radius", "lesion contrast"])
