"""In a real browser: headless Chromium renders the report without console errors into a non-trivial image."""

from __future__ import annotations

import html as html_module
import json
import re
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


def render_screenshot(html: Path, png: Path, profile: Path, window: str = "1280,2000") -> list[str]:
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
        f"--window-size={window}",
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


_MEASURE = """
<script>
window.addEventListener("load", () => {
  const rows = Array.from(document.images).map((img) => {
    const box = img.getBoundingClientRect();
    return {alt: img.alt, cls: img.className, height: box.height, width: box.width, natural: img.naturalHeight};
  });
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify(rows);
  document.body.appendChild(out);
});
</script>
"""


def rendered_images(html: Path, tmp_path: Path, width: int = 1400) -> list[dict]:
    """Every ``<img>`` of the page as Chromium lays it out at ``width`` px: alt, class, rendered size in CSS px.

    A copy of the page gets a measuring script (the report itself has none); Chromium runs it on load and
    the measurements are read back from the dumped DOM.
    """
    probe = tmp_path / "probe.html"
    probe.write_text(html.read_text(encoding="utf-8").replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    command = [
        str(CHROMIUM),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        f"--user-data-dir={tmp_path / 'profile-measure'}",
        f"--window-size={width},2000",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.S)
    assert found, f"chromium returned no measurements: {done.stderr[-500:]}"
    return json.loads(html_module.unescape(found.group(1)))


@needs_chromium
def test_report_reads_as_a_clinician_would_see_it(built_report, tmp_path: Path) -> None:
    run_dir, _ = built_report
    html = run_dir / "report.html"
    text = html.read_text(encoding="utf-8")
    images = rendered_images(html, tmp_path)
    evidence = [image for image in images if image["cls"] == "overlay"]
    assert len(evidence) >= 1, "no image evidence on the patient cards"
    for image in evidence:
        assert image["height"] >= 256, image
    alts = {image["alt"] for image in images}
    # The figures the task calls for (binary): calibration with the decision curve, a beeswarm per table kind.
    assert "Calibration" in alts
    assert {"SHAP beeswarm of clinical feature attributions", "SHAP beeswarm of genomic feature attributions"} <= alts
    # Shareable: neither the project folder nor the home folder appears, and the config shows relative paths.
    project = run_dir.resolve().parents[2]
    assert str(project) not in text and str(Path.home()) + "/" not in text
    assert "cohort: cohorts/demo" in text and "…/groups.csv" in text
    assert len(text.encode()) < 10_000_000


@needs_chromium
def test_screenshot_at_reading_width(built_report, tmp_path: Path) -> None:
    """The report at 1400 px wide, full length, for a person to look at (kept in the test's tmp folder)."""
    html = built_report[0] / "report.html"
    png = tmp_path / "report-1400.png"
    errors = render_screenshot(html, png, tmp_path / "profile", window="1400,9000")
    assert errors == [] and png.is_file()
    _assert_non_trivial(png)
