"""Weighted pair counts of Harrell's C-index in O(n log n): the sorted structures shared by the survival metrics
(``training.survival``) and the SAGE survival game (``explain.sage_games``), which sit side by side in the layering.

Every count takes a matrix of patient weights ``w`` of shape ``(resamples, n)`` (how often each patient is drawn):
one row of ones is the point estimate, a row of bootstrap counts the value on that resample.
"""

from __future__ import annotations

import numpy as np

TIED_TOL = 1e-8


def safe_div(num: np.ndarray, den: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """``num / den`` with ``fill`` where the denominator is not positive (NaN: the metric is undefined)."""
    out = np.full(np.broadcast_shapes(np.shape(num), np.shape(den)), fill)
    np.divide(num, den, out=out, where=np.asarray(den) > 0)
    return out


def suffix_sum(values: np.ndarray) -> np.ndarray:
    """Sum from each column to the last, ``(rows, k) -> (rows, k)``."""
    return np.cumsum(values[:, ::-1], axis=1)[:, ::-1]


class TimeOrder:
    """Patients sorted by follow-up time, events before censorings at one time, grouped by distinct time.

    Args:
        time: follow-up times, shape ``(n,)``.
        event: event indicators (bool), shape ``(n,)``.
    """

    def __init__(self, time: np.ndarray, event: np.ndarray) -> None:
        self.order = np.lexsort((~event, time))
        self.time = time[self.order]
        self.event = event[self.order]
        new = np.r_[True, self.time[1:] != self.time[:-1]]
        self.starts = np.flatnonzero(new)
        self.times = self.time[self.starts]
        self.group_sorted = np.cumsum(new) - 1
        self.group = np.empty(len(time), dtype=np.int64)
        self.group[self.order] = self.group_sorted

    def group_sums(self, values_sorted: np.ndarray) -> np.ndarray:
        """Sums over each distinct time of columns in time order, ``(rows, n) -> (rows, times)``."""
        return np.add.reduceat(values_sorted, self.starts, axis=1)

    def censoring_survival(self, w: np.ndarray) -> np.ndarray:
        """Kaplan-Meier censoring survival G just after each distinct time, ``(rows, times)``.

        Events at a time leave the risk set before the censorings there (scikit-survival's convention).
        """
        w_sorted = w[:, self.order]
        total = self.group_sums(w_sorted)
        events = self.group_sums(w_sorted * self.event)
        censored = total - events
        at_risk = suffix_sum(total)
        ratio = np.where(censored > 0, safe_div(censored, at_risk - events), 0.0)
        return np.cumprod(1.0 - ratio, axis=1)

    def index_at(self, times: np.ndarray) -> np.ndarray:
        """Index of the last distinct time ``<= times`` (-1 before the first): where a step function stands."""
        return np.searchsorted(self.times, times, side="right") - 1


class ComparablePairs:
    """Weighted counts over the pairs Harrell's C compares, O(n log n) per weight row.

    Event i is compared with every j that left later (``t_j > t_i``) or was censored at ``t_i``. In time order
    with events first at each time, that set is a suffix; reversed, it is a prefix of length ``m_i``. The sums
    "over a prefix, of patients with risk below a threshold" are two-dimensional dominance sums: the prefix is
    cut into aligned blocks of 2^k patients, one per set bit k of ``m_i`` as in a Fenwick tree, and at each
    level the patients are sorted by risk within their block, so one cumulative sum per level and two lookups
    per event answer every query. Sort orders and lookups depend on times and risks only and are built once.

    Args:
        order: the patients' time order.
        risk: predicted risks, shape ``(n,)``.
        tied_tol: risks closer than this count as tied.
    """

    def __init__(self, order: TimeOrder, risk: np.ndarray, tied_tol: float) -> None:
        n = len(risk)
        events_per_time = np.add.reduceat(order.event.astype(np.int64), order.starts)
        # Forward position of the first patient an event is compared with: past its time's events.
        first_comparable = (order.starts + events_per_time)[order.group_sorted]
        event_pos = np.flatnonzero(order.event)
        self.events = order.order[event_pos]
        self.reversed = order.order[::-1]
        self.prefix = n - first_comparable[event_pos]
        values = np.unique(risk)
        rank = np.searchsorted(values, risk[self.reversed])
        below = np.searchsorted(values, risk[self.events] - tied_tol, side="left")
        upto = np.searchsorted(values, risk[self.events] + tied_tol, side="right")
        span = len(values) + 1
        position = np.arange(n)
        self.levels: list[tuple[np.ndarray, ...]] = []
        for k in range(int(n).bit_length()):
            sel = np.flatnonzero((self.prefix >> k) & 1)
            if sel.size == 0:
                continue
            block = (self.prefix[sel] >> k) - 1
            key = (position >> k) * span + rank
            perm = np.argsort(key)
            key = key[perm]
            # Blocks before `block` are full, so the block starts at block * 2^k in the sorted order too.
            self.levels.append(
                (
                    perm,
                    sel,
                    block << k,
                    np.searchsorted(key, block * span + below[sel]),
                    np.searchsorted(key, block * span + upto[sel]),
                )
            )

    def sums(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights of the patients compared with each event (``self.events`` order), each ``(rows, events)``.

        Returns:
            ``(lower, tied, comparable)``: those with a lower risk (beyond the tolerance), those with a tied
            risk, and all of them.
        """
        w_rev = w[:, self.reversed]
        rows = w.shape[0]
        lower = np.zeros((rows, len(self.events)))
        upto = np.zeros_like(lower)
        cum = np.zeros((rows, w.shape[1] + 1))
        for perm, sel, start, below_idx, upto_idx in self.levels:
            np.cumsum(w_rev[:, perm], axis=1, out=cum[:, 1:])
            first = cum[:, start]
            lower[:, sel] += cum[:, below_idx] - first
            upto[:, sel] += cum[:, upto_idx] - first
        np.cumsum(w_rev, axis=1, out=cum[:, 1:])
        return lower, upto - lower, cum[:, self.prefix]


def harrell_c_weighted(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, w: np.ndarray, *, tied_tol: float = TIED_TOL
) -> np.ndarray:
    """Harrell's C alone (no censoring curves, AUC or IBS) for each row of ``w`` ``(resamples, n)``, in
    O(n log n) time and O(n) memory per row; NaN where no pair is comparable or a risk or time is not finite."""
    time = np.asarray(time, dtype=float).reshape(-1)
    event = np.asarray(event).astype(bool).reshape(-1)
    risk = np.asarray(risk, dtype=float).reshape(-1)
    w = np.atleast_2d(np.asarray(w, dtype=float))
    if not (event.any() and np.isfinite(risk).all() and np.isfinite(time).all()):
        return np.full(w.shape[0], np.nan)
    pairs = ComparablePairs(TimeOrder(time, event), risk, tied_tol)
    lower, tied, comparable = pairs.sums(w)
    w_events = w[:, pairs.events]
    return safe_div((w_events * (lower + 0.5 * tied)).sum(axis=1), (w_events * comparable).sum(axis=1))
