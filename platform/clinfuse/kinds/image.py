"""The ``image`` kind: 2D pictures and slices, 3D volumes (NIfTI, DICOM file or series folder, PNG, JPEG).

An index table maps each patient to one file or DICOM folder per channel. Images are loaded, reoriented,
resampled to one physical spacing and cropped/padded (or resized whole), normalised and cached once per run
through MONAI transforms (memory or disk); they need no fold-fitted preprocessing. Augmentation is applied to
the cached tensors of training patients. The
default encoder is a MONAI ResNet; explanations are occlusion saliency maps drawn over the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clinfuse.cohort.image_files import image_format, inspect_image, read_geometry
from clinfuse.cohort.images import AugmentRecipe, ImagePipeline, augmentation, channel_keys, image_transforms
from clinfuse.cohort.load import CohortReader, ModalityData
from clinfuse.config import EncoderConfig
from clinfuse.errors import ConfigError, RunError
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
    blank,
)
from clinfuse.kinds.image_geometry import auto_spacing, geometry_summary, overlap_problem
from clinfuse.kinds.registry import register_kind
from clinfuse.logs import steps


class ImageEntry(ModalityEntry):
    """An imaging modality: an index table mapping each patient to one image file or DICOM folder per channel.

    Args:
        type: ``image``.
        index: CSV or Parquet with the id column and the path column(s).
        path_column: column holding paths relative to the cohort folder (one channel).
        path_columns: several columns stacked as channels (e.g. ``[t1, t2, flair]``), each resampled onto the
            first's grid; replaces ``path_column``.
        spatial_dims: 2 (PNG/JPEG/2D DICOM/2D NIfTI) or 3 (NIfTI volume, DICOM series folder).
        channels: ``grey`` (colour pictures averaged to one channel) or ``rgb`` (three channels kept).
    """

    type: Literal["image"]
    index: str
    path_column: str = "path"
    path_columns: list[str] | None = Field(None, min_length=1)
    spatial_dims: Literal[2, 3]
    channels: Literal["grey", "rgb"] = "grey"

    @property
    def columns(self) -> list[str]:
        """The path columns, one per channel."""
        return list(self.path_columns or [self.path_column])


class IntensityRange(BaseModel):
    """``{ct_window: [lo, hi]}`` (HU, clipped then scaled to 0..1) or ``{percentile: [0.5, 99.5]}``."""

    model_config = ConfigDict(extra="forbid")

    ct_window: tuple[float, float] | None = None
    percentile: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _one(self) -> IntensityRange:
        if (self.ct_window is None) == (self.percentile is None):
            raise ValueError("give exactly one of ct_window: [lo, hi] or percentile: [lo, hi]")
        low, high = self.ct_window or self.percentile or (0.0, 1.0)
        if low >= high or (self.percentile is not None and not 0 <= low < high <= 100):
            raise ValueError("the range needs lo < hi (percentiles within 0..100)")
        return self


class AugmentSettings(BaseModel):
    """``inputs.<modality>.augment``: the augmentation recipe, used when ``training.augment`` is true.

    Args:
        flip_axes: spatial axes flipped at random (after ``RAS`` orientation 0 = left-right, 1 = posterior-anterior,
            2 = inferior-superior).
        rotate: rotation range in radians (+/-).
        scale: zoom range, a fraction (+/-).
        shift: intensity offset range (+/-, normalised units).
        intensity_scale: intensity factor range (+/-, a fraction).
        noise: standard deviation of Gaussian noise (normalised units).
        prob: probability of each random step.
    """

    model_config = ConfigDict(extra="forbid")

    flip_axes: list[int] = Field(default_factory=lambda: [0])
    rotate: float = Field(0.15, ge=0)
    scale: float = Field(0.1, ge=0, lt=1)
    shift: float = Field(0.0, ge=0)
    intensity_scale: float = Field(0.0, ge=0, lt=1)
    noise: float = Field(0.0, ge=0)
    prob: float = Field(0.5, ge=0, le=1)


class ImageSettings(KindSettings):
    """``inputs.<modality>`` of an image modality in the experiment config.

    Args:
        fit: ``crop`` (resample to ``spacing``, then crop/pad to ``training.image_size`` voxels: the field of view
            in mm is kept), ``resize`` (the whole image resized to ``image_size``), or ``auto`` = ``crop`` for 3D
            volumes and ``resize`` for 2D pictures.
        spacing: target voxel size in mm per axis, or ``auto`` = the median spacing of the cohort's images,
            coarsened where needed so the median field of view fits in ``image_size`` voxels.
        orientation: axis codes 3D volumes are reoriented to (``RAS``, ``LPS``...).
        intensity: ``zscore`` (per image), ``none``, ``{ct_window: [lo, hi]}`` or ``{percentile: [lo, hi]}``.
        augment: the augmentation recipe (see :class:`AugmentSettings`).
    """

    fit: Literal["auto", "crop", "resize"] = "auto"
    spacing: list[float] | Literal["auto"] = "auto"
    orientation: str = "RAS"
    intensity: Literal["zscore", "none"] | IntensityRange = "zscore"
    augment: AugmentSettings = Field(default_factory=AugmentSettings)

    @field_validator("orientation")
    @classmethod
    def _axcodes(cls, value: str) -> str:
        value = value.upper()
        if len(value) != 3 or sorted(_AXIS_OF[c] for c in value if c in _AXIS_OF) != [0, 1, 2]:
            raise ValueError("orientation must be three axis codes, one of L/R, P/A, I/S each (e.g. RAS)")
        return value

    @field_validator("spacing")
    @classmethod
    def _positive(cls, value: list[float] | str) -> list[float] | str:
        if value != "auto" and (not 1 <= len(value) <= 3 or min(value) <= 0):
            raise ValueError("spacing must be auto or 1 to 3 positive sizes in mm, e.g. [1.0, 1.0, 1.0]")
        return value

    def resolved_intensity(self) -> tuple[Any, ...] | str:
        """The intensity step as :class:`ImagePipeline` takes it."""
        if isinstance(self.intensity, str):
            return self.intensity
        if self.intensity.ct_window is not None:
            return ("ct_window", *self.intensity.ct_window)
        assert self.intensity.percentile is not None
        return ("percentile", *self.intensity.percentile)


# Inputs up to this many voxels per channel get the small default encoder (see ImageKind.default_encoder_for).
SMALL_INPUT_VOXELS = 32**3
_AXIS_OF = {"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}


def image_size_for(config_size: list[int], spatial_dims: int) -> list[int]:
    """The config's ``image_size`` shaped for ``spatial_dims`` (one value is repeated; extra values dropped)."""
    if len(config_size) == 1:
        return config_size * spatial_dims
    if len(config_size) < spatial_dims:
        return (config_size + [config_size[-1]] * spatial_dims)[:spatial_dims]
    return list(config_size[:spatial_dims])


