"""iALS: weighted matrix factorisation for implicit feedback by alternating least squares.

Hu, Koren and Volinsky, "Collaborative Filtering for Implicit Feedback
Datasets", ICDM 2008. Every (user, item) cell is an example: preference
p_ui = 1 for a training positive, else 0, with confidence c_ui = 1 + alpha
at a positive and 1 elsewhere. With x_u, y_i the user and item vectors
(X, Y stacked), it minimises

    L = sum_{u, i} c_ui (p_ui - x_u . y_i)^2 + sum_u reg_u |x_u|^2 + sum_i reg_i |y_i|^2

With ``reg_exponent`` nu = 0 (Hu et al.) every reg_u and reg_i is ``reg``;
otherwise reg_u = reg (w_u / mean_u w_u)^nu with w_u = sum_i c_ui (and w_i
likewise), the frequency-scaled regularisation of Rendle, Krichene, Zhang
and Koren (RecSys 2022), so that ``reg`` keeps its scale for an average row.

Each iteration sets every x_u to its exact minimiser with Y fixed, then
every y_i with X fixed, so L never increases. With R_u the training items
of u (Hu et al., eq. 4, for binary r):

    x_u = (Y^T Y + alpha sum_{i in R_u} y_i y_i^T + reg_u I)^{-1} (1 + alpha) sum_{i in R_u} y_i

Y^T Y is computed once per sweep, so the all-cells sum costs O(K^2) per user.
``solver="cholesky"`` solves each user's K x K system exactly (LAPACK);
``solver="cg"`` takes ``cg_steps`` conjugate-gradient steps per sweep for all
users at once, warm-started at the current factors (Takacs, Pilaszy and
Tikk, RecSys 2011): a product A_u v needs only v Y^T Y and a few vectorised
passes over the nonzeros. Approximate for few steps, exact in the limit.

Factors start as N(0, init_std^2) (only Y matters: X is solved first). The
default alpha = 16 and reg = 100 were the best of a small grid on a
validation split of ml-1m; both scale with the data set's density.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.linalg.lapack
import scipy.sparse as sp
import threadpoolctl

from ncf_tf.baselines.common import Baseline, binary_csr, check_pairs

Solver = Literal["cholesky", "cg"]
SOLVERS = ("cholesky", "cg")


class IALS(Baseline):
    """Weighted implicit matrix factorisation (Hu et al. 2008), fitted by ALS.

    Args:
        num_factors: dimension of the latent vectors.
        alpha: confidence of an observed interaction is 1 + alpha.
        reg: L2 regularisation weight (of a row of average confidence).
        reg_exponent: nu >= 0 of the frequency-scaled regularisation (0: none).
        epochs: ALS iterations (a user sweep then an item sweep each).
        init_std: standard deviation of the Gaussian initialisation.
        solver: ``"cholesky"`` (exact) or ``"cg"`` (conjugate gradient).
        cg_steps: conjugate-gradient steps per sweep (``solver="cg"``).
    """

    NAME = "iALS"

    def __init__(self, num_factors: int = 64, alpha: float = 16.0, reg: float = 100.0,
                 reg_exponent: float = 0.0, epochs: int = 8, init_std: float = 0.01,
                 solver: Solver = "cholesky", cg_steps: int = 3):
        self._keep(num_factors=(num_factors, "a positive integer"), alpha=(alpha, ">= 0"),
                   reg=(reg, "> 0"), reg_exponent=(reg_exponent, ">= 0"),
                   epochs=(epochs, "an integer >= 0"), init_std=(init_std, ">= 0"),
                   solver=(solver, SOLVERS), cg_steps=(cg_steps, "a positive integer"))
        self.user_factors: np.ndarray | None = None   # (num_users, num_factors) X
        self.item_factors: np.ndarray | None = None   # (num_items, num_factors) Y
        self.history: list[float] = []                # L after each iteration

    def fit(self, train: sp.spmatrix, rng: np.random.Generator, log=print) -> "IALS":
        """Initialises X, Y ~ N(0, init_std^2) and runs ``epochs`` ALS iterations, logging each."""
        self._train = train = binary_csr(train)
        self._train_t = train.T.tocsr()
        self._user_reg = self.row_regularisation(train)
        self._item_reg = self.row_regularisation(self._train_t)
        num_users, num_items = train.shape
        self.user_factors = rng.normal(0.0, self.init_std, (num_users, self.num_factors))
        self.item_factors = rng.normal(0.0, self.init_std, (num_items, self.num_factors))
        return self._fit_epochs(self._iteration, "iALS iteration", log)

    def iterate(self) -> None:
        """One ALS iteration: every x_u, then every y_i."""
        self.user_factors = self._sweep(self._train, self.item_factors, self.user_factors,
                                        self._user_reg)
        self.item_factors = self._sweep(self._train_t, self.user_factors, self.item_factors,
                                        self._item_reg)

    def row_regularisation(self, r: sp.csr_matrix) -> np.ndarray:
        """reg_u of every row of ``r`` (users, or items for the transpose)."""
        weight = r.shape[1] + self.alpha * np.diff(r.indptr)   # w_u = sum_i c_ui
        return self.reg * (weight / weight.mean()) ** self.reg_exponent

    def _sweep(self, r: sp.csr_matrix, fixed: np.ndarray, current: np.ndarray,
               reg: np.ndarray) -> np.ndarray:
        """The minimisers of the rows of ``r`` (users or items) given ``fixed``."""
        gram = fixed.T @ fixed
        rhs = (1.0 + self.alpha) * (r @ fixed)   # (1 + alpha) sum_{i in R_u} y_i
        if self.solver == "cholesky":
            return self._solve_exact(r, fixed, gram, rhs, reg)
        return self._solve_cg(r, fixed, gram, rhs, current, reg)

    def _solve_exact(self, r: sp.csr_matrix, fixed: np.ndarray, gram: np.ndarray,
                     rhs: np.ndarray, reg: np.ndarray) -> np.ndarray:
        solution = np.empty_like(rhs)
        indptr, indices = r.indptr, r.indices
        # Thousands of small products: one BLAS thread each (a multithreaded
        # BLAS falls behind when other processes hold the cores).
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            for row in range(r.shape[0]):
                observed = fixed[indices[indptr[row]:indptr[row + 1]]]
                a = gram + self.alpha * (observed.T @ observed)
                a.flat[::self.num_factors + 1] += reg[row]
                # LAPACK posv: Cholesky factorisation and solve in one call.
                _, solution[row], info = scipy.linalg.lapack.dposv(a, rhs[row], lower=True)
                if info != 0:
                    raise np.linalg.LinAlgError(
                        f"iALS: the system of row {row} is not positive definite (LAPACK "
                        f"info {info}); are the factors finite?")
        return solution

    def _solve_cg(self, r: sp.csr_matrix, fixed: np.ndarray, gram: np.ndarray,
                  rhs: np.ndarray, current: np.ndarray, reg: np.ndarray) -> np.ndarray:
        rows = np.repeat(np.arange(r.shape[0]), np.diff(r.indptr))
        observed = fixed[r.indices]   # (nnz, K): y_i of every observed entry

        def product(v: np.ndarray) -> np.ndarray:
            # A_u v_u for every u: v_u (Y^T Y + reg_u I) + alpha sum_{i in R_u} y_i (y_i . v_u).
            weights = np.einsum("nk,nk->n", observed, v[rows])
            return v @ gram + reg[:, None] * v + self.alpha * (
                sp.csr_matrix((weights, r.indices, r.indptr), shape=r.shape) @ fixed)

        x = current.copy()
        residual = rhs - product(x)
        direction = residual.copy()
        norm = np.einsum("uk,uk->u", residual, residual)
        for _ in range(self.cg_steps):
            a_direction = product(direction)
            curvature = np.einsum("uk,uk->u", direction, a_direction)
            # A row that has already converged has residual (and direction) 0.
            step = np.divide(norm, curvature, out=np.zeros_like(norm), where=curvature > 0)
            x += step[:, None] * direction
            residual -= step[:, None] * a_direction
            new_norm = np.einsum("uk,uk->u", residual, residual)
            beta = np.divide(new_norm, norm, out=np.zeros_like(norm), where=norm > 0)
            direction = residual + beta[:, None] * direction
            norm = new_norm
        return x

    def objective(self) -> float:
        """L of the module docstring: the all-cells sum of (x_u . y_i)^2 is
        ``sum_u x_u^T (Y^T Y) x_u``; observed cells replace their weight-1, target-0 term."""
        if self.user_factors is None:
            raise RuntimeError("IALS.objective called before fit")
        x, y = self.user_factors, self.item_factors
        rows = np.repeat(np.arange(x.shape[0]), np.diff(self._train.indptr))
        s = np.einsum("nk,nk->n", x[rows], y[self._train.indices])
        every_cell = np.sum((x @ (y.T @ y)) * x)
        observed = np.sum((1.0 + self.alpha) * (1.0 - s) ** 2 - s ** 2)
        return float(every_cell + observed + self._user_reg @ np.sum(x ** 2, axis=1)
                     + self._item_reg @ np.sum(y ** 2, axis=1))

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n,)`` x_u . y_i for each (users[k], items[k])."""
        return self._dots(users, items)

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """``(len(users), num_items)`` x_u . y_i of every item, for full ranking."""
        users = check_pairs("IALS", self.user_factors is not None, users, users)[0]
        return self.user_factors[users.reshape(-1)] @ self.item_factors.T
