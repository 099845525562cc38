"""Loading a cohort folder into a :class:`Cohort`: tables and image paths aligned on one patient order.

Everything that can be wrong is collected first and raised together as one :class:`CohortError`, so a
researcher fixes a cohort in one pass. Identifier values are never put into a message: rows are named by
their 1-based data row number in the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from clinfuse.cohort.labels import Labels, parse_labels
from clinfuse.cohort.spec import COHORT_FILE, CohortSpec, load_cohort_spec
from clinfuse.cohort.tables import read_table, resolve_inside, rows_text
from clinfuse.errors import CohortError
from clinfuse.kinds.registry import get_kind

if TYPE_CHECKING:
    from clinfuse.kinds.base import LoadedModality, ModalityKind


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
        type: the registered kind (``image``, ``tabular``, ``genomic``, ``signal``...); see :attr:`kind`.
        present: ``(n,)`` bool, the patient has this modality.
        frame: table kinds: features only, index = patient ids, NaN rows for absent patients.
        categorical: tabular: categorical feature columns (object dtype).
        numeric: numeric feature columns (float64; genomic: float32).
        paths: file kinds: absolute path per patient (None when absent).
        spatial_dims: image: 2 or 3.
        meta: per-patient values by name, ``(n,)`` object arrays (e.g. a recording's sampling rate).
        info: facts about the whole modality the kind recorded when loading.
        entry: the modality's validated cohort.yaml block.
    """

    name: str
    type: str
    present: np.ndarray
    frame: pd.DataFrame | None = None
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    paths: list[Path | None] | None = None
    spatial_dims: int | None = None
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    entry: Any = None

    @property
    def kind(self) -> ModalityKind:
        """The registered kind that reads, preprocesses, explains and reports this modality."""
        return get_kind(self.type)

    def take(self, rows: np.ndarray) -> ModalityData:
        """The same modality for the patients ``rows`` (cohort indices), in that order."""
        rows = np.asarray(rows)
        return dataclasses.replace(
            self,
            present=self.present[rows],
            frame=None if self.frame is None else self.frame.iloc[rows],
            paths=None if self.paths is None else [self.paths[i] for i in rows],
            meta={k: v[rows] for k, v in self.meta.items()},
        )


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
    labelled: bool = True

    @property
    def n(self) -> int:
        """Number of patients."""
        return len(self.patient_ids)

    @property
    def modality_names(self) -> list[str]:
        """Modality names in presence-column order."""
        return list(self.modalities)


class CohortReader:
    """What kinds use to read a cohort: each table read once, paths kept inside the folder, problems collected.

    Args:
        root: the cohort folder.
        spec: its cohort.yaml.
    """

    def __init__(self, root: Path, spec: CohortSpec) -> None:
        self.root, self.spec, self.id_column = root, spec, spec.id_column
        self.problems: list[str] = []
        self.identifiers: set[str] = set()
        self._cache: dict[tuple[str, frozenset[str] | None, str], tuple[pd.DataFrame | None, pd.Series | None]] = {}

    def problem(self, message: str) -> None:
        """Record one problem (a line naming the file, row or column and the fix)."""
        self.problems.append(message)

    def table(
        self,
        relative: str,
        where: str,
        *,
        text: Collection[str] | None = None,
        numeric_dtype: type = np.float64,
    ) -> tuple[pd.DataFrame | None, pd.Series | None]:
        """A table and its id column (None when it cannot be read or lacks the id column).

        Args:
            relative: path relative to the cohort folder.
            where: the cohort.yaml key naming it (for messages).
            text: None reads every cell as text; otherwise the columns that must stay text (the id column is
                always text), every other column being read as ``numeric_dtype`` where all its cells are numbers
                (see :func:`~clinfuse.cohort.tables.read_table`). A table already read as text is returned as
                it is: callers convert with :func:`~clinfuse.cohort.tables.to_numeric` either way.
            numeric_dtype: the float type of numeric columns.
        """
        path = str(Path(relative))
        keep = None if text is None else frozenset({self.id_column, *text})
        key = (path, keep, np.dtype(numeric_dtype).str if keep is not None else "")
        key = (path, None, "") if (path, None, "") in self._cache else key
        if key not in self._cache:
            # Problems are table-wide (unreadable, duplicate columns, ids): said once however often it is read.
            said = any(k[0] == path for k in self._cache)
            frame, problems = read_table(self.root, relative, where, text=keep, numeric_dtype=numeric_dtype)
            self.problems += [] if said else problems
            ids = None if frame is None else self._ids(frame, relative, quiet=said)
            self._cache[key] = (frame, ids)
        return self._cache[key]

    def check_columns(self, frame: pd.DataFrame, names: list[str], key: str, table: str) -> bool:
        """Record a problem per column of ``names`` missing from ``frame``; True when all exist."""
        found = _check_columns(frame, names, key, table)
        self.problems += found
        return not found

    def add_identifiers(self, values: pd.Series) -> None:
        """Values of an identifier column: never features, scanned for in every output."""
        self.identifiers.update(values.dropna())

    def reserved_columns(self, table: str) -> set[str]:
        """Columns of ``table`` that are never features: the id column and, in the label table, the label."""
        reserved = {self.id_column}
        if Path(table) == Path(self.spec.label.table):
            label = self.spec.label
            reserved |= {c for c in (label.column, label.time_column, label.event_column) if c}
            reserved |= set(label.identifiers)
        return reserved

    def resolve(self, relative: str) -> Path | None:
        """The absolute path of a file named in a table, or None when it leaves the cohort folder."""
        return resolve_inside(self.root, relative)

    def _ids(self, frame: pd.DataFrame, relative: str, quiet: bool = False) -> pd.Series | None:
        if self.id_column not in frame.columns:
            if quiet:
                return None
            self.problems.append(
                f"{relative}: id column '{self.id_column}' (id_column in cohort.yaml) not found; "
                f"columns are {list(frame.columns)[:8]}"
            )
            return None
        ids = frame[self.id_column]
        self.identifiers.update(ids.dropna())
        if quiet:
            return ids
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


