"""The cohort.yaml contract: pydantic models that mirror the file one to one.

Unknown keys are errors (``extra="forbid"``) so a misspelt key never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clinfuse.errors import CohortError

COHORT_FILE = "cohort.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelSpec(_Strict):
    """Where the label lives and what kind of task it defines.

    Args:
        table: CSV or Parquet file (relative to the cohort folder) holding the label, one row per patient.
        column: label column (binary and multiclass).
        task: ``binary``, ``multiclass`` or ``survival``.
        positive: binary only: the value of the positive class (index 1).
        classes: optional class order (multiclass), or ``[negative, positive]`` (binary).
        time_column: survival only: follow-up time column (non-negative numbers).
        event_column: survival only: event indicator column (1 = event, 0 = censored).
        identifiers: extra identifier columns of the label table (never features, never printed).
    """

    table: str
    column: str | None = None
    task: Literal["binary", "multiclass", "survival"]
    positive: str | int | float | bool | None = None
    classes: list[str | int | float | bool] | None = None
    time_column: str | None = None
    event_column: str | None = None
    identifiers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _columns_for_task(self) -> LabelSpec:
        if self.task == "survival":
            if not self.time_column or not self.event_column:
                raise ValueError("survival labels need both time_column and event_column")
        elif not self.column:
            raise ValueError(f"{self.task} labels need 'column' (the label column of the table)")
        return self


class ImageModalitySpec(_Strict):
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


class TabularModalitySpec(_Strict):
    """A clinical table: one row per patient; columns not listed below are numeric features.

    Args:
        type: ``tabular``.
        table: CSV or Parquet file.
        categorical: columns one-hot encoded (any value type).
        identifiers: columns that identify a person (never features, never logged or printed).
        exclude: columns dropped on purpose (reported by ``clinfuse cohort check``).
    """

    type: Literal["tabular"]
    table: str
    categorical: list[str] = Field(default_factory=list)
    identifiers: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class GenomicModalitySpec(_Strict):
    """A genomic table: one row per patient, one numeric column per gene (or probe).

    Args:
        type: ``genomic``.
        table: CSV or Parquet file.
        identifiers: identifier columns (never features).
        exclude: columns dropped on purpose.
    """

    type: Literal["genomic"]
    table: str
    identifiers: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


ModalitySpecEntry = Annotated[
    ImageModalitySpec | TabularModalitySpec | GenomicModalitySpec, Field(discriminator="type")
]


class CohortSpec(_Strict):
    """A whole cohort.yaml.

    Args:
        name: cohort name (used in run names and reports).
        id_column: patient id column shared by every table and image index.
        label: the label block.
        modalities: modality name -> modality block, in the order models see them.
        description: optional free text shown in reports.
    """

    name: str
    id_column: str
    label: LabelSpec
    modalities: dict[str, ModalitySpecEntry] = Field(min_length=1)
    description: str | None = None


def _format_error(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error["loc"]]
    # Discriminated unions insert the tag ('tabular') into the location; users never wrote it.
    if len(loc) >= 3 and loc[0] == "modalities" and loc[2] in ("image", "tabular", "genomic"):
        del loc[2]
    key = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{COHORT_FILE}: unknown key '{key}'; remove it or fix its spelling (see docs/cohorts.md)"
    if error["type"] == "missing":
        return f"{COHORT_FILE}: missing required key '{key}' (see docs/cohorts.md)"
    if error["type"] == "union_tag_invalid":
        return f"{COHORT_FILE}: key '{key}.type' must be image, tabular or genomic"
    if error["type"] == "union_tag_not_found":
        return f"{COHORT_FILE}: key '{key}' needs 'type: image|tabular|genomic'"
    message = error["msg"].removeprefix("Value error, ")
    return f"{COHORT_FILE}: key '{key}': {message}"


def load_cohort_spec(path: str | Path) -> CohortSpec:
    """Read and validate ``cohort.yaml`` of a cohort folder (or the file itself).

    Args:
        path: cohort folder or its ``cohort.yaml``.

    Raises:
        CohortError: the file is missing, not YAML, or has unknown/missing/invalid keys (one line each).
    """
    path = Path(path)
    file = path / COHORT_FILE if path.is_dir() else path
    if not file.is_file():
        raise CohortError(f"{file}: cohort.yaml not found; create it (see docs/cohorts.md) or fix the path")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CohortError(f"{file}: not UTF-8 text; re-save cohort.yaml as UTF-8") from None
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise CohortError(f"{file}: not valid YAML ({first}); fix the syntax") from None
    if not isinstance(data, dict):
        raise CohortError(f"{file}: top level must be a mapping (name:, id_column:, label:, modalities:)")
    try:
        return CohortSpec.model_validate(data)
    except ValidationError as exc:
        raise CohortError.from_list(_format_error(e) for e in exc.errors()) from None
