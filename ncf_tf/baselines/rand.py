"""Random: every (user, item) pair gets an independent uniform score.

The floor of the leave-one-out protocol: with the test item among 100
candidates, HR@10 is 10/100 = 0.10 in expectation and NDCG@10 about 0.046.
Scores come from a 64-bit hash (SplitMix64's finaliser) of the pair and a
seed drawn from the ``rng`` at fit time, so the same pair always gets the
same score and no table of users x items is stored.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ncf_tf.baselines.common import Baseline, check_pairs


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class Random(Baseline):
    """Uniform random scores, fixed per (user, item) and seed."""

    NAME = "Random"

    def __init__(self):
        self.key: np.uint64 | None = None

    def fit(self, train: sp.spmatrix, rng: np.random.Generator, log=print) -> "Random":
        """Draws the hash key from ``rng``; ``train`` only fixes the shape."""
        del log
        self.shape = sp.csr_matrix(train).shape
        self.key = np.uint64(rng.integers(0, 2**63))
        return self

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n,)`` scores in [0, 1)."""
        users, items = check_pairs("Random", self.key is not None, users, items)
        with np.errstate(over="ignore"):
            x = (users.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
                 + _mix(items.astype(np.uint64) + self.key))
        return (_mix(x) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
