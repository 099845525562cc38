"""Loading a cohort folder into a :class:`Cohort`: tables and image paths aligned on one patient order.

Everything that can be wrong is collected first and raised together as one :class:`CohortError`, so a
researcher fixes a cohort in one pass. Identifier values are never put into a message: rows are named by
their 1-based data row number in the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from clinfuse.cohort.images import image_format, inspect_image
from clinfuse.cohort.labels import Labels, parse_labels
from clinfuse.cohort.spec import COHORT_FILE, CohortSpec, ImageModalitySpec, load_cohort_spec
from clinfuse.cohort.tables import read_table, resolve_inside, rows_text, to_numeric
from clinfuse.errors import CohortError


@dataclass
class Exclusion:
    """Patients (or columns) left out on purpose, counted so nothing disappears silently.

    Args:
        source: the file or cohort.yaml key concerned.
        reason: why they were left out.
        count: how many patients (or columns).
    """

    source: str
    reason: str
    count: int


@dataclass
class ModalityData:
    """One modality aligned on the cohort's patient order.

    Args:
        name: modality name from cohort.yaml.
        type: ``image``, ``tabular`` or ``genomic``.
        present: ``(n,)`` bool, the patient has this modality.
        frame: tabular/genomic: features only, index = patient ids, NaN rows for absent patients.
        categorical: tabular: categorical feature columns (object dtype).
        numeric: numeric feature columns (float64).
        paths: image: absolute path per patient (None when absent).
        spatial_dims: image: 2 or 3.
    """

    name: str
    type: Literal["image", "tabular", "genomic"]
    present: np.ndarray
    frame: pd.DataFrame | None = None
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    paths: list[Path | None] | None = None
    spatial_dims: int | None = None


@dataclass
class Cohort:
    """A validated cohort (see docs/architecture.md for the contract)."""

    spec: CohortSpec
    root: Path
    name: str
    task: Literal["binary", "multiclass", "survival"]
    patient_ids: list[str]
    y: np.ndarray
    classes: list[str]
    modalities: dict[str, ModalityData]
    presence: np.ndarray
    exclusions: list[Exclusion]
    identifier_values: set[str]
    content_hash: str
    time: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        """Number of patients."""
        return len(self.patient_ids)

    @property
    def modality_names(self) -> list[str]:
        """Modality names in presence-column order."""
        return list(self.modalities)


class _Tables:
    """Each table read once even when several cohort.yaml keys name it."""

    def __init__(self, root: Path, id_column: str, problems: list[str]) -> None:
        self.root, self.id_column, self.problems = root, id_column, problems
        self.cache: dict[str, tuple[pd.DataFrame | None, pd.Series | None]] = {}
        self.identifiers: set[str] = set()

    def get(self, relative: str, where: str) -> tuple[pd.DataFrame | None, pd.Series | None]:
        key = str(Path(relative))
        if key not in self.cache:
            frame, problems = read_table(self.root, relative, where)
            self.problems += problems
            ids = None
            if frame is not None:
                ids = self._ids(frame, relative)
            self.cache[key] = (frame, ids)
        return self.cache[key]

    def _ids(self, frame: pd.DataFrame, relative: str) -> pd.Series | None:
        if self.id_column not in frame.columns:
            self.problems.append(
                f"{relative}: id column '{self.id_column}' (id_column in cohort.yaml) not found; "
                f"columns are {list(frame.columns)[:8]}"
            )
            return None
        ids = frame[self.id_column]
        self.identifiers.update(ids.dropna())
        blank = (np.flatnonzero(ids.isna().to_numpy()) + 1).tolist()
        if blank:
            self.problems.append(f"{relative} column '{self.id_column}': empty patient id at {rows_text(blank)}")
        dup = (np.flatnonzero(ids.duplicated(keep=False).to_numpy() & ids.notna().to_numpy()) + 1).tolist()
        if dup:
            self.problems.append(
                f"{relative} column '{self.id_column}': duplicate patient id at {rows_text(dup)}; "
                "keep one row per patient"
            )
        return ids


def _check_columns(frame: pd.DataFrame, names: list[str], key: str, table: str) -> list[str]:
    return [
        f"{table}: column '{c}' named in cohort.yaml ({key}) does not exist; fix the name or the table"
        for c in names
        if c not in frame.columns
    ]


def _table_modality(name: str, mod: Any, spec: CohortSpec, tables: _Tables, problems: list[str]) -> dict | None:
    frame, ids = tables.get(mod.table, f"modalities.{name}.table")
    if frame is None or ids is None:
        return None
    categorical = list(getattr(mod, "categorical", []))
    for key, names in (
        ("categorical", categorical),
        ("identifiers", mod.identifiers),
        ("exclude", mod.exclude),
    ):
        problems += _check_columns(frame, names, f"modalities.{name}.{key}", mod.table)
    for column in mod.identifiers:
        if column in frame.columns:
            tables.identifiers.update(frame[column].dropna())
    reserved = {spec.id_column, *mod.identifiers, *mod.exclude}
    if Path(mod.table) == Path(spec.label.table):
        label = spec.label
        reserved |= {c for c in (label.column, label.time_column, label.event_column) if c} | set(label.identifiers)
    features = [c for c in frame.columns if c not in reserved]
    numeric = [c for c in features if c not in categorical]
    if not features:
        problems.append(f"{mod.table}: no feature columns left for modality '{name}'; check identifiers/exclude")
    columns: dict[str, pd.Series] = {}
    missing: dict[str, int] = {}
    for column in features:
        values = frame[column]
        missing[column] = int(values.isna().sum())
        if column in categorical:
            columns[column] = pd.Series(values.to_numpy(dtype=object), dtype=object)
            continue
        numbers, bad, infinite = to_numeric(values)
        if bad:
            hint = "declare it categorical" if mod.type == "tabular" else "fix the values"
            problems.append(
                f"{mod.table} column '{column}': non-numeric value at {rows_text(bad)} in a numeric column; "
                f"fix the values or {hint}"
            )
        if infinite:
            problems.append(f"{mod.table} column '{column}': infinite value at {rows_text(infinite)}; use a number")
        columns[column] = pd.Series(numbers, dtype=np.float64)
    data = pd.DataFrame(columns)
    data.index = pd.Index(ids.to_numpy(dtype=object), dtype=object)
    keep = ids.notna().to_numpy() & ~ids.duplicated().to_numpy()
    data = data[keep]
    has_value = data.notna().any(axis=1)
    return {
        "frame": data,
        "ids": set(data.index[has_value]),
        "all_ids": set(data.index),
        "numeric": numeric,
        "categorical": [c for c in categorical if c in features],
        "missing": missing,
        "excluded_columns": list(mod.exclude),
    }


def _image_modality(
    name: str, mod: ImageModalitySpec, root: Path, tables: _Tables, problems: list[str], verify: bool
) -> dict | None:
    frame, ids = tables.get(mod.index, f"modalities.{name}.index")
    if frame is None or ids is None:
        return None
    if mod.path_column not in frame.columns:
        problems.append(
            f"{mod.index}: column '{mod.path_column}' named in cohort.yaml (modalities.{name}.path_column) "
            "does not exist; fix the name or the table"
        )
        return None
    paths: dict[str, Path] = {}
    shapes: dict[str, int] = {}
    spacings: dict[str, int] = {}
    for row, (pid, relative) in enumerate(zip(ids, frame[mod.path_column], strict=True), start=1):
        if not isinstance(pid, str) or not isinstance(relative, str):
            continue
        where = f"{mod.index} row {row} column '{mod.path_column}' ({relative})"
        path = resolve_inside(root, relative)
        if path is None:
            problems.append(f"{where}: path resolves outside the cohort folder ('..' or a symlink); move the image in")
            continue
        if not path.exists():
            problems.append(f"{where}: image not found; fix the path or remove the row")
            continue
        if image_format(path) is None:
            problems.append(f"{where}: unsupported image format; use NIfTI, DICOM, PNG or JPEG")
            continue
        if verify:
            info, found = inspect_image(path, mod.spatial_dims, where)
            problems += found
            if found:
                continue
            shape, spacing = str(info.get("shape")), str(info.get("spacing"))
            shapes[shape] = shapes.get(shape, 0) + 1
            spacings[spacing] = spacings.get(spacing, 0) + 1
        paths.setdefault(pid, path)
    return {
        "paths": paths,
        "ids": set(paths),
        "all_ids": set(ids.dropna()),
        "shapes": shapes,
        "spacings": spacings,
        "missing": {mod.path_column: int(frame[mod.path_column].isna().sum())},
    }


def _content_hash(root: Path, spec: CohortSpec, image_paths: list[Path]) -> str:
    digest = hashlib.sha256((root / COHORT_FILE).read_bytes())
    tables = {spec.label.table} | {getattr(m, "table", None) or m.index for m in spec.modalities.values()}
    files = [root / t for t in sorted(tables)]
    for path in sorted(set(image_paths)):
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if file.is_file():
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def collect_cohort(path: str | Path, verify_images: bool) -> tuple[Cohort | None, list[str]]:
    """Load a cohort and every problem found (the cohort is None when the problems prevent assembling it).

    Raises:
        CohortError: cohort.yaml itself is missing or invalid.
    """
    root = Path(path)
    root = root.parent if root.is_file() else root
    root = root.resolve()
    spec = load_cohort_spec(root)
    problems: list[str] = []
    tables = _Tables(root, spec.id_column, problems)
    label_frame, label_ids = tables.get(spec.label.table, "label.table")
    labels = None
    if label_frame is not None and label_ids is not None:
        wanted = [c for c in (spec.label.column, spec.label.time_column, spec.label.event_column) if c]
        found = _check_columns(label_frame, wanted + spec.label.identifiers, "label", spec.label.table)
        problems += found
        for column in spec.label.identifiers:
            if column in label_frame.columns:
                tables.identifiers.update(label_frame[column].dropna())
        if not found:
            labels, label_problems = parse_labels(spec.label, spec.label.table, label_frame, label_ids)
            problems += label_problems
    parts: dict[str, dict | None] = {}
    for name, mod in spec.modalities.items():
        if isinstance(mod, ImageModalitySpec):
            parts[name] = _image_modality(name, mod, root, tables, problems, verify_images)
        else:
            parts[name] = _table_modality(name, mod, spec, tables, problems)
    if labels is None or any(p is None for p in parts.values()):
        return None, problems
    return _assemble(root, spec, labels, parts, label_ids, tables, problems), problems


def _assemble(
    root: Path,
    spec: CohortSpec,
    labels: Labels,
    parts: dict[str, dict],
    label_ids: pd.Series,
    tables: _Tables,
    problems: list[str],
) -> Cohort:
    patient_ids = sorted(labels.values)
    exclusions: list[Exclusion] = []
    label_set = set(label_ids.dropna())
    outside = set().union(*(part["all_ids"] for part in parts.values())) - label_set
    if outside:
        exclusions.append(Exclusion(spec.label.table, "in a modality table but not in the label table", len(outside)))
    for name, part in parts.items():
        excluded_columns = part.get("excluded_columns") or []
        if excluded_columns:
            exclusions.append(
                Exclusion(f"modalities.{name}.exclude", "columns dropped on purpose", len(excluded_columns))
            )
    presence = np.array([[pid in part["ids"] for part in parts.values()] for pid in patient_ids], dtype=bool)
    presence = presence.reshape(len(patient_ids), len(parts))
    row_of = {pid: i + 1 for i, pid in enumerate(label_ids) if isinstance(pid, str)}
    orphans = sorted(row_of[pid] for pid, has in zip(patient_ids, presence.any(axis=1), strict=True) if not has)
    if orphans:
        problems.append(
            f"{spec.label.table}: patient with no modality at {rows_text(orphans)} (no row with data in any "
            "modality table or image index); add their data or remove the rows"
        )
    modalities: dict[str, ModalityData] = {}
    for (name, part), column in zip(parts.items(), presence.T, strict=True):
        mod = spec.modalities[name]
        if mod.type == "image":
            paths = [part["paths"].get(pid) if has else None for pid, has in zip(patient_ids, column, strict=True)]
            modalities[name] = ModalityData(name, "image", column.copy(), paths=paths, spatial_dims=mod.spatial_dims)
        else:
            frame = part["frame"].reindex(pd.Index(patient_ids, dtype=object))
            frame.loc[~column] = np.nan
            modalities[name] = ModalityData(
                name,
                mod.type,
                column.copy(),
                frame=frame,
                categorical=part["categorical"],
                numeric=part["numeric"],
            )
    classes = labels.classes
    index = {c: i for i, c in enumerate(classes)}
    y = np.array(
        [
            index[labels.values[pid]] if spec.label.task != "survival" else int(labels.values[pid])
            for pid in patient_ids
        ],
        dtype=np.int64,
    )
    time = np.array([labels.times[pid] for pid in patient_ids]) if spec.label.task == "survival" else None
    images = [p for m in modalities.values() if m.paths for p in m.paths if p is not None]
    details = {
        name: {k: v for k, v in part.items() if k in ("missing", "shapes", "spacings")} for name, part in parts.items()
    }
    return Cohort(
        spec=spec,
        root=root,
        name=spec.name,
        task=spec.label.task,
        patient_ids=patient_ids,
        y=y,
        classes=classes,
        modalities=modalities,
        presence=presence,
        exclusions=exclusions,
        identifier_values=set(tables.identifiers),
        content_hash=_content_hash(root, spec, images),
        time=time,
        details=details,
    )


def load_cohort(path: str | Path, verify_images: bool = False) -> Cohort:
    """Load and validate a cohort folder.

    Args:
        path: cohort folder (or its cohort.yaml).
        verify_images: open every image fully (as ``clinfuse cohort check`` does) instead of only checking
            that each file exists inside the cohort folder.

    Raises:
        CohortError: every problem found, one line each.
    """
    cohort, problems = collect_cohort(path, verify_images)
    if problems or cohort is None:
        raise CohortError.from_list(problems)
    return cohort
