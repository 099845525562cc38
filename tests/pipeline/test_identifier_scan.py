"""Issue 8: no identifier value and no raw patient id anywhere a run writes or prints.

Scanned: every file of the project folder (run folder, MLflow SQLite store, artifacts and logged model), the
MLflow runs through the API (params, tags, metric names, dataset inputs) and the CLI's stdout and stderr.
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest
from pipeline_support import CompareRun, client_for, raw_id, use_store

pytestmark = pytest.mark.slow


def _pattern(identifiers: set[str]) -> re.Pattern[bytes]:
    # One alternation scans each file once, whatever the number of identifiers.
    return re.compile(b"|".join(re.escape(v.encode()) for v in sorted(identifiers, key=len, reverse=True)))


def _leaks(text: str | bytes, identifiers: set[str]) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return sorted({m.decode() for m in _pattern(identifiers).findall(data)})


def _scan_folder(folder: Path, identifiers: set[str]) -> dict[str, list[str]]:
    pattern = _pattern(identifiers)
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        hits = sorted({m.decode() for m in pattern.findall(path.read_bytes())})
        if hits:
            found[str(path.relative_to(folder))] = hits
    return found


def test_scanner_finds_identifiers_in_the_cohort(cohort_dir: Path, identifiers: set[str]) -> None:
    # The scan is only worth something if it fires where identifiers really are.
    found = _scan_folder(cohort_dir, identifiers)
    assert raw_id(1) in found["clinical.csv"] and len(found["clinical.csv"]) == len(identifiers)
    assert {"clinical.csv", "genomic.csv", "images.csv"} <= set(found)
    assert not any(name.startswith("images/") for name in found)  # image files are numbered, not named by id


def test_no_identifier_in_any_written_file(compare_run: CompareRun, identifiers: set[str]) -> None:
    files = [p for p in compare_run.project.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and any(p.name == "input_example.json" for p in files)
    assert any(p.suffix == ".png" for p in files) and any(p.name == "report.html" for p in files)
    assert _scan_folder(compare_run.project, identifiers) == {}


def test_no_identifier_in_printed_output(compare_run: CompareRun, identifiers: set[str]) -> None:
    assert compare_run.run_id in compare_run.stdout
    assert _leaks(compare_run.stdout, identifiers) == []
    assert _leaks(compare_run.stderr, identifiers) == []


def test_no_identifier_in_mlflow_records(
    compare_run: CompareRun, identifiers: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(compare_run.project)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len(runs) > 1
    texts = []
    for run in runs:
        texts += [f"{k}={v}" for k, v in run.data.params.items()]
        texts += [f"{k}={v}" for k, v in run.data.tags.items()]
        texts += list(run.data.metrics)
        texts += [run.info.run_name or ""]
        for item in run.inputs.dataset_inputs:
            d = item.dataset
            texts += [d.name, d.digest, d.source, d.source_type, d.schema or "", d.profile or ""]
            texts += [f"{t.key}={t.value}" for t in item.tags]
    assert any("mlflow_colspec" in t for t in texts)  # the dataset schemas were really read
    assert _leaks("\n".join(texts), identifiers) == []
    use_store(compare_run.project, monkeypatch)
    models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    local = Path(mlflow.artifacts.download_artifacts(models[0].model_uri, dst_path=str(tmp_path)))
    assert (local / "input_example.json").is_file()
    assert _scan_folder(local, identifiers) == {}
    artifacts = Path(client.download_artifacts(compare_run.run_id, "", str(tmp_path / "run")))
    assert (artifacts / "predictions.csv").is_file()
    assert _scan_folder(artifacts, identifiers) == {}
