"""Issue 16: a shared MLflow server end to end.

One real ``mlflow server`` (SQLite backend, artifacts proxied by the server) serves the module. A run made in
folder A is killed after its first fold; from an empty folder B with only ``MLFLOW_TRACKING_URI`` set it is
resumed, and from an empty folder C it is reported and explained, each command fetching only what it needs.
A relay in front of the server is cut mid-run to lose the server, and an unused port stands for a server
that is down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pipeline_support import cli, inside, write_config
from remote_support import Relay, free_port, start_server, stop_group

import clinfuse.training.run as run_module

pytestmark = pytest.mark.slow

EXPERIMENT = "remote"
FAST_FAIL_S = 15
_REAL_TRAIN_FOLD = run_module.train_fold


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real MLflow tracking server, stopped (whole process group) after the module."""
    process, url = start_server(tmp_path_factory.mktemp("mlflow_server"))
    yield url
    stop_group(process)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty folder as the current directory; SIGTERM handling restored afterwards."""
    with inside(tmp_path, monkeypatch) as folder:
        yield folder


def _config(folder: Path, cohort: Path) -> Path:
    return write_config(
        folder / "remote.yaml",
        cohort,
        EXPERIMENT,
        explain={"max_patients": 10, "feature_attributions": False, "saliency_patients": 0},
        report={"enabled": False},
    )


def _fail_on_second_fold(monkeypatch: pytest.MonkeyPatch, before_second: object) -> None:
    real = run_module.train_fold
    calls: list[int] = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            result = before_second()  # type: ignore[operator]
            if isinstance(result, BaseException):
                raise result
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_fold", flaky)


def _only_run(folder: Path) -> tuple[str, Path]:
    (run_dir,) = (folder / "reports" / EXPERIMENT).iterdir()
    return run_dir.name, run_dir


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, path)}


def test_run_killed_in_one_folder_is_resumed_reported_and_explained_from_others(
    server: str, project: Path, cohort_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient(server)
    folder_a, folder_b, folder_c = (project / name for name in "ABC")
    for folder in (folder_a, folder_b, folder_c):
        folder.mkdir()
    _config(folder_a, cohort_dir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)

    monkeypatch.chdir(folder_a)
    _fail_on_second_fold(monkeypatch, lambda: KeyboardInterrupt())
    assert cli("run", "remote.yaml") == 130
    monkeypatch.setattr(run_module, "train_fold", _REAL_TRAIN_FOLD)
    run_id, run_dir_a = _only_run(folder_a)
    assert client.get_run(run_id).info.status == "KILLED"
    # What a resume needs was on the server before the kill: the inputs and the finished fold's checkpoint.
    assert {"config.yaml", "run_info.json", "splits.csv", "checkpoints"} <= _artifacts(client, run_id)
    assert _artifacts(client, run_id, "checkpoints/gated") == {"checkpoints/gated/fold0.pt"}
    experiment = client.get_experiment(client.get_run(run_id).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    monkeypatch.chdir(folder_b)
    assert cli("run", "--resume", run_id) == 0
    run_dir_b = folder_b / "reports" / EXPERIMENT / run_id
    # fold0 came from the server byte for byte; fold1 was trained here.
    assert (run_dir_b / "checkpoints/gated/fold0.pt").read_bytes() == (
        run_dir_a / "checkpoints/gated/fold0.pt"
    ).read_bytes()
    assert (run_dir_b / "checkpoints/gated/fold1.pt").is_file()
    assert not (run_dir_a / "checkpoints/gated/fold1.pt").exists()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    metrics = json.loads((run_dir_b / "metrics.json").read_text())["gated"]
    assert run.data.metrics["gated.test_auroc"] == pytest.approx(metrics["test"]["auroc"])
    assert run.data.metrics["gated.cv_auroc_mean"] == pytest.approx(metrics["fold_mean"]["auroc"])
    assert run.data.metrics["gated.cv_auroc_sd"] == pytest.approx(metrics["fold_sd"]["auroc"])
    assert run.data.metrics["gated.test_auroc_ci_low"] == pytest.approx(metrics["test_ci"]["auroc"][0])
    note = run.data.tags["mlflow.note.content"]
    assert f"test auroc **{metrics['test']['auroc']:.3f}**" in note
    assert "top modality" in note
    logged = _artifacts(client, run_id)
    assert {"comparison.json", "figures", "metrics.json"} <= logged
    assert _artifacts(client, run_id, "figures") == {
        f"figures/{name}.png" for name in ("roc_pr_calibration", "modality_contributions", "learning_curves")
    }
    # The model's page lists the test metrics it was evaluated with.
    (model,) = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert {m.key for m in model.metrics} >= {"test_auroc", "test_brier"}

    monkeypatch.chdir(folder_c)
    assert cli("report", run_id) == 0
    run_dir_c = folder_c / "reports" / EXPERIMENT / run_id
    assert (run_dir_c / "report.html").stat().st_size > 10_000
    # A report needs no checkpoints and no model: neither was downloaded.
    assert not (run_dir_c / "checkpoints").exists() and not (run_dir_c / "model").exists()
    # The model was logged by the resumed run; explaining again need not log another copy.
    assert cli("explain", run_id, "--set", "tracking.log_model=false") == 0
    assert len((run_dir_c / "contributions.csv").read_text().splitlines()) == 11
    assert sorted(p.name for p in (run_dir_c / "checkpoints/gated").iterdir()) == ["fold0.pt", "fold1.pt"]
    assert json.loads((run_dir_c / "metrics.json").read_text())["gated"] == metrics


def test_losing_the_server_mid_run_keeps_the_folder_and_resume_continues(
    server: str, project: Path, cohort_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    relay = Relay(int(server.rsplit(":", 1)[1]))
    relay.open()
    _config(project, cohort_dir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", relay.url)
    _fail_on_second_fold(monkeypatch, relay.cut)
    start = time.monotonic()
    assert cli("run", "remote.yaml") == 2
    assert time.monotonic() - start < 300
    err = capsys.readouterr().err.strip().splitlines()
    run_id, run_dir = _only_run(project)
    assert err == [
        f"error: lost the MLflow server 127.0.0.1:{relay.port} during run {run_id}; the local run folder and its "
        f"finished folds are kept: restart the server, then continue with `clinfuse run --resume {run_id}`"
    ]
    assert (run_dir / "checkpoints/gated/fold0.pt").is_file()

    monkeypatch.setattr(run_module, "train_fold", _REAL_TRAIN_FOLD)
    relay.open()
    assert cli("run", "--resume", run_id) == 0
    assert MlflowClient(server).get_run(run_id).info.status == "FINISHED"
    assert (run_dir / "metrics.json").is_file()


@pytest.mark.parametrize(
    "args",
    [["run", "remote.yaml"], ["run", "--resume", "0123abcd"], ["explain", "0123abcd"], ["report", "0123abcd"]],
)
def test_every_command_says_in_one_line_when_the_server_is_down(
    args: list[str], project: Path, cohort_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _config(project, cohort_dir)
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    assert cli(*args) == 2
    assert time.monotonic() - start < FAST_FAIL_S
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: MLflow server 127.0.0.1:{port} is not reachable (")
    assert "check that `mlflow server` is running there" in line
    assert not (project / "reports" / EXPERIMENT).exists() or not any((project / "reports" / EXPERIMENT).iterdir())
