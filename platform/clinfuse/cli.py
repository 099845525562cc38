"""The ``clinfuse`` command line: a thin typer app over library functions.

Every command is a few lines calling functions a notebook user could call. :func:`main` turns any
:class:`~clinfuse.errors.ClinfuseError` into one ``error: ...`` line per problem on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from clinfuse.errors import ClinfuseError
from clinfuse.metric_catalog import PRIMARY

try:  # recent typer vendors click; older releases raise click's own exceptions
    from typer._click.exceptions import NoArgsIsHelpError as _NoArgsIsHelp
    from typer._click.exceptions import UsageError as _UsageError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import NoArgsIsHelpError as _NoArgsIsHelp
    from click.exceptions import UsageError as _UsageError

# Locals are never shown in tracebacks: they can hold patient data.
app = typer.Typer(
    help="clinfuse: multimodal clinical diagnosis with gated fusion.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
# The live display shows the training loss and each task's primary validation metric.
_LIVE_METRICS = ("train_loss", *dict.fromkeys(f"val_{m}" for m in PRIMARY.values()))

# MLflow retries a failed request for minutes; a command against a server that is gone should fail within
# seconds. Its download progress bars would interleave with ours. Values the user exported win.
_MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# OpenMP threads that wait for work by spinning keep their core busy: when another job shares the cores (a cluster
# node, a workstation), each parallel region then waits for threads the kernel has descheduled. Measured on 2
# cores beside another torch job (bench/contention.py): a small table model's step took 125 ms instead of 5.4 ms,
# a 24^3 cnn's 664 instead of 49; on idle cores the passive policy cost at most 9%. It must be set before torch
# loads OpenMP, which the CLI does lazily. A value the user exported wins.
_THREAD_ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
cohort_app = typer.Typer(help="Validate, synthesise and export cohorts.", no_args_is_help=True)
app.add_typer(cohort_app, name="cohort")


@app.callback()
def _global_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show debug lines and third-party notices."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors (run.log keeps everything)."),
) -> None:
    """clinfuse: multimodal clinical diagnosis with gated fusion."""
    from clinfuse.logs import configure_console

    if verbose and quiet:
        raise ClinfuseError("--verbose and --quiet: pass at most one")
    configure_console(1 if verbose else -1 if quiet else 0)


def _pairs(items: list[str], option: str) -> dict[str, float]:
    """Parse ``NAME=NUMBER`` option values."""
    pairs: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            pairs[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ClinfuseError(f"{option} {item!r}: expected MODALITY=NUMBER, e.g. {option} imaging=0.2")
    return pairs


def _range(text: str | None, option: str) -> tuple[float, float] | None:
    """Parse a ``LO,HI`` option value."""
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ClinfuseError(f"{option} {text!r}: expected LO,HI in mm, e.g. {option} 0.7,2.1") from None
    return low, high


@cohort_app.command("check")
def cohort_check(
    path: Path = typer.Argument(..., help="Cohort folder (holding cohort.yaml)."),
    folds: int | None = typer.Option(None, help="Also check every class has enough patients for K folds."),
    test_fraction: float | None = typer.Option(None, help="Held-out test share used with --folds (default 0.2)."),
) -> None:
    """Open every table and image of a cohort and summarise it; exit 2 listing every problem."""
    from clinfuse.cohort import check_cohort

    report = check_cohort(path, folds=folds, test_fraction=test_fraction)
    if report.summary:
        typer.echo(report.render(problems=False))
    if report.problems:
        raise ClinfuseError.from_list(report.problems)


@cohort_app.command("synth")
def cohort_synth(
    out: Path = typer.Argument(..., help="Folder to write the synthetic cohort into."),
    patients: int = typer.Option(120, help="Number of patients."),
    spatial_dims: int = typer.Option(3, help="2 (PNG) or 3 (NIfTI)."),
    size: int = typer.Option(24, help="Image side length."),
    seed: int = typer.Option(0, help="Random seed."),
    uninformative: list[str] = typer.Option([], help="Modality whose weight is 0 (repeatable)."),
    missing_rate: list[str] = typer.Option([], help="MODALITY=RATE share of patients lacking it (repeatable)."),
    signal: list[str] = typer.Option([], help="MODALITY=WEIGHT logit weight of a modality (repeatable)."),
    genes: int = typer.Option(200, help="Genes in genomic.csv."),
    modality: list[str] = typer.Option(
        [],
        help="NAME=KIND extra modality of a registered kind, e.g. ecg=signal (repeatable; added after the defaults).",
    ),
    voxel_spacing: str | None = typer.Option(
        None, help="LO,HI: each 3D volume's spacing per axis drawn from this range in mm (lesion size in mm)."
    ),
) -> None:
    """Write a synthetic cohort with known truth (truth.json)."""
    from clinfuse.cohort import synthesize_cohort
    from clinfuse.cohort.synthetic import DEFAULT_MODALITIES

    extra: dict[str, str] = {}
    for item in modality:
        name, sep, kind = item.partition("=")
        if not sep or not name.strip() or not kind.strip():
            raise ClinfuseError(f"--modality {item!r}: expected NAME=KIND, e.g. --modality ecg=signal")
        extra[name.strip()] = kind.strip()

    folder = synthesize_cohort(
        out,
        patients=patients,
        spatial_dims=spatial_dims,
        size=size,
        seed=seed,
        uninformative=uninformative,
        missing_rate=_pairs(missing_rate, "--missing-rate"),
        weights=_pairs(signal, "--signal") or None,
        n_genes=genes,
        modalities={**DEFAULT_MODALITIES, **extra},
        voxel_spacing=_range(voxel_spacing, "--voxel-spacing"),
    )
    typer.echo(f"wrote {folder}")


@cohort_app.command("real")
def cohort_real(
    name: str = typer.Argument(..., help="gse7390_survival, gse7390_binary, metabric or nki70."),
    out: Path = typer.Argument(..., help="Folder to write the cohort into."),
) -> None:
    """Write a real public cohort from installed packages (no download)."""
    from clinfuse.cohort.real import write_real_cohort

    typer.echo(f"wrote {write_real_cohort(name, out)}")


def _progress_printer() -> Any:
    """A live progress line per (model, fold) with the latest validation metric."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[unit]} {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[metric]}"),
        TimeElapsedColumn(),
        transient=False,
    )
    tasks: dict[tuple[str, int], Any] = {}

    def update(model: str, fold: int, epoch: int, metrics: dict[str, float], total: int) -> None:
        key = (model, fold)
        if key not in tasks:
            tasks[key] = progress.add_task(f"{model} fold {fold}", total=total, unit="epoch", metric="")
        shown = {k: v for k, v in metrics.items() if k in _LIVE_METRICS}
        text = "  ".join(f"{k}={v:.3f}" for k, v in shown.items())
        progress.update(tasks[key], completed=epoch, metric=text)

    return progress, update