def _counts(counts: dict[str, int], shown: int = 5) -> str:
    """The most common values with their counts, and how many distinct values there are beyond them."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} x{v}" for k, v in ranked[:shown])
    return text + (f" ... ({len(ranked)} distinct)" if len(ranked) > shown else "")


def _items(paths: list[str]) -> dict[str, str]:
    return dict(zip(channel_keys(len(paths)), paths, strict=True))


class ImageStore:
    """The preprocessed images of one image modality, computed once per run.

    Args:
        modality: the cohort's image modality.
        pipeline: the deterministic preprocessing.
        cache: ``memory`` (CacheDataset), ``disk`` (PersistentDataset under ``cache_dir``) or ``none``.
        cache_dir: folder for the disk cache.
        num_workers: workers used to fill the memory cache.
        note: what the run records about the choices made (spacing chosen...).
    """

    def __init__(
        self,
        modality: ModalityData,
        pipeline: ImagePipeline,
        cache: str = "memory",
        cache_dir: Path | None = None,
        num_workers: int = 0,
        note: str = "",
    ) -> None:
        self.pipeline, self.note = pipeline, note
        self.size = list(pipeline.size)
        self.spatial_dims = pipeline.spatial_dims
        self._positions = {i: k for k, i in enumerate(np.flatnonzero(modality.present))}
        items = [_items(channel_paths(modality, i)) for i in self._positions]
        transform = image_transforms(pipeline)
        if cache == "memory":
            with steps(f"caching {modality.name}", len(items), "images") as advance:
                self._data: Any = _ReportingCacheDataset(items, transform, advance, num_workers or None)
        elif cache == "disk":
            if cache_dir is None:
                raise ValueError("cache='disk' needs a cache_dir")
            self._data = PersistentDataset(items, transform, cache_dir=cache_dir)
            # Filled now rather than during the first epoch, so the cost shows (and is timed) as caching.
            with steps(f"caching {modality.name} on disk", len(items), "images") as advance:
                for position in range(len(items)):
                    self._data[position]
                    advance()
        else:
            self._data = Dataset(items, transform)

    def get(self, patient: int) -> torch.Tensor:
        """Image ``(channels, *size)`` of one patient (cohort index); zeros when the modality is absent."""
        shape = (self.pipeline.in_channels, *self.size)
        position = self._positions.get(patient)
        if position is None:
            return torch.zeros(shape, dtype=torch.float32)
        image = self._data[position]["image"]
        return torch.as_tensor(np.asarray(image), dtype=torch.float32).reshape(shape)


class _ReportingCacheDataset(CacheDataset):
    """MONAI's CacheDataset, filled at once, calling ``advance()`` as each item enters the cache (progress)."""

    def __init__(
        self, items: list[dict[str, str]], transform: Any, advance: Callable[[], None], num_workers: int | None
    ) -> None:
        self._advance = advance
        super().__init__(items, transform, cache_rate=1.0, num_workers=num_workers, progress=False)

    def _load_cache_item(self, idx: int) -> Any:
        item = super()._load_cache_item(idx)
        self._advance()
        return item


