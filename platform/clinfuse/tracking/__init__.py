"""Everything MLflow: the store, run lifecycle, what is logged, and the model as a pyfunc.

No other clinfuse package imports ``mlflow``; they call these functions.
"""

from __future__ import annotations

from clinfuse.tracking.log import (
    git_commit,
    link_model_metrics,
    log_artifact,
    log_artifacts_dir,
    log_cohort_datasets,
    log_figure,
    log_final_metrics,
    log_metrics_step,
    log_params_flat,
    log_table,
    log_tags,
    sanitize_name,
    set_run_note,
)
from clinfuse.tracking.pyfunc import (
    ClinfusePyfunc,
    Predictor,
    build_predictor,
    log_pyfunc_model,
    save_predictor_artifacts,
)
from clinfuse.tracking.remote import (
    check_server,
    download_run_files,
    list_run_artifacts,
    run_location,
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
    is_loopback,
    launch_ui,
    resolve_tracking_uri,
    setup_tracking,
    stop_process_tree,
)
from clinfuse.tracking.views import run_table_links, run_table_path, save_run_table_view

__all__ = [
    "ClinfusePyfunc",
    "Predictor",
    "build_predictor",
    "check_server",
    "download_run_files",
    "list_run_artifacts",
    "run_location",
    "download_run_artifacts",
    "get_run",
    "git_commit",
    "link_model_metrics",
    "install_sigterm_handler",
    "is_loopback",
    "launch_ui",
    "log_artifact",
    "log_artifacts_dir",
    "log_cohort_datasets",
    "log_figure",
    "log_final_metrics",
    "log_metrics_step",
    "log_params_flat",
    "log_pyfunc_model",
    "log_table",
    "log_tags",
    "resolve_tracking_uri",
    "resume_run",
    "run_table_links",
    "run_table_path",
    "sanitize_name",
    "save_predictor_artifacts",
    "save_run_table_view",
    "set_run_note",
    "setup_tracking",
    "start_child_run",
    "start_parent_run",
    "stop_process_tree",
    "tracked_run",
]
