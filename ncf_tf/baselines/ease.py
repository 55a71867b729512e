"""EASE^R: a linear item-item model with a closed-form solution.

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019. With
X the binary ``(num_users, num_items)`` training matrix, the item-item weight
matrix B solves

    min_B |X - X B|_F^2 + reg |B|_F^2   subject to   diag(B) = 0

(the zero diagonal keeps an item from predicting itself). With
P = (X^T X + reg I)^{-1}, the solution is (Steck, eq. 8)

    B_ij = -P_ij / P_jj   for i != j,      B_jj = 0

and a user's scores are the row x_u B: score(u, i) = sum_{j in R_u} B_ji.
The Gram matrix, its inverse and B are dense ``num_items x num_items`` float64.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ncf_tf.baselines.common import Baseline, binary_csr, by_user_rows, check_pairs

# Dense score blocks hold at most this many float64 entries (32 MB).
_BLOCK_ENTRIES = 1 << 22


class EASE(Baseline):
    """Steck's EASE^R with L2 weight ``reg`` (lambda in the paper).

    Args:
        reg: L2 weight lambda, > 0 (X^T X alone is singular in general). It grows
            with the number of users; the default was the best of 100..2000 on
            a validation split of ml-1m.
    """

    NAME = "EASE"

    def __init__(self, reg: float = 1000.0):
        self._keep(reg=(reg, "> 0"))
        self.train: sp.csr_matrix | None = None
        self.weights: np.ndarray | None = None   # (num_items, num_items) B

    def fit(self, train: sp.spmatrix, rng: np.random.Generator | None = None,
            log=print) -> "EASE":
        """Computes B in closed form (``rng`` unused)."""
        del rng
        start = time.time()
        x = binary_csr(train)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices_from(gram)] += self.reg
        # P = G^{-1} through its Cholesky factor: G is symmetric positive
        # definite for reg > 0.
        precision = scipy.linalg.cho_solve(
            scipy.linalg.cho_factor(gram, overwrite_a=True, check_finite=False),
            np.eye(gram.shape[0]), overwrite_b=True, check_finite=False)
        weights = precision / -np.diag(precision)[None, :]
        weights[np.diag_indices_from(weights)] = 0.0
        self.train = x
        self.weights = weights
        log(f"EASE: {x.shape[1]} items, reg = {self.reg:g} [{time.time() - start:.1f} s]")
        return self

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """``(len(users), num_items)`` rows x_u B, for full ranking."""
        users = check_pairs("EASE", self.weights is not None, users, users)[0].reshape(-1)
        return np.asarray(self.train[users] @ self.weights)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n,)`` sum_{j in R_u} B_ji for each (users[k], items[k]), from the
        rows x_u B of blocks of users."""
        users, items = check_pairs("EASE", self.weights is not None, users, items)
        return by_user_rows(users, items, self.score_all,
                            max(1, _BLOCK_ENTRIES // self.weights.shape[0]))
