"""In a real browser: headless Chromium renders the report without console errors into a non-trivial image."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
)


def render_screenshot(html: Path, png: Path, profile: Path) -> list[str]:
    """Render ``html`` to ``png`` with headless Chromium and return the page's console lines (errors or logs).

    The report contains no script, so any console line from the page (an uncaught error, a blocked resource)
    is a defect.
    """
    command = [
        str(CHROMIUM),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        "--window-size=1280,2000",
        html.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    lines = done.stderr.splitlines()
    return [line for line in lines if ":CONSOLE" in line or "Uncaught" in line or "net::ERR_" in line]


def _assert_non_trivial(png: Path) -> None:
    assert png.stat().st_size > 5_000
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.std() > 10.0, "the screenshot is (almost) a single colour"
    assert len(np.unique(pixels)) > 50


@needs_chromium
def test_report_renders_without_console_errors(built_report, tmp_path: Path) -> None:
    html = built_report[0] / "report.html"
    png = tmp_path / "report.png"
    errors = render_screenshot(html, png, tmp_path / "profile")
    assert png.is_file(), "chromium wrote no screenshot"
    assert errors == []
    _assert_non_trivial(png)


@needs_chromium
def test_console_error_detection_is_not_vacuous(tmp_path: Path) -> None:
    html = tmp_path / "bad.html"
    html.write_text('<html><body><p>x</p><script>throw new Error("boom");</script></body></html>')
    errors = render_screenshot(html, tmp_path / "bad.png", tmp_path / "profile")
    assert any("Uncaught Error: boom" in line for line in errors)
