"""Two projects in one process each keep their own default store (MLflow exports the URI to the environment)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clinfuse.tracking import resolve_tracking_uri, setup_tracking


def test_setting_up_one_store_does_not_redirect_the_next_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = resolve_tracking_uri(None, tmp_path / "a")
    setup_tracking(first, "exp")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert resolve_tracking_uri(None, tmp_path / "b") == f"sqlite:///{(tmp_path / 'b' / 'mlflow.db').as_posix()}"


def test_a_user_set_environment_uri_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = f"sqlite:///{(tmp_path / 'shared.db').as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user)
    setup_tracking(f"sqlite:///{(tmp_path / 'other.db').as_posix()}", "exp")
    assert os.environ["MLFLOW_TRACKING_URI"] == user
