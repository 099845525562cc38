"""Fixtures for the fusion tests; the model builders live in fusion_support.py."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from fusion_support import METHODS


@pytest.fixture(params=list(METHODS))
def method(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def gene_mask() -> np.ndarray:
    mask = np.zeros((12, 3), dtype=int)
    mask[np.arange(12), np.arange(12) % 3] = 1
    return mask


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: intra-op threads only add synchronisation (10x slower on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
