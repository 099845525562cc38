"""Real cohorts from installed packages, and every shipped cohort folder passing ``clinfuse cohort check``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from clinfuse.cohort import load_cohort
from clinfuse.cohort.real import REAL_COHORTS, write_real_cohort

COHORTS = Path(__file__).resolve().parents[2] / "cohorts"
SHIPPED = sorted(p.parent.name for p in COHORTS.glob("*/cohort.yaml") if p.parent.name != "demo")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cohort_checks(name: str, tmp_path: Path, cli: Callable[[list[str]], tuple[int, str]]) -> None:
    folder = COHORTS / name
    assert (folder / "README.md").is_file()
    if name in REAL_COHORTS:
        written = write_real_cohort(name, tmp_path / name)
        # The committed cohort.yaml is exactly what the writer produces.
        assert (written / "cohort.yaml").read_text() == (folder / "cohort.yaml").read_text()
        folder = written
    code, output = cli(["cohort", "check", str(folder), "--folds", "5"])
    assert code == 0, output


def test_real_cohort_contents(tmp_path: Path) -> None:
    binary = load_cohort(write_real_cohort("gse7390_binary", tmp_path / "b"))
    assert binary.n == 189 and int(binary.y.sum()) == 35
    assert binary.exclusions[0].count == 9
    assert pd.read_csv(tmp_path / "b" / "exclusions.csv")["count"].tolist() == [9]
    assert binary.modalities["genomic"].frame.shape == (189, 76)
    survival = load_cohort(write_real_cohort("gse7390_survival", tmp_path / "s"))
    assert survival.n == 198 and int(survival.y.sum()) == 51 and survival.time is not None
    metabric = load_cohort(write_real_cohort("metabric", tmp_path / "m"))
    assert metabric.n == 1904
    assert list(metabric.modalities["genomic"].frame.columns) == ["MKI67", "EGFR", "PGR", "ERBB2"]
    nki = load_cohort(write_real_cohort("nki70", tmp_path / "n"))
    assert nki.n == 144 and nki.modalities["genomic"].frame.shape[1] == 70


def test_cli_real_unknown(tmp_path: Path, cli: Callable[[list[str]], tuple[int, str]]) -> None:
    code, output = cli(["cohort", "real", "nope", str(tmp_path / "x")])
    assert code == 2 and "error: real cohort 'nope': unknown" in output
