"""eALS: element-wise ALS for implicit feedback with popularity-weighted missing data.

He, Zhang, Kan and Chua, "Fast Matrix Factorization for Online Recommendation
with Implicit Feedback", SIGIR 2016, the paper's strongest MF baseline
(sec. 4.1: the squared loss of equation 5 with all unobserved entries as
negatives, weighted by item popularity). With R the training positives,
y_ui = p_u . q_i and ``num_factors``-dimensional P (users) and Q (items), it
minimises

    L = sum_{(u,i) in R} w (1 - y_ui)^2
      + sum_{(u,i) not in R} c_i y_ui^2
      + reg (|P|_F^2 + |Q|_F^2)

    c_i = c0 * f_i^alpha / sum_j f_j^alpha,   f_i = |{u : (u, i) in R}|

(w = 1, c0 = 512, alpha = 0.4 by default, as in that paper).

Each iteration updates every coordinate p_uf to its exact minimiser with Q
fixed, then every q_if with P fixed, so L never increases. The sum over the
missing data is never formed: writing it as ``sum over all items - sum over R``
and caching S^q = sum_i c_i q_i q_i^T (S^p = sum_u p_u p_u^T for the item
side) makes a coordinate update cost O(|R_u|) (SIGIR'16, eq. 12 and 13):

    p_uf = [sum_{i in R_u} (w - (w - c_i) y^f_ui) q_if - sum_{k != f} p_uk S^q_kf]
           / [sum_{i in R_u} (w - c_i) q_if^2 + S^q_ff + reg]

    q_if = [sum_{u in R_i} (w - (w - c_i) y^f_ui) p_uf - c_i sum_{k != f} q_ik S^p_kf]
           / [sum_{u in R_i} (w - c_i) p_uf^2 + c_i S^p_ff + reg]

with y^f_ui = y_ui - p_uf q_if; the predictions on R are cached.

The authors loop ``for u: for f: update p_uf``; given Q the users'
sub-problems are independent, so ``for f: update p_uf for all u at once``
(vectorised here) gives the same numbers; likewise for items given P. S^q
and S^p are computed once before their sweep, as in the authors' code.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ncf_tf.baselines.common import Baseline, binary_csr


class EALS(Baseline):
    """Element-wise ALS with popularity-weighted missing data (eALS).

    Args:
        num_factors: dimension of the latent vectors (predictive factors).
        reg: L2 regularisation weight.
        c0: total weight of the missing data, sum_i c_i.
        alpha: popularity exponent of the missing-data weights (0: uniform).
        epochs: ALS iterations (a user sweep then an item sweep each).
        w: weight of an observed interaction.
        init_std: standard deviation of the Gaussian initialisation.
    """

    NAME = "eALS"

    def __init__(self, num_factors: int = 8, reg: float = 0.01, c0: float = 512.0,
                 alpha: float = 0.4, epochs: int = 10, w: float = 1.0,
                 init_std: float = 0.01):
        self._keep(num_factors=(num_factors, "a positive integer"), reg=(reg, ">= 0"),
                   c0=(c0, ">= 0"), alpha=(alpha, ">= 0"), epochs=(epochs, "an integer >= 0"),
                   w=(w, "> 0"), init_std=(init_std, ">= 0"))
        self.user_factors: np.ndarray | None = None   # (num_users, num_factors)
        self.item_factors: np.ndarray | None = None   # (num_items, num_factors)
        self.confidence: np.ndarray | None = None     # (num_items,) c_i
        self.history: list[float] = []                # L after each iteration

    def fit(self, train: sp.spmatrix, rng: np.random.Generator, log=print) -> "EALS":
        """Initialises P, Q ~ N(0, init_std^2) and runs ``epochs`` iterations, logging each."""
        self._prepare(train)
        num_users, num_items = self._train.shape
        self.user_factors = rng.normal(0.0, self.init_std, (num_users, self.num_factors))
        self.item_factors = rng.normal(0.0, self.init_std, (num_items, self.num_factors))
        self._prediction = self._observed_predictions()
        return self._fit_epochs(self._iteration, "eALS iteration", log)

    def _prepare(self, train: sp.spmatrix) -> None:
        """Caches the observed entries in CSR (user-major) order and the c_i."""
        self._train = train = binary_csr(train)
        num_users, num_items = train.shape
        self._rows = np.repeat(np.arange(num_users), np.diff(train.indptr))
        self._cols = train.indices.astype(np.int64)
        popularity = np.bincount(self._cols, minlength=num_items).astype(np.float64)
        powered = popularity ** self.alpha
        powered[popularity == 0] = 0.0   # 0 ** 0 is 1; an unseen item has no popularity
        total = powered.sum()
        self.confidence = self.c0 * powered / total if total > 0 else np.zeros(num_items)

    def _observed_predictions(self) -> np.ndarray:
        """``(nnz,)`` y_ui for the observed entries, in CSR order."""
        return np.einsum("nf,nf->n", self.user_factors[self._rows],
                         self.item_factors[self._cols])

    def iterate(self) -> None:
        """One eALS iteration: every p_uf, then every q_if, to its minimiser."""
        p, q, c, w = self.user_factors, self.item_factors, self.confidence, self.w
        rows, cols, y = self._rows, self._cols, self._prediction
        num_users, num_items = p.shape[0], q.shape[0]
        c_obs = c[cols]

        s_q = (q * c[:, None]).T @ q        # S^q = sum_i c_i q_i q_i^T
        for f in range(self.num_factors):
            q_f = q[cols, f]
            y_f = y - p[rows, f] * q_f      # prediction without factor f
            numerator = np.bincount(rows, (w - (w - c_obs) * y_f) * q_f, minlength=num_users)
            numerator -= p @ s_q[:, f] - p[:, f] * s_q[f, f]
            denominator = np.bincount(rows, (w - c_obs) * q_f ** 2, minlength=num_users)
            denominator += s_q[f, f] + self.reg
            p[:, f] = numerator / denominator
            y[:] = y_f + p[rows, f] * q_f

        s_p = p.T @ p                        # S^p = sum_u p_u p_u^T
        for f in range(self.num_factors):
            p_f = p[rows, f]
            y_f = y - p_f * q[cols, f]
            numerator = np.bincount(cols, (w - (w - c_obs) * y_f) * p_f, minlength=num_items)
            numerator -= c * (q @ s_p[:, f] - q[:, f] * s_p[f, f])
            denominator = np.bincount(cols, (w - c_obs) * p_f ** 2, minlength=num_items)
            denominator += c * s_p[f, f] + self.reg
            q[:, f] = numerator / denominator
            y[:] = y_f + p_f * q[cols, f]

    def objective(self) -> float:
        """L of the module docstring; its missing-data term is
        ``sum_u p_u^T S^q p_u - sum_{(u,i) in R} c_i y_ui^2``."""
        if self.user_factors is None:
            raise RuntimeError("EALS.objective called before fit")
        p, q, c = self.user_factors, self.item_factors, self.confidence
        y = self._observed_predictions()
        s_q = (q * c[:, None]).T @ q
        observed = self.w * np.sum((1.0 - y) ** 2)
        missing = np.sum((p @ s_q) * p) - np.sum(c[self._cols] * y ** 2)
        return float(observed + missing + self.reg * (np.sum(p ** 2) + np.sum(q ** 2)))

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n,)`` y_ui = p_u . q_i for each (users[k], items[k])."""
        return self._dots(users, items)
