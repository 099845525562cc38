"""Tiny cohorts built in tmp_path for the cohort-layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinfuse.cohort import synthesize_cohort


@pytest.fixture
def tiny_cohort(tmp_path: Path) -> Path:
    """24 patients, 3D 8^3 NIfTI images, 20 genes, every modality for everyone."""
    return synthesize_cohort(tmp_path / "tiny", patients=24, spatial_dims=3, size=8, seed=3, n_genes=20)
