"""Finding a past run's folder and config: for ``run --resume``, ``explain`` and ``report``."""

from __future__ import annotations

from pathlib import Path

import yaml

from clinfuse import outputs
from clinfuse.config import ExperimentConfig, apply_overrides, saved_fusion, validate_config
from clinfuse.errors import RunError

REPORTS_DIR = Path("reports")


def find_run_dir(run_id: str, project_dir: Path, reports_dir: Path = REPORTS_DIR, *, checkpoints: bool = False) -> Path:
    """The run folder of ``run_id``: local if present, else fetched from the tracking store.

    Looked for, in order: ``run_id`` as a folder path; ``reports/<experiment>/<run_id>``; the folder the run
    itself was written to (its ``report.out_dir`` param in the store, which may differ from ``reports/``).
    When none exists locally, the run's logged files are downloaded from the store (``MLFLOW_TRACKING_URI``,
    else ``./mlflow.db``) into ``<project>/<out_dir>/<experiment>/<run_id>``, which then serves as the cache.

    Args:
        run_id: an MLflow run id or a run folder path.
        project_dir: the project folder (``reports/`` and ``mlflow.db`` are looked for there).
        reports_dir: where run folders are looked for first.
        checkpoints: also fetch the fold checkpoints (``run --resume`` and ``explain`` need them).

    Raises:
        RunError: the run is neither local nor in the store, or the server is unreachable.
    """
    candidate = Path(run_id)
    if (candidate / outputs.RUN_INFO).is_file():
        return candidate.resolve()
    root = reports_dir if reports_dir.is_absolute() else project_dir / reports_dir
    matches = sorted(p for p in root.glob(f"*/{run_id}") if (p / outputs.RUN_INFO).is_file()) if run_id else []
    if matches and (not checkpoints or (matches[0] / outputs.CHECKPOINTS).is_dir()):
        return matches[0]
    fetched = fetch_run_dir(run_id, project_dir, checkpoints=checkpoints) if run_id else None
    if fetched is not None:
        return fetched
    if matches:
        return matches[0]
    raise RunError(
        f"run '{run_id}': no run folder under {root} and no such run in the tracking store; pass the id of a "
        "clinfuse run (see the MLflow UI: clinfuse ui) and set MLFLOW_TRACKING_URI to its server"
    )


def fetch_run_dir(run_id: str, project_dir: Path, *, checkpoints: bool = False) -> Path | None:
    """The local folder of a run recorded in the tracking store, downloading what is missing.

    Only the run folder files are fetched (``checkpoints/`` when asked; never the logged model), and files
    already present are kept, so a second command downloads nothing.

    Returns:
        The folder, or ``None`` when the store does not hold the run.
    """
    from clinfuse.tracking import download_run_files, list_run_artifacts, resolve_tracking_uri, run_location

    uri = resolve_tracking_uri(None, project_dir)
    found = run_location(run_id, uri)
    if found is None:
        return None
    experiment, params = found
    out_dir = Path(params.get("report.out_dir") or REPORTS_DIR)
    run_dir = (out_dir if out_dir.is_absolute() else project_dir / out_dir) / experiment / run_id
    wanted = {*outputs.LOGGED_FILES, outputs.OVERLAYS} | ({outputs.CHECKPOINTS} if checkpoints else set())
    logged = [path for path, _ in list_run_artifacts(run_id, uri)]
    # features_<modality>.csv (outputs.features_file) for whichever modalities the run had.
    needed = [p for p in logged if p in wanted or (p.startswith("features_") and p.endswith(".csv"))]
    paths = [p for p in needed if not (run_dir / p).exists()]
    if paths:
        download_run_files(run_id, uri, paths, run_dir)
    if not (run_dir / outputs.RUN_INFO).is_file():
        raise RunError(
            f"run {run_id} in {uri} has no run_info.json artifact; it was not made by clinfuse run or was "
            "deleted before its inputs were logged"
        )
    return run_dir.resolve()


def config_of_run(
    run_id: str, project_dir: Path, overrides: list[str] | None = None, *, checkpoints: bool = False
) -> ExperimentConfig:
    """The resolved config a run was made with, plus ``overrides`` (``key=value``).

    ``checkpoints``: fetch the run's checkpoints too when the folder comes from the tracking store.
    """
    run_dir = find_run_dir(run_id, project_dir, checkpoints=checkpoints)
    path = run_dir / outputs.CONFIG
    if not path.is_file():
        raise RunError(f"{run_dir}: config.yaml is missing; the run folder is incomplete")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("fusion"), dict):
        data["fusion"] = saved_fusion(data["fusion"])
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