def _print_outcome(outcome: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from clinfuse.logs import interactive

    table = Table(title=f"clinfuse run {outcome.run_id}")
    columns = ("model", "kind", "metric", "test [95% CI]", "CV mean ± sd", "p vs best unimodal", "p vs best classical")
    for column in columns:
        table.add_column(column)
    for row in outcome.comparison.itertuples():
        p_values = [
            "" if value != value else f"{value:.3f}" for value in (row.p_vs_best_unimodal, row.p_vs_best_classical)
        ]
        table.add_row(
            row.model,
            row.kind,
            row.metric,
            f"{row.value:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]",
            f"{row.fold_mean:.3f} ± {row.fold_sd:.3f}",
            *p_values,
        )
    # Redirected to a file (a cluster job's log) rich would assume 80 columns and cut model names and CIs. A file
    # has no width, so give it one wide enough for the table's rows and the paths below to stay on one line each.
    console = Console() if interactive() else Console(width=240)
    console.print(table)
    console.print(f"run folder: {outcome.run_dir}")
    if outcome.report is not None:
        console.print(f"report: {outcome.report}")


def _run_and_report(config: Any, resume: str | None) -> Any:
    from contextlib import nullcontext

    from clinfuse.logs import interactive, live_display
    from clinfuse.pipeline import run_experiment
    from clinfuse.tracking import install_sigterm_handler

    install_sigterm_handler()
    # The live display only on a terminal: redirected, rich would print nothing until the end; the log's
    # plain epoch lines show progress there instead.
    display, update, epochs = None, None, config.training.epochs
    if interactive():
        display, update = _progress_printer()
    on_epoch = None if update is None else (lambda m, f, e, x: update(m, f, e, x, epochs))
    try:
        with display or nullcontext(), live_display(display) if display else nullcontext():
            outcome = run_experiment(config, resume=resume, progress=on_epoch)
    except KeyboardInterrupt:
        print(
            "interrupted: the MLflow run is marked KILLED; continue it with `clinfuse run --resume RUN_ID`",
            file=sys.stderr,
        )
        sys.exit(130)
    if outcome.comparison is not None:  # None on torchrun ranks other than 0, which report nothing
        _print_outcome(outcome)
    return outcome


@app.command("run")
def run(
    config: Path | None = typer.Argument(None, help="Experiment YAML (see configs/). Optional with --resume."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: --set training.epochs=5 (repeatable)."),
    resume: str | None = typer.Option(None, help="MLflow run id of an interrupted run to continue."),
) -> None:
    """Train, cross-validate, compare, explain and report one experiment."""
    from clinfuse.config import load_config
    from clinfuse.pipeline.resume import config_of_run

    if config is None and resume is None:
        raise ClinfuseError("run: pass a config file, e.g. clinfuse run configs/demo.yaml (or --resume RUN_ID)")
    # A resumed run needs its checkpoints; from a fresh folder they come from the tracking server.
    cfg = load_config(config, set_) if config is not None else config_of_run(resume, Path.cwd(), set_, checkpoints=True)
    _run_and_report(cfg, resume)


@app.command("tune")
def tune(
    config: Path = typer.Argument(..., help="Experiment YAML whose primary model is tuned."),
    trials: int = typer.Option(20, help="Trials to add (an interrupted search resumes from its stored study)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: --set training.epochs=5 (repeatable)."),
) -> None:
    """Search learning rate, weight decay, sizes and dropouts on the training folds; write <config>.tuned.yaml."""
    from clinfuse.pipeline.tune import tune as tune_config

    outcome = tune_config(config, trials, overrides=set_)
    typer.echo(f"best mean validation score {outcome.best_value:.4f} after {outcome.trials} trials")
    typer.echo(f"tuned config: {outcome.tuned_config}")


@app.command("explain")
def explain(
    run_id: str = typer.Argument(..., help="MLflow run id of a finished clinfuse run."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: --set cohort=/data/coh (repeatable)."),
) -> None:
    """(Re)compute a run's explanations from its checkpoints and log them to the same run."""
    from clinfuse.pipeline.resume import config_of_run

    cfg = config_of_run(run_id, Path.cwd(), [*set_, "explain.enabled=true"], checkpoints=True)
    outcome = _run_and_report(cfg, run_id)
    typer.echo(f"contributions: {outcome.run_dir / 'contributions.csv'}")


@app.command("report")
def report(
    run_id: str = typer.Argument(..., help="MLflow run id (or a run folder path)."),
    out: Path | None = typer.Option(None, help="Where to write report.html (default: the run folder)."),
) -> None:
    """Write the self-contained HTML report of a run and log it to the run."""
    from clinfuse.pipeline.resume import report_run

    typer.echo(f"report: {report_run(run_id, Path.cwd(), out)}")


@app.command("predict")
def predict(
    model: str = typer.Argument(..., help="Run id, runs:/<run id>/model or models:/NAME@ALIAS."),
    cohort: Path = typer.Argument(..., help="Cohort folder (cohort.yaml); its label table is optional."),
    out: Path | None = typer.Option(None, help="Per-patient CSV (default predictions_<cohort>.csv)."),
    explain: bool = typer.Option(False, help="Add each patient's modality Shapley values and top features."),
    explain_max: int | None = typer.Option(
        None, min=1, help="Top features of at most this many patients (default: the run's explain.max_patients)."
    ),
    report: bool = typer.Option(False, help="Labelled cohort: write the external-validation report."),
    keep_ids: bool = typer.Option(False, help="Raw patient ids in the local CSV (never logged)."),
    max_missing: float = typer.Option(0.2, help="Share of a modality's features (genes) that may be imputed."),
    tracking_uri: str | None = typer.Option(None, help="MLflow store (default: MLFLOW_TRACKING_URI or ./mlflow.db)."),
) -> None:
    """Predict new patients with a trained model; with labels, validate it externally (logged to MLflow)."""
    from clinfuse.pipeline.predict import predict_cohort

    outcome = predict_cohort(
        model,
        cohort,
        out,
        explain=explain,
        explain_max=explain_max,
        report=report,
        keep_ids=keep_ids,
        max_missing=max_missing,
        tracking_uri=tracking_uri,
    )
    for warning in outcome.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"predictions: {outcome.out} ({len(outcome.frame)} patients; metadata {outcome.out}.json)")
    if outcome.features is not None:
        typer.echo(f"feature attributions: {outcome.features}")
    if outcome.external is not None:
        metrics = outcome.external["external"]
        internal = outcome.external["internal"]
        shown = [k for k in ("auroc", "c_index", "brier") if k in metrics]
        for key in shown:
            ci = outcome.external["external_ci"].get(key, [float("nan")] * 2)
            typer.echo(
                f"external {key}: {metrics[key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
                f"  (internal test: {internal.get(key) if internal.get(key) is not None else float('nan'):.3f})"
            )
        if "calibration" in outcome.external:
            calibration = outcome.external["calibration"]
            typer.echo(f"calibration intercept {calibration['intercept']:.3f}, slope {calibration['slope']:.3f}")
        typer.echo(f"external validation run: {outcome.run_id}")
    if outcome.report is not None:
        typer.echo(f"report: {outcome.report}")


@app.command("ui")
def ui(
    host: str | None = typer.Option(None, help="Address to bind (default 127.0.0.1: the dashboard stays local)."),
    port: int = typer.Option(5000, help="Port."),
    tracking_uri: str | None = typer.Option(None, help="Store to show (default: MLFLOW_TRACKING_URI or ./mlflow.db)."),
) -> None:
    """Start the MLflow dashboard on the same store as `clinfuse run`."""
    from clinfuse.tracking import is_loopback, launch_ui, resolve_tracking_uri

    if host is not None and not is_loopback(host):
        print(
            f"warning: the dashboard on {host}:{port} is reachable from other machines and has NO authentication; "
            "anyone who can reach it sees every run. Serve it with `mlflow server --app-name basic-auth` instead "
            "(see docs/tracking.md)",
            file=sys.stderr,
        )
    launch_ui(resolve_tracking_uri(tracking_uri, Path.cwd()), host=host or "127.0.0.1", port=port)


@app.command("demo")
def demo(
    config: Path = typer.Option(Path("configs/demo.yaml"), help="Demo experiment config."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key (repeatable)."),
) -> None:
    """Generate the demo cohort if missing, validate it, and run the demo comparison end to end."""
    from clinfuse.cohort import check_cohort, ensure_demo_cohort
    from clinfuse.config import load_config

    cfg = load_config(config, set_)
    ensure_demo_cohort(cfg.cohort)
    checked = check_cohort(cfg.cohort, folds=cfg.evaluation.folds, test_fraction=cfg.evaluation.test_fraction)
    typer.echo(checked.render(problems=False))
    if checked.problems:
        raise ClinfuseError.from_list(checked.problems)
    outcome = _run_and_report(cfg, None)
    typer.echo(f"open the report: {outcome.report}")
    typer.echo("review the run in MLflow: clinfuse ui  (it prints the run table's address, key metrics shown)")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become ``error: ...`` lines on stderr and exit code 2 (no traceback).

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
    """
    for key, value in {**_MLFLOW_ENV_DEFAULTS, **_THREAD_ENV_DEFAULTS}.items():
        os.environ.setdefault(key, value)
    try:
        # Not standalone: usage errors come back here and get the same one-line form as data errors.
        code = app(args=argv, prog_name="clinfuse", standalone_mode=False)
    except ClinfuseError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    except _NoArgsIsHelp as exc:
        exc.show()
        sys.exit(2)
    except _UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "clinfuse"
        print(f"error: {exc.format_message().rstrip('.')}; see `{command} --help`", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
