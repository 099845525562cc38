"""``build_report``: one self-contained HTML file per run (inline styles, embedded PNG figures, no script)."""

from __future__ import annotations

from pathlib import Path

from clinfuse.errors import RunError
from clinfuse.reports.markup import esc, note
from clinfuse.reports.run_folder import RunFolder, load_run_folder
from clinfuse.reports.section_cohort import cohort_section
from clinfuse.reports.section_contributions import contributions_section
from clinfuse.reports.section_methods import methods_section, reproducibility_section
from clinfuse.reports.section_patients import patients_section
from clinfuse.reports.section_performance import performance_section
from clinfuse.reports.shareable import project_root, scrub_page

SECTIONS = ("cohort", "performance", "contributions", "patients", "methods", "reproducibility")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1c2833;
       background: #f4f6f7; line-height: 1.45; }
header { background: #1f3a5f; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 1.6em; }
header p { margin: 0; opacity: 0.85; }
nav { background: #fff; padding: 8px 32px; border-bottom: 1px solid #d5dbdb; }
nav a { margin-right: 18px; color: #1f3a5f; text-decoration: none; font-weight: 600; }
main { max-width: 1200px; margin: 0 auto; padding: 8px 32px 40px; }
section { background: #fff; border: 1px solid #d5dbdb; border-radius: 6px; padding: 8px 24px 18px;
          margin: 18px 0; }
h2 { border-bottom: 2px solid #1f3a5f; padding-bottom: 4px; color: #1f3a5f; }
h3 { margin-top: 22px; color: #2e4053; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 0.9em; }
caption { text-align: left; font-weight: 600; padding-bottom: 4px; }
th, td { border: 1px solid #d5dbdb; padding: 3px 9px; text-align: left; }
th { background: #eaf2f8; }
td { font-variant-numeric: tabular-nums; }
figure { margin: 10px 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #566573; }
.note { background: #fef9e7; border-left: 4px solid #f1c40f; padding: 6px 10px; }
.reason { font-style: italic; color: #566573; }
.card { border: 1px solid #aab7b8; border-radius: 6px; padding: 4px 16px 10px; margin: 16px 0; }
.cols { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
img.overlay { max-width: 100%; height: auto; }
pre { background: #f8f9f9; border: 1px solid #d5dbdb; padding: 10px; overflow-x: auto; font-size: 0.85em; }
details { margin: 8px 0; }
summary { cursor: pointer; color: #1f3a5f; }
"""


def _page(run: RunFolder, body: list[str]) -> str:
    info = run.run_info
    title = f"clinfuse report: {info.get('experiment', 'run')} / {info.get('run_name') or info.get('run_id', '')}"
    subtitle = " · ".join(
        str(part)
        for part in (info.get("cohort_name"), info.get("task"), info.get("model_name"), info.get("started"))
        if part
    )
    links = "".join(f'<a href="#{s}">{s.capitalize()}</a>' for s in SECTIONS)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>\n"
        f"<nav>{links}</nav>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


def build_report(run_dir: Path, out_path: Path | None = None, n_patients: int = 6) -> Path:
    """Write the self-contained HTML report of a run folder.

    Args:
        run_dir: the run folder (``reports/<experiment>/<run_id>/``); any of its files may be absent.
        out_path: where to write the report; defaults to ``run_dir / "report.html"``.
        n_patients: the most patient cards to show.

    Returns:
        The path of the written report.

    Raises:
        RunError: ``run_dir`` does not exist, holds no run outputs, or ``out_path`` cannot be written.
    """
    run = load_run_folder(run_dir)
    body = []
    if run.problems:
        body.extend(note(problem) for problem in run.problems)
    body += [
        cohort_section(run),
        performance_section(run),
        contributions_section(run),
        patients_section(run, n_patients),
        methods_section(run),
        reproducibility_section(run),
    ]
    target = Path(out_path) if out_path is not None else run.path / "report.html"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(scrub_page(_page(run, body), project_root(run.path)), encoding="utf-8")
    except OSError as exc:
        raise RunError(f"{target}: cannot write the report ({exc.strerror}); choose a writable --out path") from None
    return target
