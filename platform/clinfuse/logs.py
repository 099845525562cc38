"""Logging for humans and for schedulers: every clinfuse message goes through ``logging.getLogger("clinfuse")``.

- :func:`configure_console` (the CLI's entry point calls it) shows clinfuse's lines on stdout: through rich
  on a terminal (where the live progress display shows the epochs), as plain timestamped lines otherwise
  (``make demo > log``, SLURM, nohup), so a file shows progress while the run goes on.
- :func:`run_log` (entered by :func:`~clinfuse.pipeline.run_experiment`) writes every record of the run,
  third-party notices included, into ``run.log`` in the run folder; for the run's duration Python warnings
  and the loggers MLflow configures for itself go to that file instead of the console. Everything it
  changes (warning capture, logger handlers, levels) is restored on exit, so a notebook is left as it was.
- :func:`stage` logs a stage's start and end with counts and its duration; :func:`stage_seconds` reads
  those durations back (the benchmark's per-stage timings).
- :func:`steps` reports progress through a long step (e.g. filling an image cache): a bar in the live display
  the CLI registers with :func:`live_display`, otherwise a plain line every few seconds.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from clinfuse.outputs import RUN_LOG

LOGGER = logging.getLogger("clinfuse")
LOG_FILE = RUN_LOG

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DATE = "%Y-%m-%d %H:%M:%S"
# Loggers that MLflow points at its own stderr handler (propagate off): redirected to the run log during a run.
_OWN_HANDLER_LOGGERS = ("mlflow", "alembic", "sqlalchemy.engine", "huey")
# Third-party notices that say nothing about the user's run: kept in run.log, never on the console.
_KNOWN_NOTICES = re.compile(
    r"nvImageCodec|NvImgCodec|non-tuple sequence for multidimensional indexing|MLflow database tables"
    r"|Passing a Python object as `python_model`|Validating input example against model signature"
)
# Records with this attribute set are per-epoch progress: on a terminal the live display already shows them.
PROGRESS_FLAG = "clinfuse_progress"
# Seconds between two plain progress lines of one step (a file should show progress, not one line per item).
PROGRESS_EVERY_S = 5.0
_LIVE: list[Any] = []  # the rich Progress of the CLI's live display while one is registered


def _is_ours(record: logging.LogRecord) -> bool:
    return record.name == "clinfuse" or record.name.startswith("clinfuse.")


class _ConsoleFilter(logging.Filter):
    """clinfuse's own records, plus third-party warnings and errors that are not known notices."""

    def __init__(self, show_notices: bool, live_display: bool) -> None:
        super().__init__()
        self.show_notices = show_notices
        self.live_display = live_display

    def filter(self, record: logging.LogRecord) -> bool:
        if _is_ours(record):
            return not (self.live_display and getattr(record, PROGRESS_FLAG, False))
        if self.show_notices:
            return True
        return record.levelno >= logging.WARNING and not _KNOWN_NOTICES.search(record.getMessage())


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is now (pytest's capture, rich's redirection), not the one at setup."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """Ignored: the stream is always the current stdout."""


def interactive() -> bool:
    """Whether stdout is a terminal (live display) rather than a file or a pipe (plain lines)."""
    return sys.stdout.isatty()


def configure_console(verbosity: int = 0, live: bool | None = None) -> logging.Handler:
    """Show clinfuse's messages on stdout; called once by a program's entry point (the CLI), never by the library.

    Args:
        verbosity: -1 quiet (warnings and errors), 0 normal (stages, epochs), 1 verbose (debug lines and
            third-party notices too).
        live: whether a live display runs (default: stdout is a terminal); then lines go through rich and the
            per-epoch lines are left to the display.

    Returns:
        The installed handler (replacing one installed by an earlier call).
    """
    live = interactive() if live is None else live
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "clinfuse_console", False)]:
        root.removeHandler(old)
    handler: logging.Handler
    if live:
        from rich import get_console
        from rich.logging import RichHandler

        # The same console as the progress display, so log lines print above the live bars.
        handler = RichHandler(console=get_console(), show_path=False, log_time_format="[%X]")
    else:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", _DATE))
    handler.clinfuse_console = True  # type: ignore[attr-defined]
    handler.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))
    handler.addFilter(_ConsoleFilter(show_notices=verbosity > 0, live_display=live))
    root.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG)
    return handler


@contextmanager
def _captured_warnings() -> Iterator[None]:
    """``logging.captureWarnings(True)`` for the block, then the caller's setting again."""
    was_captured = getattr(logging, "_warnings_showwarning", None) is not None
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(was_captured)


class RunLog:
    """The records of one run: buffered until the run folder exists, then written to ``run.log`` as they come."""

    def __init__(self) -> None:
        self._buffer: list[logging.LogRecord] = []
        self._file: logging.FileHandler | None = None
        self.path: Path | None = None

    def handle(self, record: logging.LogRecord) -> None:
        """Keep a record (before :meth:`open`) or write it."""
        if self._file is None:
            self._buffer.append(record)
        else:
            self._file.handle(record)

    def open(self, run_dir: Path) -> Path:
        """Start ``run_dir/run.log`` (appending on resume) with the records so far."""
        self.path = run_dir / LOG_FILE
        self._file = logging.FileHandler(self.path, encoding="utf-8")
        self._file.setFormatter(logging.Formatter(_FORMAT, _DATE))
        for record in self._buffer:
            self._file.handle(record)
        self._buffer.clear()
        return self.path

    def close(self) -> None:
        """Flush and close the file."""
        if self._file is not None:
            self._file.close()