def channel_paths(data: ModalityData, patient: int) -> list[str]:
    """The file of each channel of one present patient, first channel first."""
    more = data.meta.get("channel_paths")
    if more is not None and more[patient] is not None:
        return [str(p) for p in more[patient]]
    assert data.paths is not None
    return [str(data.paths[patient])]


class ImageAugmenter:
    """``patient -> augmented cached image``; MONAI's ``set_rnd`` reseeds it in each DataLoader worker."""

    def __init__(self, fitted: ImageFitted, recipe: AugmentRecipe, seed: int) -> None:
        self.fitted = fitted
        self.transform = augmentation(fitted.spatial_dims, recipe)
        self.set_random_state(seed)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> ImageAugmenter:
        """Seed every random step (called by ``monai.data.utils.set_rnd``)."""
        self.transform.set_random_state(seed=seed, state=state)
        return self

    def __call__(self, patient: int) -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.transform(self.fitted.item(patient))), dtype=torch.float32)


class ImageFitted(Fitted):
    """Images need no fold-fitted preprocessing: items come from the run's cache, new images through the same
    MONAI transforms."""

    def __init__(
        self, pipeline: ImagePipeline, store: ImageStore | None = None, recipe: AugmentRecipe | None = None
    ) -> None:
        self.pipeline, self.store, self.recipe = pipeline, store, recipe or AugmentRecipe()
        self.spatial_dims, self.size = pipeline.spatial_dims, list(pipeline.size)
        self.input_shape = {
            "spatial_dims": self.spatial_dims,
            "in_channels": pipeline.in_channels,
            "size": list(self.size),
        }

    def item(self, patient: int) -> torch.Tensor:
        assert self.store is not None
        return self.store.get(patient)

    def transform(self, raw: list[list[str]]) -> torch.Tensor:
        steps = image_transforms(self.pipeline)
        volumes = [
            torch.as_tensor(np.asarray(steps(_items([paths] if isinstance(paths, str) else list(paths)))["image"]))
            for paths in raw
        ]
        return torch.stack(volumes) if volumes else torch.zeros((0, self.pipeline.in_channels, *self.size))

    def state(self) -> Any:
        return asdict(self.pipeline)

    def augmenter(self, seed: int, augment: bool) -> Callable[[int], torch.Tensor] | None:
        if not augment:
            return None
        return ImageAugmenter(self, self.recipe, seed)