def _content_hash(root: Path, spec: CohortSpec, parts: dict[str, LoadedModality]) -> str:
    digest = hashlib.sha256((root / COHORT_FILE).read_bytes())
    tables = {spec.label.table} | {t for part in parts.values() for t in part.tables}
    files = [root / t for t in sorted(tables)]
    for path in sorted({f for part in parts.values() for f in part.files}):
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if file.is_file():
            digest.update(file.name.encode())
            with file.open("rb") as handle:  # in blocks: a registry's gene table is gigabytes
                while block := handle.read(1 << 24):
                    digest.update(block)
    return digest.hexdigest()


def collect_cohort(path: str | Path, verify: bool, require_labels: bool = True) -> tuple[Cohort | None, list[str]]:
    """Load a cohort and every problem found (the cohort is None when the problems prevent assembling it).

    With ``require_labels=False`` a cohort whose label table or label column is absent still loads
    (``labelled`` False, ``y`` all -1, ``time`` None): the patients are those with data in any modality.

    Raises:
        CohortError: cohort.yaml itself is missing or invalid.
    """
    root = Path(path)
    root = root.parent if root.is_file() else root
    root = root.resolve()
    spec = load_cohort_spec(root)
    reader = CohortReader(root, spec)
    if not require_labels and not (root / spec.label.table).is_file():
        parts = {n: get_kind(e.type).load(n, e, reader, verify) for n, e in spec.modalities.items()}
        return _unlabelled(root, spec, parts, reader), reader.problems
    label_frame, label_ids = reader.table(spec.label.table, "label.table")
    labels = None
    if label_frame is not None and label_ids is not None:
        wanted = [c for c in (spec.label.column, spec.label.time_column, spec.label.event_column) if c]
        if not require_labels and any(c not in label_frame.columns for c in wanted):
            for column in [c for c in spec.label.identifiers if c in label_frame.columns]:
                reader.add_identifiers(label_frame[column])
            parts = {n: get_kind(e.type).load(n, e, reader, verify) for n, e in spec.modalities.items()}
            return _unlabelled(root, spec, parts, reader), reader.problems
        complete = reader.check_columns(label_frame, wanted + spec.label.identifiers, "label", spec.label.table)
        for column in spec.label.identifiers:
            if column in label_frame.columns:
                reader.add_identifiers(label_frame[column])
        if complete:
            labels, label_problems = parse_labels(spec.label, spec.label.table, label_frame, label_ids)
            reader.problems += label_problems
    parts = {name: get_kind(entry.type).load(name, entry, reader, verify) for name, entry in spec.modalities.items()}
    if labels is None or any(p is None for p in parts.values()):
        return None, reader.problems
    cohort = _assemble(root, spec, labels, parts, label_ids, reader)  # type: ignore[arg-type]
    return cohort, reader.problems


