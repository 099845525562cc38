"""Issue 17: a run whose stdout is a file (a scheduler's log) shows stage and epoch lines while it runs,
writes run.log into its run folder and MLflow, and keeps known third-party notices off the console."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_support import RUN_TIMEOUT_S, client_for, run_folders, write_config

pytestmark = pytest.mark.slow

NOTICES = ("nvImageCodec", "NvImgCodec", "UserWarning", "mlflow.store", "alembic", "Downloading artifacts", "it/s]")
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR) ")


def test_redirected_run_logs_as_it_goes(tmp_path: Path, cohort_dir: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write_config(
        project / "cfg.yaml",
        cohort_dir,
        "logged",
        explain={"max_patients": 4, "saliency_patients": 1},
        tracking={"log_model": False},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    console = project / "console.txt"
    seen_while_running: str = ""
    with console.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "clinfuse", "run", "cfg.yaml"], cwd=project, env=env, stdout=out, stderr=out
        )
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            text = console.read_text()
            if "training gated: done" in text and process.poll() is None:
                seen_while_running = text
            time.sleep(0.5)
        assert process.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, console.read_text()[-3000:]
    # Flushed line by line: stage and epoch lines were in the file before the process ended.
    assert "checking: done in" in seen_while_running
    assert re.search(r"gated fold 1 epoch 2/2 ", seen_while_running)
    text = console.read_text()
    for stage in (
        "checking",
        "caching",
        "training gated",
        "metrics gated",
        "explaining",
        "modality Shapley",
        "reporting",
    ):
        assert re.search(rf"^\S+ \S+ INFO {stage}: done in \d", text, re.M), stage
    assert all(LINE.match(line) for line in text.splitlines()[:3])
    # The comparison table is not cut to 80 columns in a file: whole model names, each CI on its model's line.
    assert re.search(r"^│ gated +│ fusion +│ auroc +│ \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] +│", text, re.M), text[-3000:]
    assert "│ logistic_regression " in text
    for notice in NOTICES:
        assert notice not in text, notice
    (run_id, run_dir), *_ = run_folders(project, "logged").items()
    run_log = (run_dir / "run.log").read_text()
    # The file keeps what the console leaves out, and the run's own lines.
    assert "reporting: done in" in run_log and "nvImageCodec" in run_log and "UserWarning" in run_log
    assert "run.log" in {a.path for a in client_for(project).list_artifacts(run_id)}
