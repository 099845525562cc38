"""The synthetic cohort: fast, reproducible, and its truth.json matches what was written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from clinfuse.cohort import ensure_demo_cohort, load_cohort, synthesize_cohort
from clinfuse.errors import CohortError


def test_truth_file_matches_the_cohort(tmp_path: Path) -> None:
    root = synthesize_cohort(tmp_path / "c", patients=40, spatial_dims=3, size=16, seed=0)
    truth = json.loads((root / "truth.json").read_text())
    cohort = load_cohort(root)
    assert cohort.n == 40 and cohort.presence.all()
    assert set(truth["contributions"]) == set(cohort.patient_ids)
    for modality in ("imaging", "clinical", "genomic"):
        values = np.array([c[modality] for c in truth["contributions"].values()])
        assert abs(values.mean()) < 1e-9 and values.std() > 0.3 * truth["weights"][modality]
    assert 0.7 < truth["bayes_auroc"] <= 1.0
    assert len(truth["informative"]["genomic"]) == 10
    assert truth["prevalence"] == pytest.approx(cohort.y.mean())


def test_image_latent_drives_lesion(tmp_path: Path) -> None:
    root = synthesize_cohort(
        tmp_path / "c", patients=40, spatial_dims=2, size=16, seed=1, uninformative=["clinical", "genomic"]
    )
    truth = json.loads((root / "truth.json").read_text())
    assert truth["weights"]["clinical"] == 0 and truth["weights"]["genomic"] == 0
    assert all(c["clinical"] == 0 for c in truth["contributions"].values())
    from PIL import Image

    cohort = load_cohort(root)
    brightness = [np.asarray(Image.open(p), dtype=float).mean() for p in cohort.modalities["imaging"].paths]
    image_part = [truth["contributions"][pid]["imaging"] for pid in cohort.patient_ids]
    assert np.corrcoef(brightness, image_part)[0, 1] > 0.8


def test_missingness_and_reproducibility(tmp_path: Path) -> None:
    rates = {"imaging": 0.4, "clinical": 0.3, "genomic": 0.5}
    a = load_cohort(
        synthesize_cohort(tmp_path / "a", patients=200, spatial_dims=2, size=8, seed=4, missing_rate=rates, n_genes=10)
    )
    b = load_cohort(
        synthesize_cohort(tmp_path / "b", patients=200, spatial_dims=2, size=8, seed=4, missing_rate=rates, n_genes=10)
    )
    assert a.presence.any(axis=1).all()
    np.testing.assert_allclose(1 - a.presence.mean(axis=0), [0.4, 0.3, 0.5], atol=0.1)
    np.testing.assert_array_equal(a.presence, b.presence)
    np.testing.assert_array_equal(a.y, b.y)
    assert (tmp_path / "a" / "truth.json").read_text() == (tmp_path / "b" / "truth.json").read_text()


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(CohortError, match="modality 'eeg': unknown"):
        synthesize_cohort(tmp_path / "x", patients=10, uninformative=["eeg"])


def test_demo_cohort(tmp_path: Path) -> None:
    root = ensure_demo_cohort(tmp_path / "demo")
    cohort = load_cohort(root)
    assert cohort.n == 160 and cohort.name == "demo"
    mtime = (root / "cohort.yaml").stat().st_mtime
    ensure_demo_cohort(root)
    assert (root / "cohort.yaml").stat().st_mtime == mtime


def test_cli_synth(tmp_path: Path, cli: Callable[[list[str]], tuple[int, str]]) -> None:
    out = tmp_path / "s"
    code, output = cli(
        [
            "cohort",
            "synth",
            str(out),
            "--patients",
            "20",
            "--spatial-dims",
            "2",
            "--size",
            "8",
            "--seed",
            "1",
            "--uninformative",
            "genomic",
            "--missing-rate",
            "imaging=0.3",
            "--signal",
            "clinical=2.5",
        ]
    )
    assert code == 0, output
    truth = json.loads((out / "truth.json").read_text())
    assert truth["weights"] == {"imaging": 1.2, "clinical": 2.5, "genomic": 0.0}
    assert truth["missing_rate"]["imaging"] == 0.3
    code, output = cli(["cohort", "synth", str(out), "--missing-rate", "imaging"])
    assert code == 2 and "expected MODALITY=NUMBER" in output
