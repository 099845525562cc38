"""Suite-wide settings.

One torch thread per test process: the models in tests are tiny, where a second thread only adds
synchronisation cost, and on a shared 2-core machine oversubscribed threads make each step ~10x slower.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import torch

from clinfuse.cli import main

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri() -> Iterator[None]:
    """Every test starts without MLFLOW_TRACKING_URI, whatever an earlier test left behind.

    ``mlflow.set_tracking_uri`` writes that variable, and clinfuse honours it before its own default store, so a
    value left by one test would send the next test's runs into a store that may no longer exist.
    """
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str]]:
    """Run ``clinfuse ARGS`` in-process; return the exit code and stdout + stderr."""

    def run(args: list[str]) -> tuple[int, str]:
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run
