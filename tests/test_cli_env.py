"""The CLI's process defaults: OpenMP threads wait passively, set before torch loads OpenMP (bench/contention.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clinfuse.cli import main


def _run_help() -> None:
    with pytest.raises(SystemExit):
        main(["--help"])


def test_cli_makes_openmp_threads_wait_passively_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "")  # records the original state, so teardown restores it
    monkeypatch.delenv("OMP_WAIT_POLICY")
    _run_help()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    _run_help()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_importing_the_cli_does_not_load_torch() -> None:
    """OpenMP reads its wait policy once, when torch loads it: a module-level torch import in the CLI would make
    the default above a silent no-op."""
    code = "import sys, clinfuse.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