@register_kind
class ImageKind(ModalityKind):
    """Medical images and photographs (one file or DICOM series per patient)."""

    name = "image"
    entry_model = ImageEntry
    settings_model = ImageSettings
    encoder_family = "spatial"
    default_encoder = "resnet10"
    small_encoder = "cnn"
    synthesis_order = 30
    attribution = (
        "occlusion saliency is the logit drop when a patch around each voxel is occluded; it is a map, it does "
        "not sum to the prediction."
    )

    def default_encoder_for(self, input_shape: dict[str, Any]) -> str:
        """``cnn`` (0.18 M parameters) for inputs up to 32³ voxels per channel, ``resnet10`` (14 M) above.

        Measured on 800-patient synthetic cohorts at 16³ (``docs/results.md``, "Right-sized defaults"): the
        small network matched or beat resnet10's test AUROC at a sixth of its CPU time per step; large scans
        keep the deeper network.
        """
        voxels = math.prod(int(v) for v in input_shape.get("size") or [])
        return self.small_encoder if 0 < voxels <= SMALL_INPUT_VOXELS else self.default_encoder

    def load(self, name: str, entry: Any, reader: CohortReader, verify: bool) -> LoadedModality | None:
        frame, ids = reader.table(entry.index, f"modalities.{name}.index")
        if frame is None or ids is None:
            return None
        columns = entry.columns
        key = "path_columns" if entry.path_columns else "path_column"
        missing_columns = [c for c in columns if c not in frame.columns]
        if missing_columns:
            reader.problem(
                f"{entry.index}: column(s) {', '.join(repr(c) for c in missing_columns)} named in cohort.yaml "
                f"(modalities.{name}.{key}) do not exist; fix the name or the table"
            )
            return None
        paths: dict[str, list[Path]] = {}
        shapes: dict[str, dict[str, int]] = {c: {} for c in columns}
        geometries: list[Any] = []
        for row, (pid, values) in enumerate(zip(ids, frame[columns].itertuples(index=False), strict=True), start=1):
            values = list(values)
            if not isinstance(pid, str) or not any(isinstance(v, str) for v in values):
                continue
            found = self._row(entry, reader, row, columns, values, verify)
            if found is None:
                continue
            files, infos = found
            if infos:
                for column, info in zip(columns, infos, strict=True):
                    shape = str(info.get("shape"))
                    shapes[column][shape] = shapes[column].get(shape, 0) + 1
                geometries.append(infos[0]["geometry"])
            paths.setdefault(pid, files)
        meta = {"channel_paths": {pid: files for pid, files in paths.items()}} if len(columns) > 1 else {}
        details: dict[str, Any] = {
            "missing": {c: int(frame[c].isna().sum()) for c in columns},
            "channels": columns,
            "shapes": shapes[columns[0]],
        }
        if len(columns) > 1:
            details["channel_shapes"] = shapes
        details |= geometry_summary(geometries)
        return LoadedModality(
            ids=set(paths),
            listed=set(ids.dropna()),
            paths={pid: files[0] for pid, files in paths.items()},
            meta=meta,
            info={"spatial_dims": entry.spatial_dims},
            details=details,
            files=sorted({f for files in paths.values() for f in files}),
            tables=[entry.index],
        )

    def _row(
        self, entry: Any, reader: CohortReader, row: int, columns: list[str], values: list[Any], verify: bool
    ) -> tuple[list[Path], list[dict[str, Any]]] | None:
        """The files of one index row (one per channel) and their inspection; None after recording a problem."""
        files, infos = [], []
        for column, relative in zip(columns, values, strict=True):
            where = f"{entry.index} row {row} column '{column}' ({relative})"
            if not isinstance(relative, str):
                reader.problem(
                    f"{entry.index} row {row} column '{column}': channel missing while other channels are given; "
                    "every patient needs every channel (or none)"
                )
                return None
            path = reader.resolve(relative)
            if path is None:
                reader.problem(
                    f"{where}: path resolves outside the cohort folder ('..' or a symlink); move the image in"
                )
                return None
            if not path.exists():
                reader.problem(f"{where}: image not found; fix the path or remove the row")
                return None
            if image_format(path) is None:
                reader.problem(f"{where}: unsupported image format; use NIfTI, DICOM, PNG or JPEG")
                return None
            if verify:
                info, found = inspect_image(path, entry.spatial_dims, where)
                reader.problems += found
                if found:
                    return None
                infos.append(info)
            files.append(path)
        if verify and len(columns) > 1:
            problem = overlap_problem(
                [i["geometry"] for i in infos], columns, f"{entry.index} row {row} ({', '.join(map(str, values))})"
            )
            if problem:
                reader.problem(problem)
                return None
        return files, infos

    def summarise(self, data: ModalityData, details: dict[str, Any]) -> dict[str, Any]:
        keys = ("channels", "shapes", "channel_shapes", "spacing_mm", "fov_mm", "orientations", "warnings")
        return {"spatial_dims": data.spatial_dims} | {k: details[k] for k in keys if k in details}

    def summary_lines(self, name: str, info: dict[str, Any]) -> list[str]:
        if not info.get("shapes"):
            return []
        lines = [f"  {name} shapes: " + _counts(info["shapes"])]
        for column, shapes in info.get("channel_shapes", {}).items():
            lines.append(f"  {name} channel {column} grids: " + _counts(shapes))
        for key, label in (("spacing_mm", "spacing (mm)"), ("fov_mm", "field of view (mm)")):
            if key in info:
                stats = info[key]
                lines.append(f"  {name} {label}: median {stats['median']}, min {stats['min']}, max {stats['max']}")
        if info.get("orientations"):
            lines.append(f"  {name} orientations: " + ", ".join(f"{k} x{v}" for k, v in info["orientations"].items()))
        return lines

    def pipeline(
        self, data: ModalityData, settings: ImageSettings, config_size: list[int]
    ) -> tuple[ImagePipeline, str]:
        """The deterministic preprocessing of a modality under ``settings`` and what the run should note."""
        entry = data.entry
        dims = int(entry.spatial_dims)
        size = image_size_for(config_size, dims)
        fit = settings.fit if settings.fit != "auto" else ("crop" if dims == 3 else "resize")
        pipeline = ImagePipeline(
            spatial_dims=dims,
            size=size,
            channels=len(entry.columns),
            colour=entry.channels,
            fit=fit,
            orientation=settings.orientation,
            intensity=settings.resolved_intensity(),
        )
        oriented = f" oriented {settings.orientation}," if dims == 3 else ""
        if fit == "resize":
            return pipeline, f"{data.name}:{oriented} whole images resized to {size} voxels (fit: resize)"
        if settings.spacing == "auto":
            present = np.flatnonzero(data.present)
            geometries = [read_geometry(Path(channel_paths(data, int(i))[0]), dims) for i in present]
            pipeline.spacing, how = auto_spacing(geometries, settings.orientation[:dims], size)
        else:
            pipeline.spacing = image_size_for([float(v) for v in settings.spacing], dims)
            how = f"resampled to {pipeline.spacing} mm (configured)"
        fov = [round(n * s, 1) for n, s in zip(size, pipeline.spacing, strict=True)]
        return pipeline, f"{data.name}:{oriented} {how}; centre crop/pad to {size} voxels = {fov} mm"

    def prepare(self, data: ModalityData, settings: KindSettings, cache: RunCache) -> ImageStore:
        assert isinstance(settings, ImageSettings)
        pipeline, note = self.pipeline(data, settings, cache.image_size)
        return ImageStore(data, pipeline, cache.mode, cache.folder, cache.num_workers, note)

    def notes(self, data: ModalityData, prepared: Any) -> list[str]:
        return [prepared.note] if prepared is not None and prepared.note else []

    def fit(
        self,
        data: ModalityData,
        prepared: Any,
        train: np.ndarray,
        encoder: EncoderConfig,
        settings: KindSettings,
        root: Path,
    ) -> ImageFitted:
        assert isinstance(settings, ImageSettings)
        recipe = settings.augment
        bad = [a for a in recipe.flip_axes if not 0 <= a < prepared.spatial_dims]
        if bad:
            raise ConfigError(
                f"config key 'inputs.{data.name}.augment.flip_axes': axes {bad} do not exist in "
                f"{prepared.spatial_dims}D images (use 0 to {prepared.spatial_dims - 1})"
            )
        augment = AugmentRecipe(**(recipe.model_dump() | {"flip_axes": tuple(recipe.flip_axes)}))
        return ImageFitted(prepared.pipeline, prepared, augment)

    def describe(self, data: ModalityData, settings: KindSettings) -> dict[str, Any]:
        entry = data.entry
        return {"spatial_dims": int(data.spatial_dims or 3), "channels": entry.columns if entry.path_columns else []}

    def raw(self, data: ModalityData, rows: np.ndarray) -> list[list[str]]:
        return [channel_paths(data, int(i)) for i in rows]

    def frame_columns(self, modality: str, description: dict[str, Any]) -> list[str]:
        channels = description.get("channels") or []
        return [f"{modality}.{c}" for c in channels] if channels else [f"{modality}.path"]

    def to_frame(self, modality: str, data: ModalityData, rows: np.ndarray) -> dict[str, list[Any]]:
        columns = self.frame_columns(modality, self.describe(data, self.settings_model()))
        values = [channel_paths(data, int(i)) if data.present[i] else [None] * len(columns) for i in rows]
        return {column: [v[k] for v in values] for k, column in enumerate(columns)}

    def from_frame(self, modality: str, description: dict[str, Any], frame: pd.DataFrame) -> tuple[Any, np.ndarray]:
        columns = self.frame_columns(modality, description)
        for column in columns:
            if column not in frame.columns:
                raise RunError(f"input frame: missing column '{column}' (image path of modality '{modality}')")
        present = np.logical_and.reduce([~blank(frame[c]).to_numpy() for c in columns])
        rows = frame.loc[present, columns]
        return [[str(v) for v in row] for row in rows.itertuples(index=False)], present

    def restore(self, description: dict[str, Any], state: Any) -> ImageFitted:
        pipeline = dict(state)
        if isinstance(pipeline.get("intensity"), list):
            pipeline["intensity"] = tuple(pipeline["intensity"])
        return ImageFitted(ImagePipeline(**pipeline))

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
        """Noisy backgrounds with one bright ball whose radius (in mm) and contrast grow with the latent.

        Options: ``spatial_dims``, ``size`` (side in voxels at 1 mm, i.e. the field of view in mm) and
        ``voxel_spacing`` ``(lo, hi)``: 3D volumes then get their own anisotropic spacing, drawn per axis from
        that range, and a grid of ``size / spacing`` voxels, so the lesion's physical size carries the signal.
        """
        spatial_dims, size = int(options.get("spatial_dims", 3)), int(options.get("size", 24))
        spacing_range = options.get("voxel_spacing")
        keep = np.flatnonzero(present)
        # The first image modality writes images/ and images.csv; a second one gets its own names.
        first = int(options.get("ordinal", 0)) == 0
        prefix = "images" if first else f"images_{name}"
        (out / prefix).mkdir(parents=True, exist_ok=True)
        paths = []
        for i in keep:
            f = latent[i]
            spacing = np.ones(spatial_dims)
            if spacing_range is not None and spatial_dims == 3:
                spacing = rng.uniform(spacing_range[0], spacing_range[1], size=spatial_dims)
            shape = np.maximum(np.round(size / spacing).astype(int), 4)
            radius = size * (0.17 + 0.08 * np.tanh(f))  # mm
            contrast = 1.0 + 0.5 * np.tanh(f)
            margin = radius + 1
            centre = rng.uniform(margin, size - 1 - margin, size=spatial_dims)
            grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij")
            distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
            # Soft edge one voxel wide: partial volume like a real scan.
            ball = np.clip((radius - distance) / spacing.mean() + 0.5, 0.0, 1.0)
            image = (0.2 + 0.25 * rng.standard_normal(tuple(shape)) + contrast * ball).astype(np.float32)
            # Files are numbered, not named after patients, so paths printed in messages carry no patient id.
            if spatial_dims == 3:
                relative = f"{prefix}/img{i + 1:04d}.nii.gz"
                nib.save(nib.Nifti1Image(image, np.diag([*spacing, 1.0])), out / relative)
            else:
                relative = f"{prefix}/img{i + 1:04d}.png"
                Image.fromarray(np.clip((image + 0.5) / 2.5 * 255, 0, 255).astype(np.uint8)).save(out / relative)
            paths.append(relative)
        index = f"{prefix}.csv"
        pd.DataFrame({"patient_id": [ids[i] for i in keep], "path": paths}).to_csv(out / index, index=False)
        entry = {"type": "image", "index": index, "path_column": "path", "spatial_dims": spatial_dims}
        return SynthResult(entry, ["lesion radius (mm)", "lesion contrast"])
