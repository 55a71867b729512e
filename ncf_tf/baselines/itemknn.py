"""ItemKNN: item-based collaborative filtering adapted to implicit data.

The paper (sec. 4.1) runs the item-based CF of Sarwar et al. 2001 "following
the setting of" Hu, Koren and Volinsky 2008 for implicit data. With ``R_u`` the
training items of user u, ``U_i`` the training users of item i and ``N_k(i)``
the ``k_neighbors`` items most similar to i:

    sim(i, j)  = |U_i & U_j| / (sqrt(|U_i|) * sqrt(|U_j|) + shrink)   (cosine)
    score(u, i) = sum_{j in R_u & N_k(i)} sim(i, j)

Following Hu et al.'s implicit-data adaptation, the cosine is that of the
0/1 item columns, and the sum is *not* divided by ``sum_j sim(i, j)`` as for
ratings: every observed r_uj is 1, so that average would be 1 for every item
with a neighbour in R_u; the plain sum keeps how much evidence there is.
``shrink`` (default 0) damps similarities resting on few co-occurrences. An
item is never its own neighbour. With X the binary ``(num_users, num_items)``
matrix and S the sparse matrix whose row i holds sim(i, .) on N_k(i),
``scores = X @ S.T``, computed in blocks of rows.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ncf_tf.baselines.common import Baseline, binary_csr, by_user_rows, check_pairs

# Dense work blocks hold at most this many float64 entries (64 MB).
_BLOCK_ENTRIES = 1 << 23


class ItemKNN(Baseline):
    """Item-based CF with top-k cosine neighbourhoods.

    Args:
        k_neighbors: neighbours kept per item (the neighbour size the paper
            varies and reports the best of).
        shrink: non-negative term added to the cosine's denominator.
    """

    NAME = "ItemKNN"

    def __init__(self, k_neighbors: int = 100, shrink: float = 0.0):
        self._keep(k_neighbors=(k_neighbors, "a positive integer"), shrink=(shrink, ">= 0"))
        self.train: sp.csr_matrix | None = None
        self.similarity: sp.csr_matrix | None = None

    def fit(self, train: sp.spmatrix, rng: np.random.Generator | None = None,
            log=print) -> "ItemKNN":
        """Computes the top-k item-item cosine similarity matrix (``rng`` unused)."""
        del rng
        start = time.time()
        self.train = x = binary_csr(train)
        self.similarity = item_similarity(x, self.k_neighbors, self.shrink)
        self._similarity_t = self.similarity.T.tocsr()   # scores = X @ S.T
        log(f"ItemKNN: {x.shape[1]} items, k_neighbors = {self.k_neighbors}, "
            f"{self.similarity.nnz} similarities kept [{time.time() - start:.1f} s]")
        return self

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n,)`` sum of the similarities of each item to the user's items,
        from the rows ``X[users] @ S.T`` of blocks of users."""
        users, items = check_pairs("ItemKNN", self.similarity is not None, users, items)
        return by_user_rows(users, items, lambda u: (self.train[u] @ self._similarity_t).toarray(),
                            max(1, _BLOCK_ENTRIES // self.similarity.shape[0]))


def item_similarity(x: sp.csr_matrix, k_neighbors: int, shrink: float = 0.0) -> sp.csr_matrix:
    """``(num_items, num_items)`` CSR matrix S of the top-k cosine similarities
    of the columns of the binary CSR ``x``: row i holds sim(i, j) for the (at
    most) ``k_neighbors`` items j != i with the largest positive similarity,
    zero elsewhere. Not symmetric in general."""
    num_items = x.shape[1]
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    x_t = x.T.tocsr()
    keep = min(k_neighbors, max(num_items - 1, 1))
    block = max(1, _BLOCK_ENTRIES // max(num_items, 1))
    rows, cols, vals = [], [], []
    for first in range(0, num_items, block):
        last = min(first + block, num_items)
        # Co-occurrence counts |U_i & U_j| of items first..last-1 with all.
        co = (x_t[first:last] @ x).toarray()
        local = np.arange(last - first)
        co[local, local + first] = 0.0   # an item is not its own neighbour
        denominator = norms[first:last, None] * norms[None, :] + shrink
        sim = np.divide(co, denominator, out=np.zeros_like(co), where=denominator > 0)
        if keep < num_items:
            top = np.argpartition(-sim, keep - 1, axis=1)[:, :keep]
        else:
            top = np.broadcast_to(np.arange(num_items), sim.shape)
        top_sim = np.take_along_axis(sim, top, axis=1)
        positive = top_sim > 0
        rows.append(np.broadcast_to(local[:, None] + first, top.shape)[positive])
        cols.append(top[positive])
        vals.append(top_sim[positive])
    similarity = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(num_items, num_items))
    similarity.sort_indices()
    return similarity
