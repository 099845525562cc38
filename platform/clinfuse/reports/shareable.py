"""What a report may show of the machine it was built on: paths relative to the project, never absolute ones.

A report is meant to be shared; an absolute path (``/home/<user>/hospital-x/cohorts/...``) names the user's
folders. The run folder sits at ``<project>/<out_dir>/<experiment>/<run_id>``, so the project is three levels
up; a path outside it is shown by its last component only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from clinfuse.kinds import get_kind, list_kinds

_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")


def project_root(run_path: Path) -> Path:
    """The project a run folder belongs to (``<project>/<out_dir>/<experiment>/<run_id>``)."""
    resolved = Path(run_path).resolve()
    return resolved.parents[2] if len(resolved.parents) > 2 else resolved.parent


def is_absolute(text: str) -> bool:
    """Whether ``text`` is an absolute POSIX or Windows path."""
    return text.startswith("/") or bool(_WINDOWS_ABSOLUTE.match(text)) or text.startswith("~")


def shareable_path(text: str, root: Path) -> str:
    """``text`` relative to ``root`` when it lies inside it, else ``…/<last component>``; non-absolute text as is."""
    if not is_absolute(text):
        return text
    expanded = os.path.expanduser(text)
    try:
        relative = Path(expanded).resolve().relative_to(Path(root).resolve())
        return relative.as_posix() or "."
    except ValueError:
        pure = PureWindowsPath(text) if _WINDOWS_ABSOLUTE.match(text) else PurePosixPath(expanded)
        return f"…/{pure.name}" if pure.name else "…"


def _relativise(value: Any, root: Path) -> Any:
    if isinstance(value, str):
        return shareable_path(value, root)
    if isinstance(value, Mapping):
        return {k: _relativise(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_relativise(v, root) for v in value]
    return value


def shareable_config(text: str, modality_kinds: Mapping[str, str], root: Path) -> str:
    """The resolved config.yaml as a report shows it.

    Absolute paths become relative to the project, and each modality's encoder block keeps only the keys its
    kind uses (:attr:`ModalityKind.encoder_keys`); a modality of an unknown kind keeps every key.

    Args:
        text: config.yaml as written by the run.
        modality_kinds: kind name by modality (``run_info.json``'s ``modality_kinds``).
        root: the project folder paths are shown relative to.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if not isinstance(data, dict):
        return text
    encoders = data.get("encoders")
    if isinstance(encoders, dict):
        known = set(list_kinds())
        for modality, block in encoders.items():
            kind = modality_kinds.get(modality)
            if isinstance(block, dict) and kind in known:
                keys = get_kind(kind).encoder_keys
                encoders[modality] = {k: v for k, v in block.items() if k in keys}
    return yaml.safe_dump(_relativise(data, root), sort_keys=False, allow_unicode=True)


def scrub_page(page: str, root: Path) -> str:
    """Replace any remaining occurrence of the project folder or the home folder in a whole page.

    A last guard for paths that reach the report through free text (input notes, problem lines); embedded
    ``data:`` URIs are left alone, since base64 text may contain the same characters by chance.
    """
    for folder, shown in ((Path(root).resolve(), ""), (Path.home().resolve(), "~/")):
        prefix = str(folder).rstrip("/")
        if len(prefix) <= 1:
            continue
        pattern = re.compile(r'(data:[^"]*)|' + re.escape(prefix) + r"(/|(?![\w.-]))")
        page = pattern.sub(
            lambda m, shown=shown: m.group(1) or (shown if m.group(2) else shown.rstrip("/") or "."), page
        )
    return page