def _unlabelled(
    root: Path, spec: CohortSpec, parts: dict[str, LoadedModality | None], reader: CohortReader
) -> Cohort | None:
    """A cohort without labels: every patient with data in some modality, ``y`` -1 (nothing to learn from)."""
    if any(p is None for p in parts.values()):
        return None
    loaded: dict[str, LoadedModality] = {k: v for k, v in parts.items() if v is not None}
    patient_ids = sorted(set().union(*(part.ids for part in loaded.values())))
    presence, modalities = _aligned(spec, loaded, patient_ids)
    classes = [str(c) for c in spec.label.classes or []]
    return Cohort(
        spec=spec,
        root=root,
        name=spec.name,
        task=spec.label.task,
        patient_ids=patient_ids,
        y=np.full(len(patient_ids), -1, dtype=np.int64),
        classes=classes,
        modalities=modalities,
        presence=presence,
        exclusions=[e for part in loaded.values() for e in part.exclusions],
        identifier_values=set(reader.identifiers),
        content_hash=_content_hash(root, spec, loaded),
        details={name: part.details for name, part in loaded.items()},
        labelled=False,
    )


def _assemble(
    root: Path,
    spec: CohortSpec,
    labels: Labels,
    parts: dict[str, LoadedModality],
    label_ids: pd.Series,
    reader: CohortReader,
) -> Cohort:
    patient_ids = sorted(labels.values)
    exclusions: list[Exclusion] = []
    label_set = set(label_ids.dropna())
    outside = set().union(*(part.listed for part in parts.values())) - label_set
    if outside:
        exclusions.append(Exclusion(spec.label.table, "in a modality table but not in the label table", len(outside)))
    for part in parts.values():
        exclusions += part.exclusions
    presence, modalities = _aligned(spec, parts, patient_ids)
    row_of = {pid: i + 1 for i, pid in enumerate(label_ids) if isinstance(pid, str)}
    orphans = sorted(row_of[pid] for pid, has in zip(patient_ids, presence.any(axis=1), strict=True) if not has)
    if orphans:
        reader.problem(
            f"{spec.label.table}: patient with no modality at {rows_text(orphans)} (no row with data in any "
            "modality table or file index); add their data or remove the rows"
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
        identifier_values=set(reader.identifiers),
        content_hash=_content_hash(root, spec, parts),
        time=time,
        details={name: part.details for name, part in parts.items()},
    )


def _aligned(
    spec: CohortSpec, parts: dict[str, LoadedModality], patient_ids: list[str]
) -> tuple[np.ndarray, dict[str, ModalityData]]:
    """The ``(patients, modalities)`` presence matrix and each modality aligned to ``patient_ids``."""
    presence = np.array([[pid in part.ids for part in parts.values()] for pid in patient_ids], dtype=bool)
    presence = presence.reshape(len(patient_ids), len(parts))
    modalities = {
        name: _align(name, spec.modalities[name], part, patient_ids, column.copy())
        for (name, part), column in zip(parts.items(), presence.T, strict=True)
    }
    return presence, modalities


def _align(name: str, entry: Any, part: LoadedModality, patient_ids: list[str], present: np.ndarray) -> ModalityData:
    """A kind's by-id data on the cohort's patient order (absent patients: NaN rows, None paths and values)."""
    frame = None
    if part.frame is not None:
        frame = part.frame.reindex(pd.Index(patient_ids, dtype=object))
        frame.loc[~present] = np.nan
    paths = None
    if part.paths is not None:
        paths = [part.paths.get(pid) if has else None for pid, has in zip(patient_ids, present, strict=True)]
    meta = {
        key: np.array(
            [values.get(pid) if has else None for pid, has in zip(patient_ids, present, strict=True)], dtype=object
        )
        for key, values in part.meta.items()
    }
    info = dict(part.info)
    return ModalityData(
        name,
        entry.type,
        present,
        frame=frame,
        categorical=list(info.pop("categorical", [])),
        numeric=list(info.pop("numeric", [])),
        paths=paths,
        spatial_dims=info.pop("spatial_dims", None),
        meta=meta,
        info=info,
        entry=entry,
    )


def load_cohort(path: str | Path, verify_images: bool = False, require_labels: bool = True) -> Cohort:
    """Load and validate a cohort folder.

    Args:
        path: cohort folder (or its cohort.yaml).
        verify_images: open every image fully (as ``clinfuse cohort check`` does) instead of only checking
            that each file exists inside the cohort folder.
        require_labels: False accepts a cohort without its label table or label column (``clinfuse predict``
            on new patients); the cohort then has ``labelled`` False.

    Raises:
        CohortError: every problem found, one line each.
    """
    cohort, problems = collect_cohort(path, verify_images, require_labels)
    if problems or cohort is None:
        raise CohortError.from_list(problems)
    return cohort
