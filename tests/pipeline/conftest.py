"""One tiny 3-modality cohort and the runs the end-to-end tests share.

Every ``clinfuse run`` here is real (MONAI image encoder, MLflow SQLite store, explanations, report), kept
tiny so the whole folder stays within a few minutes on 2 CPU cores:

- ``compare_run``: the comparison run (gated + concat + each modality alone) through the CLI in a separate
  process, so everything it prints is captured for the identifier scan;
- ``small_project``: a project folder for gated-only runs (resume, reproducibility, explain, report) made
  in-process with ``clinfuse.cli.main``.

The cohort's raw ids are rewritten to ``PATIENT-0001-QZX`` style so a leak scan cannot match by chance.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_support import (
    N_PATIENTS,
    RUN_TIMEOUT_S,
    CompareRun,
    cli,
    inside,
    raw_id,
    rename_ids,
    run_folders,
    write_config,
)

from clinfuse.cohort import synthesize_cohort


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 patients, 3D 16^3 NIfTI, clinical table with an ``mrn`` identifier column, 60 genes."""
    folder = synthesize_cohort(
        tmp_path_factory.mktemp("cohort") / "coh", patients=N_PATIENTS, spatial_dims=3, size=16, seed=1, n_genes=60
    )
    rename_ids(folder)
    return folder


@pytest.fixture(scope="session")
def identifiers(cohort_dir: Path) -> set[str]:
    """Every raw id and identifier-column value of the cohort."""
    from clinfuse.cohort import load_cohort

    values = set(load_cohort(cohort_dir).identifier_values)
    assert {raw_id(1), raw_id(N_PATIENTS)} <= values
    assert sum(v.startswith("MRN") for v in values) == N_PATIENTS
    return values


@pytest.fixture(scope="session")
def compare_run(tmp_path_factory: pytest.TempPathFactory, cohort_dir: Path) -> CompareRun:
    """``clinfuse run cfg.yaml`` in compare mode, in a fresh project folder, output captured."""
    project = tmp_path_factory.mktemp("project")
    write_config(
        project / "cfg.yaml",
        cohort_dir,
        "tiny",
        compare=["gated", "concat"],
        # Ablation of flagged modalities has its own test (test_usefulness_run.py); here the model list is fixed.
        explain={"max_patients": 10, "saliency_patients": 1, "ablate_flagged": False},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "clinfuse", "run", "cfg.yaml"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    (run_id, run_dir), *others = run_folders(project, "tiny").items()
    assert not others
    return CompareRun(project, run_id, run_dir, done.stdout, done.stderr, seconds)


@pytest.fixture(scope="session")
def small_project(tmp_path_factory: pytest.TempPathFactory, cohort_dir: Path) -> Path:
    """A project folder with ``small.yaml``: the gated model alone, explanations without features/overlays."""
    project = tmp_path_factory.mktemp("small")
    write_config(
        project / "small.yaml",
        cohort_dir,
        "small",
        explain={"max_patients": 10, "feature_attributions": False, "saliency_patients": 0},
        report={"enabled": False},
        tracking={"log_model": False},
    )
    return project


@pytest.fixture
def in_project(monkeypatch: pytest.MonkeyPatch, small_project: Path) -> Path:
    """Work inside ``small_project`` with the default store; restore SIGTERM handling afterwards."""
    with inside(small_project, monkeypatch) as folder:
        yield folder


@pytest.fixture(scope="session")
def reference_run(small_project: Path) -> Path:
    """An uninterrupted gated-only run of ``small.yaml``: the folder every resumed run must match."""
    cwd = Path.cwd()
    previous = signal.getsignal(signal.SIGTERM)
    os.chdir(small_project)
    try:
        before = set(run_folders(small_project, "small"))
        assert cli("run", "small.yaml") == 0
        (run_id,) = set(run_folders(small_project, "small")) - before
    finally:
        os.chdir(cwd)
        signal.signal(signal.SIGTERM, previous)
    return run_folders(small_project, "small")[run_id]
