"""ItemPop: rank items by their number of training interactions (paper, sec. 4.1).

The paper's non-personalised benchmark (after Rendle et al. 2009), the same
ranking for every user: score(u, i) = |{v : (v, i) is a training interaction}|.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ncf_tf.baselines.common import Baseline, check_pairs


class ItemPop(Baseline):
    """Scores an item by its training popularity; has no hyper-parameters."""

    NAME = "ItemPop"

    def __init__(self):
        self.counts: np.ndarray | None = None

    def fit(self, train: sp.spmatrix, rng: np.random.Generator | None = None,
            log=print) -> "ItemPop":
        """Counts the training interactions of every item (``rng`` and ``log`` unused)."""
        del rng, log
        train = sp.csr_matrix(train)
        # Count the positives, not their values: a rating matrix passed by
        # mistake must still give the number of interactions.
        self.counts = np.bincount(train.indices[train.data != 0],
                                  minlength=train.shape[1]).astype(np.float64)
        return self

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n,)`` popularity of ``items``; ``users`` only sets the length."""
        users, items = check_pairs("ItemPop", self.counts is not None, users, items)
        return self.counts[items]
