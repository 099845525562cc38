"""Coalitions as integer bitmasks and the linear operators that turn coalition values into Shapley values.

Bit ``m`` of a coalition set means modality ``m`` is in it. For a patient whose present modalities form the
bitmask ``pattern``, Shapley values and pairwise interaction values are fixed linear maps of the ``2^M``
coalition values; building them once per presence pattern keeps the per-patient work a matrix product.
"""

from __future__ import annotations

from math import factorial

import numpy as np


def bits(n_modalities: int) -> np.ndarray:
    """``(2^M, M)`` bool: row ``s`` says which modalities coalition ``s`` holds."""
    masks = np.arange(2**n_modalities)
    return ((masks[:, None] >> np.arange(n_modalities)[None, :]) & 1).astype(bool)


def pattern_ints(present: np.ndarray) -> np.ndarray:
    """``(n,)`` bitmask of each row of a ``(n, M)`` bool presence matrix."""
    return (present.astype(np.int64) << np.arange(present.shape[1])[None, :]).sum(axis=1)


def shapley_operator(pattern: int, n_modalities: int) -> np.ndarray:
    """``(2^M, M)`` matrix ``A`` with ``phi = v @ A`` for a patient whose present modalities are ``pattern``.

    ``A[S + i, i] = +w`` and ``A[S, i] = -w`` for every ``S`` inside the present set without ``i``, with the
    Shapley kernel ``w = |S|! (p - |S| - 1)! / p!`` and ``p`` the number of present modalities.
    """
    member = bits(n_modalities)
    size = member.sum(axis=1)
    masks = np.arange(2**n_modalities)
    n_present = int(pattern).bit_count()
    operator = np.zeros((2**n_modalities, n_modalities))
    if n_present == 0:
        return operator
    kernel = np.array([factorial(s) * factorial(n_present - s - 1) / factorial(n_present) for s in range(n_present)])
    inside = (masks & ~pattern) == 0
    for i in range(n_modalities):
        if not (pattern >> i) & 1:
            continue
        without = inside & ~member[:, i]
        operator[masks[without] | (1 << i), i] += kernel[size[without]]
        operator[masks[without], i] -= kernel[size[without]]
    return operator


def interaction_operator(pattern: int, n_modalities: int) -> np.ndarray:
    """``(2^M, M, M)`` tensor ``B`` with off-diagonal interaction values ``v @ B`` (diagonal left at 0)."""
    member = bits(n_modalities)
    size = member.sum(axis=1)
    masks = np.arange(2**n_modalities)
    n_present = int(pattern).bit_count()
    operator = np.zeros((2**n_modalities, n_modalities, n_modalities))
    if n_present < 2:
        return operator
    kernel = np.array(
        [factorial(s) * factorial(n_present - s - 2) / (2 * factorial(n_present - 1)) for s in range(n_present - 1)]
    )
    inside = (masks & ~pattern) == 0
    for i in range(n_modalities):
        for j in range(n_modalities):
            if i == j or not (pattern >> i) & 1 or not (pattern >> j) & 1:
                continue
            rest = masks[inside & ~member[:, i] & ~member[:, j]]
            w = kernel[size[rest]]
            # v(S+ij) - v(S+i) - v(S+j) + v(S); the four masks are distinct so fancy += is safe.
            operator[rest | (1 << i) | (1 << j), i, j] += w
            operator[rest | (1 << i), i, j] -= w
            operator[rest | (1 << j), i, j] -= w
            operator[rest, i, j] += w
    return operator
