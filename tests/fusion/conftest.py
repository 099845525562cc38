"""Fixtures for the fusion tests; the model builders live in fusion_support.py."""

from __future__ import annotations

import numpy as np
import pytest
from fusion_support import METHODS


@pytest.fixture(params=list(METHODS))
def method(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def gene_mask() -> np.ndarray:
    mask = np.zeros((12, 3), dtype=int)
    mask[np.arange(12), np.arange(12) % 3] = 1
    return mask