class _RunLogHandler(logging.Handler):
    def __init__(self, run_log: RunLog) -> None:
        super().__init__(logging.DEBUG)
        self.run_log = run_log

    def emit(self, record: logging.LogRecord) -> None:
        self.run_log.handle(record)


@contextmanager
def run_log() -> Iterator[RunLog]:
    """Collect every log record and warning of a run; :meth:`RunLog.open` starts its ``run.log``.

    For the block: warnings are logged (``py.warnings``) rather than printed, MLflow's own loggers propagate
    to the root logger instead of printing on stderr, MLflow's artifact progress bars are off, and the
    ``clinfuse`` logger passes INFO. All of it is restored on exit.
    """
    collected = RunLog()
    handler = _RunLogHandler(collected)
    root = logging.getLogger()
    saved = {name: _detach(logging.getLogger(name)) for name in _OWN_HANDLER_LOGGERS}
    saved_level = LOGGER.level
    if LOGGER.getEffectiveLevel() > logging.INFO:
        LOGGER.setLevel(logging.INFO)
    saved_bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    root.addHandler(handler)
    try:
        with _captured_warnings():
            yield collected
    finally:
        root.removeHandler(handler)
        collected.close()
        for name, state in saved.items():
            _restore(logging.getLogger(name), state)
        LOGGER.setLevel(saved_level)
        if saved_bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = saved_bar


def _detach(logger: logging.Logger) -> tuple[list[logging.Handler], bool]:
    state = (list(logger.handlers), logger.propagate)
    logger.handlers = []
    logger.propagate = True
    return state


def _restore(logger: logging.Logger, state: tuple[list[logging.Handler], bool]) -> None:
    logger.handlers, logger.propagate = state


@contextmanager
def stage(name: str, logger: logging.Logger = LOGGER, **counts: Any) -> Iterator[None]:
    """Log ``name`` starting (with ``counts``, e.g. ``patients=240``) and done with its elapsed seconds.

    The end record carries ``clinfuse_stage``, ``clinfuse_seconds`` and ``clinfuse_cpu_seconds`` (the process's
    CPU time, every thread: on a shared machine the cost that does not depend on the other jobs) attributes (see
    :func:`stage_seconds`).
    """
    details = ", ".join(f"{key}={value}" for key, value in counts.items())
    logger.info("%s: started%s", name, f" ({details})" if details else "")
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield
    except BaseException:
        logger.warning("%s: stopped after %s", name, _duration(time.perf_counter() - start))
        raise
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    extra = {"clinfuse_stage": name, "clinfuse_seconds": seconds, "clinfuse_cpu_seconds": cpu}
    logger.info("%s: done in %s", name, _duration(seconds), extra=extra)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


class StageTimes(logging.Handler):
    """Collects ``{stage name: seconds}`` from :func:`stage` records (attach to ``LOGGER`` around a run).

    Args:
        cpu: collect the stages' process CPU seconds instead of their wall-clock seconds.
    """

    def __init__(self, cpu: bool = False) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: dict[str, float] = {}
        self.attribute = "clinfuse_cpu_seconds" if cpu else "clinfuse_seconds"

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "clinfuse_stage", None)
        if name is not None:
            self.seconds[name] = self.seconds.get(name, 0.0) + float(getattr(record, self.attribute))


@contextmanager
def stage_seconds(cpu: bool = False) -> Iterator[dict[str, float]]:
    """Within the block, the durations of every finished :func:`stage` (summed per name); with ``cpu`` the
    process CPU seconds each took."""
    handler = StageTimes(cpu)
    saved_level = LOGGER.level
    if LOGGER.getEffectiveLevel() > logging.INFO:
        LOGGER.setLevel(logging.INFO)
    LOGGER.addHandler(handler)
    try:
        yield handler.seconds
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(saved_level)


@contextmanager
def live_display(progress: Any) -> Iterator[None]:
    """Within the block, :func:`steps` draws its bars in ``progress`` (a ``rich.progress.Progress``)."""
    _LIVE.append(progress)
    try:
        yield
    finally:
        _LIVE.remove(progress)


@contextmanager
def steps(
    description: str, total: int, unit: str = "items", logger: logging.Logger = LOGGER
) -> Iterator[Callable[[], None]]:
    """Report progress through ``total`` units of work; yields ``advance()``, to call once per unit (thread-safe).

    With a live display registered (:func:`live_display`) the step is a bar of that display; otherwise a
    plain line ``description: done/total unit (pct), elapsed`` at most every :data:`PROGRESS_EVERY_S` seconds
    and one at the end, so a redirected run shows where it is.
    """
    if _LIVE:
        display = _LIVE[-1]
        task = display.add_task(description, total=total, unit=unit, metric="")

        def advance_bar() -> None:
            display.advance(task)

        yield advance_bar
        return
    lock = threading.Lock()
    start = time.perf_counter()
    state = {"done": 0, "shown": start}

    def line() -> None:
        done = state["done"]
        logger.info(
            "%s: %d/%d %s (%.0f%%), %s",
            description,
            done,
            total,
            unit,
            100.0 * done / max(total, 1),
            _duration(time.perf_counter() - start),
            extra={PROGRESS_FLAG: True},
        )

    def advance_line() -> None:
        with lock:
            state["done"] += 1
            now = time.perf_counter()
            if now - state["shown"] >= PROGRESS_EVERY_S and state["done"] < total:
                state["shown"] = now
                line()

    yield advance_line
    if total:
        line()
