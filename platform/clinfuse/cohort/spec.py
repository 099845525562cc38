"""The cohort.yaml contract: pydantic models that mirror the file one to one.

Unknown keys are errors (``extra="forbid"``) so a misspelt key never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clinfuse.errors import CohortError, unknown_name
from clinfuse.kinds.registry import get_kind, list_kinds

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


class CohortSpec(_Strict):
    """A whole cohort.yaml.

    Args:
        name: cohort name (used in run names and reports).
        id_column: patient id column shared by every table and image index.
        label: the label block.
        modalities: modality name -> modality block, in the order models see them; each block is validated by
            the schema of the kind its ``type:`` names (see ``clinfuse.kinds``).
        description: optional free text shown in reports.
    """

    name: str
    id_column: str
    label: LabelSpec
    modalities: dict[str, Any] = Field(min_length=1)
    description: str | None = None


def _format_error(error: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    key = ".".join([*prefix, *(str(p) for p in error["loc"])]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{COHORT_FILE}: unknown key '{key}'; remove it or fix its spelling (see docs/cohorts.md)"
    if error["type"] == "missing":
        return f"{COHORT_FILE}: missing required key '{key}' (see docs/cohorts.md)"
    message = error["msg"].removeprefix("Value error, ")
    return f"{COHORT_FILE}: key '{key}': {message}"


def _modality_entries(modalities: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate each modality block with the schema of the kind its ``type:`` names."""
    entries: dict[str, Any] = {}
    problems: list[str] = []
    for name, block in modalities.items():
        where = f"modalities.{name}"
        if not isinstance(block, dict):
            problems.append(f"{COHORT_FILE}: key '{where}' must be a mapping with 'type:' and the kind's keys")
            continue
        kind_name = block.get("type")
        if kind_name is None:
            problems.append(f"{COHORT_FILE}: key '{where}' needs 'type: {'|'.join(list_kinds())}'")
            continue
        if str(kind_name) not in list_kinds():
            problems.append(
                f"{COHORT_FILE}: key '{where}.type': " + unknown_name("modality kind", kind_name, list_kinds())
            )
            continue
        try:
            entries[name] = get_kind(str(kind_name)).entry_model.model_validate(block)
        except ValidationError as exc:
            problems += [_format_error(e, ("modalities", str(name))) for e in exc.errors()]
    return entries, problems


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
        spec = CohortSpec.model_validate(data)
    except ValidationError as exc:
        raise CohortError.from_list(_format_error(e) for e in exc.errors()) from None
    entries, problems = _modality_entries(spec.modalities)
    if problems:
        raise CohortError.from_list(problems)
    spec.modalities = entries
    return spec
