"""Ranking, apart from where the candidates come from: exact nearest neighbours over a
matrix of unit vectors, and reciprocal rank fusion of several rankings.

Reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009) scores an item by the sum of
1 / (k + rank) over the rankings it appears in. It needs no calibration between a cosine
and a full-text rank, which live on unrelated scales, and an item near the top of both
lists beats one at the top of only one. k = 60 is the paper's constant. Pure: arrays and
lists in, rankings out.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

K = TypeVar("K", bound=Hashable)

RRF_K = 60


def nearest(
    matrix: npt.NDArray[np.float32], query: npt.NDArray[np.float32], top_k: int
) -> list[tuple[int, float]]:
    """The rows of `matrix` closest to `query` by cosine (both unit length), as (row,
    score), best first; ties go to the lower row, so the order is the same every time."""
    if top_k <= 0 or matrix.shape[0] == 0:
        return []
    scores = matrix @ query
    top_k = min(top_k, scores.shape[0])
    if top_k < scores.shape[0]:
        # Every row as good as the k-th, so a tie at the cut is settled by row too.
        kth = scores[np.argpartition(-scores, top_k - 1)[top_k - 1]]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(scores.shape[0])
    # By score, then by row: lexsort sorts by its last key first.
    order = candidates[np.lexsort((candidates, -scores[candidates]))][:top_k]
    return [(int(row), float(scores[row])) for row in order]


def fuse(rankings: Sequence[Sequence[K]], top_k: int, *, k: int = RRF_K) -> list[tuple[K, float]]:
    """Reciprocal rank fusion of `rankings` (each best first) into one of `top_k`, as
    (item, score), best first; ties keep the order of first appearance."""
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    ordered = sorted(scores.items(), key=lambda pair: -pair[1])
    return ordered[:top_k]
