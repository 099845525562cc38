"""Finding a past run's folder and config: for ``run --resume``, ``explain`` and ``report``."""

from __future__ import annotations

from pathlib import Path

import yaml

from clinfuse import outputs
from clinfuse.config import ExperimentConfig, apply_overrides, validate_config
from clinfuse.errors import RunError

REPORTS_DIR = Path("reports")


def find_run_dir(run_id: str, project_dir: Path, reports_dir: Path = REPORTS_DIR) -> Path:
    """The local run folder ``reports/<experiment>/<run_id>`` (a folder path is accepted as is)."""
    candidate = Path(run_id)
    if (candidate / outputs.RUN_INFO).is_file():
        return candidate.resolve()
    root = reports_dir if reports_dir.is_absolute() else project_dir / reports_dir
    matches = sorted(p for p in root.glob(f"*/{run_id}") if (p / outputs.RUN_INFO).is_file()) if run_id else []
    if not matches:
        raise RunError(
            f"run '{run_id}': no run folder under {root}; pass the id of a clinfuse run made in this project "
            "(see the MLflow UI: clinfuse ui)"
        )
    return matches[0]


def config_of_run(run_id: str, project_dir: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """The resolved config a run was made with, plus ``overrides`` (``key=value``)."""
    run_dir = find_run_dir(run_id, project_dir)
    path = run_dir / outputs.CONFIG
    if not path.is_file():
        raise RunError(f"{run_dir}: config.yaml is missing; the run folder is incomplete")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    apply_overrides(data, overrides or [])
    return validate_config(data, source=str(path))


def report_run(run_id: str, project_dir: Path, out: Path | None = None) -> Path:
    """Build a run's report from its folder and log it to the run (when the run is in the store)."""
    from clinfuse.reports import build_report
    from clinfuse.tracking import get_run, log_artifact, resolve_tracking_uri, setup_tracking, tracked_run

    run_dir = find_run_dir(run_id, project_dir)
    config = config_of_run(str(run_dir), project_dir)
    report = build_report(run_dir, out, n_patients=config.report.patient_cards)
    setup_tracking(resolve_tracking_uri(config.tracking.uri, project_dir), config.tracking.experiment or config.name)
    run = get_run(run_dir.name)
    with tracked_run(run_id=run.info.run_id):
        log_artifact(report)
    return report
