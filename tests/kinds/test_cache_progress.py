"""Filling the image cache reports progress: a bar in the CLI's live display, plain lines in a redirected run."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console
from rich.progress import Progress, TextColumn

from clinfuse.cohort import load_cohort
from clinfuse.kinds import RunCache
from clinfuse.logs import LOGGER, live_display, steps


def _pictures(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(root / f"p{k}.png")
        rows.append({"patient_id": f"p{k}", "path": f"p{k}.png", "y": k % 2})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    (root / "cohort.yaml").write_text(
        "name: pics\nid_column: patient_id\nlabel: {table: index.csv, column: y, task: binary}\n"
        "modalities:\n  img: {type: image, index: index.csv, spatial_dims: 2}\n"
    )
    return root


def _prepare(root: Path, mode: str) -> None:
    cohort = load_cohort(root)
    data = cohort.modalities["img"]
    settings = data.kind.settings_model.model_validate({})
    data.kind.prepare(data, settings, RunCache(root / "cache", mode=mode, num_workers=2, image_size=[8, 8]))


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_cache_fill_is_a_bar_of_the_live_display(tmp_path: Path, mode: str) -> None:
    root = _pictures(tmp_path, 7)
    display = Progress(TextColumn("{task.description} {task.fields[unit]}"), console=Console(file=None, quiet=True))
    with display, live_display(display):
        _prepare(root, mode)
    (task,) = display.tasks
    assert task.description.startswith("caching img")
    assert (task.completed, task.total, task.fields["unit"]) == (7, 7, "images")


def test_cache_fill_without_a_display_logs_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _pictures(tmp_path, 5)
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        _prepare(root, "memory")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("caching img")]
    assert lines and lines[-1].startswith("caching img: 5/5 images (100%)")


def test_plain_steps_are_throttled(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(float(t) for t in range(0, 1000))
    monkeypatch.setattr("clinfuse.logs.time.perf_counter", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger=LOGGER.name), steps("reading", 40, "files") as advance:
        for _ in range(40):
            advance()
    counts = [r.getMessage().split(":")[1].split()[0] for r in caplog.records]
    # The fake clock ticks 1 s per call: a line about every 5 items, never one per item, and the final count.
    assert 5 <= len(counts) <= 10 and counts[-1] == "40/40"
