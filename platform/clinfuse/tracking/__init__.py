"""Everything MLflow: the store, run lifecycle, what is logged, and the model as a pyfunc.

No other clinfuse package imports ``mlflow``; they call these functions.
"""

from __future__ import annotations

from clinfuse.tracking.log import (
    git_commit,
    log_artifact,
    log_artifacts_dir,
    log_cohort_datasets,
    log_final_metrics,
    log_metrics_step,
    log_params_flat,
    log_tags,
    sanitize_name,
)
from clinfuse.tracking.pyfunc import (
    ClinfusePyfunc,
    Predictor,
    build_predictor,
    log_pyfunc_model,
    save_predictor_artifacts,
)
from clinfuse.tracking.runs import (
    install_sigterm_handler,
    resume_run,
    start_child_run,
    start_parent_run,
    tracked_run,
)
from clinfuse.tracking.store import (
    download_run_artifacts,
    get_run,
    launch_ui,
    resolve_tracking_uri,
    setup_tracking,
)

__all__ = [
    "ClinfusePyfunc",
    "Predictor",
    "build_predictor",
    "download_run_artifacts",
    "get_run",
    "git_commit",
    "install_sigterm_handler",
    "launch_ui",
    "log_artifact",
    "log_artifacts_dir",
    "log_cohort_datasets",
    "log_final_metrics",
    "log_metrics_step",
    "log_params_flat",
    "log_pyfunc_model",
    "log_tags",
    "resolve_tracking_uri",
    "resume_run",
    "sanitize_name",
    "save_predictor_artifacts",
    "setup_tracking",
    "start_child_run",
    "start_parent_run",
    "tracked_run",
]
