"""BPR: matrix factorisation learnt with the Bayesian personalised ranking loss.

Rendle, Freudenthaler, Gantner and Schmidt-Thieme, UAI 2009, as the paper's
baseline (sec. 4.1): the MF model of the paper's equation 2 with a pairwise
ranking loss. With p_u, q_i the ``num_factors``-dimensional user and item
vectors and b_i an optional item bias,

    x_ui  = p_u . q_i + b_i
    x_uij = x_ui - x_uj

and LearnBPR minimises, over triples (u, i, j) with (u, i) a training positive
drawn uniformly (with replacement, Rendle's bootstrap sampling) and j drawn
uniformly from the items u has *not* interacted with (exact rejection),

    loss(u, i, j) = -ln sigmoid(x_uij)
                    + reg/2 * (|p_u|^2 + |q_i|^2 + |q_j|^2 + b_i^2 + b_j^2)

by SGD with a fixed ``lr``; an epoch is as many triples as there are
training positives. Factors start as N(0, init_std^2), biases at 0.
Deviation, for speed: triples are taken in mini-batches of ``batch_size``,
a batch's gradients all at the parameters before it and summed (Hogwild-style).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from ncf_tf.baselines.common import Baseline
from ncf_tf.data.sampling import NegativeSampler


class BPR(Baseline):
    """Matrix factorisation trained with the BPR pairwise loss.

    Args:
        num_factors: dimension of the latent vectors (predictive factors).
        lr: fixed SGD learning rate.
        reg: L2 regularisation weight of every parameter a triple touches.
        epochs: passes of ``nnz(train)`` sampled triples.
        batch_size: triples per vectorised SGD step.
        use_bias: learn an item bias b_i.
        init_std: standard deviation of the Gaussian initialisation.
    """

    NAME = "BPR"

    def __init__(self, num_factors: int = 8, lr: float = 0.05, reg: float = 0.01,
                 epochs: int = 20, batch_size: int = 4096, use_bias: bool = True,
                 init_std: float = 0.01):
        self._keep(num_factors=(num_factors, "a positive integer"), lr=(lr, "> 0"),
                   reg=(reg, ">= 0"), epochs=(epochs, "an integer >= 0"),
                   batch_size=(batch_size, "a positive integer"), use_bias=(use_bias, bool),
                   init_std=(init_std, ">= 0"))
        self.user_factors: np.ndarray | None = None   # (num_users, num_factors)
        self.item_factors: np.ndarray | None = None   # (num_items, num_factors)
        self.item_bias: np.ndarray | None = None      # (num_items,)
        self.history: list[float] = []                # mean -ln sigmoid(x_uij) per epoch

    def fit(self, train: sp.spmatrix, rng: np.random.Generator, log=print) -> "BPR":
        """Runs ``epochs`` epochs of LearnBPR, logging one line per epoch.

        Raises:
            ValueError: a user with a training positive has interacted with
                every item, so no negative j exists.
        """
        train = sp.csr_matrix(train)
        train.eliminate_zeros()
        num_users, num_items = train.shape
        counts = np.diff(train.indptr)
        full = counts >= num_items
        if full.any():
            raise ValueError(f"BPR: user {int(np.argmax(full))} has interacted with all "
                             f"{num_items} items; no negative item j can be sampled")
        sampler = NegativeSampler(train, 0)
        pos_users = np.repeat(np.arange(num_users, dtype=np.int32), counts)
        pos_items = train.indices.astype(np.int32)

        self.user_factors = rng.normal(0.0, self.init_std, (num_users, self.num_factors))
        self.item_factors = rng.normal(0.0, self.init_std, (num_items, self.num_factors))
        self.item_bias = np.zeros(num_items)

        def epoch() -> float:
            # Bootstrap sampling (Rendle et al.): positives with replacement.
            draw = rng.integers(0, len(pos_users), size=len(pos_users))
            users = pos_users[draw]
            return self._batches(users, pos_items[draw], sampler.negatives(users, rng))
        return self._fit_epochs(epoch, "BPR epoch", log)

    def _step(self, u: np.ndarray, i: np.ndarray, j: np.ndarray) -> float:
        """One SGD step on a batch of triples; returns the summed BPR loss."""
        p, q_i, q_j = self.user_factors[u], self.item_factors[i], self.item_factors[j]
        x = np.einsum("nf,nf->n", p, q_i - q_j)
        if self.use_bias:
            x += self.item_bias[i] - self.item_bias[j]
        # d(-ln sigmoid(x))/dx = -sigmoid(-x); g is the descent direction's weight.
        g = expit(-x)[:, None]
        lr, reg = self.lr, self.reg
        np.add.at(self.user_factors, u, lr * (g * (q_i - q_j) - reg * p))
        np.add.at(self.item_factors, i, lr * (g * p - reg * q_i))
        np.add.at(self.item_factors, j, lr * (-g * p - reg * q_j))
        if self.use_bias:
            g = g[:, 0]
            np.add.at(self.item_bias, i, lr * (g - reg * self.item_bias[i]))
            np.add.at(self.item_bias, j, lr * (-g - reg * self.item_bias[j]))
        return float(np.logaddexp(0.0, -x).sum())

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n,)`` x_ui = p_u . q_i + b_i for each (users[k], items[k])."""
        scores = self._dots(users, items)
        if self.use_bias:
            scores += self.item_bias[np.asarray(items).reshape(-1)]
        return scores
