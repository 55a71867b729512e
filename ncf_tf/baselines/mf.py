"""MF: dot-product matrix factorisation with biases, learnt with the log loss.

Rendle, Krichene, Zhang and Anderson, "Neural Collaborative Filtering vs.
Matrix Factorization Revisited" (RecSys 2020), sec. 3 and their
``mf_simple.py``: the plain dot product, well tuned, beats NeuMF on the
paper's own protocol. With p_u, q_i the user and item vectors, b_u, b_i
their biases and b the global bias,

    y(u, i) = b + b_u + b_i + p_u . q_i

Every epoch's instances D are each training positive (u, i) with label
r = 1 and, for each, ``num_neg`` items j drawn uniformly from *all* items
with r = 0 (Rendle et al. do not reject training positives: "both cases
should be fine"; ``exclude_positives=True`` redraws them, as NCF's sampler
does). SGD with a fixed ``lr`` minimises

    L = sum_{(u, i, r) in D} [ -r ln sigmoid(y(u, i)) - (1 - r) ln(1 - sigmoid(y(u, i)))
                               + reg/2 (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2 + b^2) ]

so that one instance's step is, with g = r - sigmoid(y(u, i)),

    p_u += lr (g q_i - reg p_u)       q_i += lr (g p_u - reg q_i)
    b_u += lr (g - reg b_u)           b_i += lr (g - reg b_i)
    b   += lr (g - reg b)

Factors start as N(0, init_std^2), biases at 0. Rendle et al.'s ml-1m
setting: dimension 16..192 (one column of it for the biases, so
``num_factors`` = dim - 1), reg 0.005, 8 negatives, lr 0.002, init_std 0.1,
256 epochs. The defaults keep reg, negatives and init_std but trade epochs
for step size (lr 0.03, 24 epochs, 64 factors), chosen on a validation
split of ml-1m.

Deviations from sequential per-instance SGD, for speed: instances are taken
in shuffled mini-batches of ``batch_size``, a batch's gradients all at the
parameters before it and summed (Hogwild-style). The global bias, touched by
*every* instance, would move ``batch_size`` times too far and diverge; it
takes the step of ``n = len(batch)`` sequential updates on the loss
linearised in b: with gbar the batch mean of (g - reg b) and c the mean of
sigmoid'(y) + reg, ``b += gbar (1 - (1 - lr c)^n) / c`` (for n = 1 exactly
the per-instance step). Parameters are float32; losses accumulate in float64.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from ncf_tf.baselines.common import Baseline, check_pairs
from ncf_tf.data.sampling import NegativeSampler


class MF(Baseline):
    """Dot-product MF with user, item and global biases (Rendle et al. 2020).

    Args:
        num_factors: dimension of p_u and q_i.
        num_neg: negatives per positive and epoch.
        lr: fixed SGD learning rate (per instance).
        reg: L2 regularisation weight, applied at every instance.
        init_std: standard deviation of the Gaussian initialisation of the factors.
        epochs: passes over the freshly sampled instances.
        batch_size: instances per vectorised SGD step.
        exclude_positives: redraw a sampled negative that is a training positive.
    """

    NAME = "MF"

    def __init__(self, num_factors: int = 64, num_neg: int = 8, lr: float = 0.03,
                 reg: float = 0.005, init_std: float = 0.1, epochs: int = 24,
                 batch_size: int = 8192, exclude_positives: bool = False):
        self._keep(num_factors=(num_factors, "a positive integer"),
                   num_neg=(num_neg, "an integer >= 0"), lr=(lr, "> 0"), reg=(reg, ">= 0"),
                   init_std=(init_std, ">= 0"), epochs=(epochs, "an integer >= 0"),
                   batch_size=(batch_size, "a positive integer"),
                   exclude_positives=(exclude_positives, bool))
        self.user_factors: np.ndarray | None = None   # (num_users, num_factors) p_u
        self.item_factors: np.ndarray | None = None   # (num_items, num_factors) q_i
        self.user_bias: np.ndarray | None = None      # (num_users,) b_u
        self.item_bias: np.ndarray | None = None      # (num_items,) b_i
        self.bias = 0.0                               # b
        self.history: list[float] = []                # mean log loss per epoch

    def fit(self, train: sp.spmatrix, rng: np.random.Generator, log=print) -> "MF":
        """Initialises the parameters and runs ``epochs`` epochs of SGD, logging each."""
        train = sp.csr_matrix(train)
        train.eliminate_zeros()
        num_users, num_items = train.shape
        self._pos_users = np.repeat(np.arange(num_users, dtype=np.int32), np.diff(train.indptr))
        self._pos_items = train.indices.astype(np.int32)
        self._sampler = NegativeSampler(train, self.num_neg) if self.exclude_positives else None

        self.user_factors = rng.normal(0.0, self.init_std,
                                       (num_users, self.num_factors)).astype(np.float32)
        self.item_factors = rng.normal(0.0, self.init_std,
                                       (num_items, self.num_factors)).astype(np.float32)
        self.user_bias = np.zeros(num_users, np.float32)
        self.item_bias = np.zeros(num_items, np.float32)
        self.bias = 0.0
        return self._fit_epochs(lambda: self.epoch(rng), "MF epoch", log)

    def epoch(self, rng: np.random.Generator) -> float:
        """One more epoch on freshly sampled, shuffled instances; the mean log loss."""
        if self.user_factors is None:
            raise RuntimeError("MF.epoch called before fit")
        pos_users, pos_items = self._pos_users, self._pos_items
        neg_users = np.tile(pos_users, self.num_neg)
        if self._sampler is not None:
            neg_items = self._sampler.negatives(neg_users, rng)
        else:
            neg_items = rng.integers(0, self.item_factors.shape[0], size=len(neg_users),
                                     dtype=np.int32)
        users = np.concatenate([pos_users, neg_users])
        items = np.concatenate([pos_items, neg_items])
        labels = np.zeros(len(users), np.float32)
        labels[:len(pos_users)] = 1.0
        order = rng.permutation(len(users))
        return self._batches(users[order], items[order], labels[order])

    def _step(self, u: np.ndarray, i: np.ndarray, r: np.ndarray) -> float:
        """One SGD step on a batch of instances; returns the summed log loss."""
        p, q = self.user_factors, self.item_factors
        num_users, num_items = p.shape[0], q.shape[0]
        y = (self.bias + self.user_bias[u] + self.item_bias[i]
             + np.einsum("nf,nf->n", np.take(p, u, axis=0), np.take(q, i, axis=0)))
        s = expit(y)
        g = r - s
        lr, reg, n = self.lr, self.reg, len(u)
        # sum_k lr g_k q_{i_k} over each user's instances is G @ Q with G[u, i] =
        # lr * (sum of g over (u, i) instances); G.T @ P for items; P, Q before the step.
        grad = sp.coo_matrix((lr * g, (u, i)), shape=(num_users, num_items))
        step_p = grad @ q
        step_q = grad.T @ p
        # Each instance shrinks what it touches: p (1 - lr reg count_u) + G q.
        count_u = np.bincount(u, minlength=num_users).astype(np.float32)
        count_i = np.bincount(i, minlength=num_items).astype(np.float32)
        shrink_u = 1.0 - lr * reg * count_u
        shrink_i = 1.0 - lr * reg * count_i
        p *= shrink_u[:, None]
        p += step_p
        q *= shrink_i[:, None]
        q += step_q
        self.user_bias *= shrink_u
        self.user_bias += lr * np.bincount(u, g, minlength=num_users).astype(np.float32)
        self.item_bias *= shrink_i
        self.item_bias += lr * np.bincount(i, g, minlength=num_items).astype(np.float32)
        # The global bias: n sequential steps on the loss linearised in b.
        mean_step = float(np.mean(g, dtype=np.float64)) - reg * self.bias
        curvature = float(np.mean(s * (1.0 - s), dtype=np.float64)) + reg
        if curvature == 0.0:
            self.bias += n * lr * mean_step
        elif lr * curvature < 1.0:
            # (1 - (1 - lr c)^n) / c without cancellation for small lr c.
            self.bias += mean_step * -np.expm1(n * np.log1p(-lr * curvature)) / curvature
        else:
            self.bias += mean_step * (1.0 - (1.0 - lr * curvature) ** n) / curvature
        y = y.astype(np.float64)
        # -r ln sigmoid(y) - (1 - r) ln(1 - sigmoid(y)) = softplus(y) - r y, stably.
        return float(np.sum(np.logaddexp(0.0, y) - r * y))

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(n,)`` y(u, i) = b + b_u + b_i + p_u . q_i for each (users[k], items[k])."""
        users, items = check_pairs("MF", self.user_factors is not None, users, items)
        users, items = users.reshape(-1), items.reshape(-1)
        return (self.bias + self.user_bias[users].astype(np.float64)
                + self.item_bias[items]
                + np.einsum("nf,nf->n", self.user_factors[users].astype(np.float64),
                            self.item_factors[items].astype(np.float64)))

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """``(len(users), num_items)`` y(u, i) of every item, for full ranking."""
        users = check_pairs("MF", self.user_factors is not None, users, users)[0].reshape(-1)
        return (self.bias + self.user_bias[users].astype(np.float64)[:, None]
                + self.item_bias.astype(np.float64)[None, :]
                + self.user_factors[users].astype(np.float64)
                @ self.item_factors.astype(np.float64).T)

