"""Issues 5 and 8: failed and interrupted runs end truthfully and resume to the same result; runs repeat exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pipeline_support import cli, client_for, run_folders

import clinfuse.training.run as run_module
from clinfuse.config import load_config
from clinfuse.pipeline import run_experiment

pytestmark = pytest.mark.slow


def _fail_on_second_fold(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    real = run_module.train_fold
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_fold", flaky)


CLASSICAL_RUNS = [("gradient_boosting", "FINISHED"), ("logistic_regression", "FINISHED")]


def _only_new_run(project: Path, before: set[str]) -> str:
    (run_id,) = set(run_folders(project, "small")) - before
    return run_id


def _assert_same_results(run_dir: Path, reference: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = json.loads((reference / "metrics.json").read_text())
    assert metrics["gated"]["test"] == expected["gated"]["test"]
    assert metrics == expected
    pd.testing.assert_frame_equal(
        pd.read_csv(run_dir / "contributions.csv"), pd.read_csv(reference / "contributions.csv"), check_exact=True
    )
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "predictions.csv"), pd.read_csv(reference / "predictions.csv"))


def _statuses(project: Path, run_id: str) -> tuple[str, list[tuple[str, str]]]:
    client = client_for(project)
    parent = client.get_run(run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'", max_results=100
    )
    return parent.info.status, sorted((r.info.run_name, r.info.status) for r in children)


def test_same_config_twice_gives_identical_results(in_project: Path, reference_run: Path) -> None:
    before = set(run_folders(in_project, "small"))
    assert cli("run", "small.yaml") == 0
    run_dir = run_folders(in_project, "small")[_only_new_run(in_project, before)]
    _assert_same_results(run_dir, reference_run)


def test_failed_run_is_marked_failed_and_resumes_to_the_same_result(
    in_project: Path, reference_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = set(run_folders(in_project, "small"))
    _fail_on_second_fold(monkeypatch, RuntimeError("crafted failure in fold 1"))
    with pytest.raises(RuntimeError, match="crafted failure"):
        cli("run", "small.yaml")
    run_id = _only_new_run(in_project, before)
    status, children = _statuses(in_project, run_id)
    assert status == "FAILED"
    assert children == [("gated/fold0", "FINISHED"), ("gated/fold1", "FAILED")]
    run_dir = run_folders(in_project, "small")[run_id]
    assert (run_dir / "checkpoints" / "gated" / "fold0.pt").is_file()
    assert not (run_dir / "checkpoints" / "gated" / "fold1.pt").exists()
    assert not (run_dir / "metrics.json").exists()

    monkeypatch.undo()
    monkeypatch.chdir(in_project)
    assert cli("run", "--resume", run_id) == 0
    assert set(run_folders(in_project, "small")) - before == {run_id}  # the same run, not a new one
    status, children = _statuses(in_project, run_id)
    assert status == "FINISHED"
    # Resuming retrains only the failed fold, in a new child run; the classical baselines follow the deep model.
    assert children == [
        ("gated/fold0", "FINISHED"),
        ("gated/fold1", "FAILED"),
        ("gated/fold1", "FINISHED"),
        *CLASSICAL_RUNS,
    ]
    _assert_same_results(run_dir, reference_run)
    assert client_for(in_project).get_run(run_id).data.metrics["test_auroc"] == pytest.approx(
        json.loads((reference_run / "metrics.json").read_text())["gated"]["test"]["auroc"]
    )


def test_interrupted_run_is_killed_and_resumes_to_the_same_result(
    in_project: Path, reference_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = set(run_folders(in_project, "small"))
    _fail_on_second_fold(monkeypatch, KeyboardInterrupt())
    assert cli("run", "small.yaml") == 130
    run_id = _only_new_run(in_project, before)
    status, children = _statuses(in_project, run_id)
    assert status == "KILLED"
    assert children == [("gated/fold0", "FINISHED"), ("gated/fold1", "KILLED")]
    run_dir = run_folders(in_project, "small")[run_id]
    assert (run_dir / "checkpoints" / "gated" / "fold0.pt").is_file()

    monkeypatch.undo()
    outcome = run_experiment(load_config(in_project / "small.yaml"), resume=run_id, project_dir=in_project)
    assert outcome.run_id == run_id and outcome.run_dir == run_dir
    status, children = _statuses(in_project, run_id)
    assert status == "FINISHED"
    assert children == [
        ("gated/fold0", "FINISHED"),
        ("gated/fold1", "FINISHED"),
        ("gated/fold1", "KILLED"),
        *CLASSICAL_RUNS,
    ]
    _assert_same_results(run_dir, reference_run)
