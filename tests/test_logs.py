"""clinfuse.logs: console filtering, the run log's buffering, stage records, and state restored after a run."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from clinfuse import logs
from clinfuse.logs import LOGGER, configure_console, run_log, stage, stage_seconds
from clinfuse.pipeline.callbacks import LogCallback


@pytest.fixture
def console(capsys: pytest.CaptureFixture[str]):
    handler = configure_console(0, live=False)
    yield capsys
    logging.getLogger().removeHandler(handler)


def test_console_shows_ours_and_unknown_warnings_not_known_notices(console: pytest.CaptureFixture[str]) -> None:
    with run_log():
        LOGGER.info("caching: started")
        logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
        logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").warning("nvImageCodec is not available")
        warnings.warn(
            "NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register", UserWarning, stacklevel=1
        )
        warnings.warn("the user's own deprecation", UserWarning, stacklevel=1)
    out = console.readouterr().out
    assert "INFO caching: started" in out
    assert "the user's own deprecation" in out
    for notice in ("MLflow database", "nvImageCodec", "NvImgCodec"):
        assert notice not in out


def test_run_log_buffers_until_open_then_writes_live(tmp_path: Path) -> None:
    with run_log() as log:
        LOGGER.info("before the folder exists")
        path = log.open(tmp_path)
        LOGGER.info("after")
        warnings.warn("a third-party notice", UserWarning, stacklevel=1)
        # Written as they come, not at the end: a scheduler's tail -f of run.log shows progress.
        text = path.read_text()
        assert "before the folder exists" in text and "after" in text and "a third-party notice" in text
    assert path.name == "run.log"


def test_run_log_restores_process_state() -> None:
    mlflow_logger = logging.getLogger("mlflow")
    handlers, propagate = list(mlflow_logger.handlers), mlflow_logger.propagate
    filters = list(warnings.filters)
    saved_level = LOGGER.level
    bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    with run_log():
        assert mlflow_logger.propagate and not mlflow_logger.handlers
        assert getattr(logging, "_warnings_showwarning", None) is not None
    assert getattr(logging, "_warnings_showwarning", None) is None
    assert mlflow_logger.handlers == handlers and mlflow_logger.propagate == propagate
    assert warnings.filters == filters and LOGGER.level == saved_level
    assert os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR") == bar
    assert not any(type(h).__name__ == "_RunLogHandler" for h in logging.getLogger().handlers)


def test_stage_durations_are_collected_and_failures_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scripted clocks: the process CPU clock counts every thread, so a real sleep does not pin it down (another
    # thread of the test process may run meanwhile). A stage reads both clocks at its start and end, a failed
    # one only the wall clock at its end: "caching" spends 0.3 s of wall time and 0.1 s of CPU, the failure 0.4 s.
    wall, cpu_clock = iter([10.0, 10.3, 20.0, 20.4]), iter([5.0, 5.1, 6.0])
    monkeypatch.setattr(
        logs, "time", SimpleNamespace(perf_counter=lambda: next(wall), process_time=lambda: next(cpu_clock))
    )
    with stage_seconds() as seconds, stage_seconds(cpu=True) as cpu:
        with stage("caching", patients=12):
            pass
        with pytest.raises(RuntimeError), stage("training gated"):
            raise RuntimeError("boom")
    assert set(seconds) == {"caching"} == set(cpu)  # a failed stage is not collected
    assert seconds["caching"] == pytest.approx(0.3) and cpu["caching"] == pytest.approx(0.1)
    messages = [r.getMessage() for r in caplog.records]
    assert "caching: started (patients=12)" in messages
    assert "training gated: stopped after 0.4 s" in messages


def test_epoch_lines_are_throttled_per_fold(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 1.0, 2.0, 6.0, 7.0, 0.5, 8.0])
    monkeypatch.setattr("clinfuse.pipeline.callbacks.time.monotonic", lambda: next(clock))
    callback = LogCallback(epochs=5, every_s=5.0)
    caplog.set_level(logging.INFO, "clinfuse")
    for epoch, _ in enumerate(range(5), start=1):
        callback.on_epoch("gated", 0, epoch, {"train_loss": 0.5})
    callback.on_epoch("gated", 1, 1, {"train_loss": 0.5})
    callback.on_epoch("gated", 1, 2, {"train_loss": 0.5})
    lines = [r.getMessage().split("  ")[0] for r in caplog.records]
    # fold 0: epoch 1 (first), epoch 4 (5 s later), epoch 5 (the last is always shown); fold 1 has its own clock.
    assert lines == [
        "gated fold 0 epoch 1/5",
        "gated fold 0 epoch 4/5",
        "gated fold 0 epoch 5/5",
        "gated fold 1 epoch 1/5",
        "gated fold 1 epoch 2/5",
    ]


def test_cli_quiet_and_verbose_set_the_console_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clinfuse.cli import main

    def console_level(*argv: str) -> int:
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "cohort", "check", str(tmp_path / "absent")])
        assert exit_info.value.code == 2  # the absent cohort is a one-line user error
        (handler,) = [h for h in logging.getLogger().handlers if getattr(h, "clinfuse_console", False)]
        return handler.level

    try:
        assert console_level("--quiet") == logging.WARNING
        assert console_level("--verbose") == logging.DEBUG
        assert console_level() == logging.INFO
        with pytest.raises(SystemExit) as exit_info:
            main(["--quiet", "--verbose", "cohort", "check", str(tmp_path)])
        assert exit_info.value.code == 2
        assert "error: --verbose and --quiet: pass at most one" in capsys.readouterr().err
    finally:
        for handler in [h for h in logging.getLogger().handlers if getattr(h, "clinfuse_console", False)]:
            logging.getLogger().removeHandler(handler)
