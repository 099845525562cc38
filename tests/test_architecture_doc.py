"""docs/architecture.md stays true: every module it names exists, every package module is named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "platform" / "clinfuse"
DOC = ROOT / "docs" / "architecture.md"


def _modules() -> set[str]:
    return {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts
    }


def _named() -> set[str]:
    return set(re.findall(r"`([a-z_]+(?:/[a-z_]+)*\.py)`", DOC.read_text(encoding="utf-8")))


def test_every_named_module_exists() -> None:
    assert _named() - _modules() == set()


def test_every_module_is_named() -> None:
    assert _modules() - _named() == set()


def test_core_never_imports_a_kind_module() -> None:
    """Kinds are plug-ins: outside ``kinds/`` the package reaches them only through the registry/base API."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "kinds" in path.relative_to(PACKAGE).parts:
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"clinfuse\.kinds\.(table|image|signal|builtin)\b", text):
            offenders.append(path.relative_to(PACKAGE).as_posix())
    assert offenders == []


def test_core_never_compares_kind_names() -> None:
    pattern = re.compile(r"""(\.type|kind)\s*[!=]=\s*["'](image|tabular|genomic|signal)["']""")
    offenders = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_only_tracking_imports_mlflow() -> None:
    offenders = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if "tracking" not in p.relative_to(PACKAGE).parts
        and re.search(r"^\s*(import mlflow|from mlflow)", p.read_text(encoding="utf-8"), re.M)
    ]
    assert offenders == []
