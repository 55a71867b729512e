"""What the baselines share: their base class (settings, ``config``, the
training loop), the training matrix they fit on, and the checks of ``score``."""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp


def _integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


RULES = {
    "a positive integer": lambda value: _integer(value) and value > 0,
    "an integer >= 0": lambda value: _integer(value) and value >= 0,
    "> 0": lambda value: value > 0,
    ">= 0": lambda value: value >= 0,
}
"""What a setting may be, in the words of the error."""


class Baseline:
    """The interface of every baseline (:mod:`ncf_tf.baselines`).

    ``fit(train, rng, log) -> self`` fits on ``train``, the ``(num_users,
    num_items)`` sparse matrix non-zero at each training positive; ``rng`` is
    the source of all randomness (ignored by deterministic models) and ``log``
    is called with progress lines. ``score(users, items) -> (n,)`` scores
    pairs, higher is better. ``config()`` is ``{"model": NAME}`` and the
    settings, which rebuild the model as keyword arguments. A constructor
    raises ValueError naming a setting out of range and its value.
    """

    NAME = ""
    _settings: tuple[str, ...] = ()

    def _keep(self, **settings: tuple[object, object]) -> None:
        """Checks and keeps each ``name=(value, rule)``, in the order of ``config``.

        A rule is a key of :data:`RULES` (kept as int for the integer rules,
        else float), ``bool``, or a tuple of the allowed values.
        """
        for name, (value, rule) in settings.items():
            if isinstance(rule, tuple):
                if value not in rule:
                    raise ValueError(f"{name} must be one of {', '.join(rule)}, got {value!r}")
            elif rule is bool:
                value = bool(value)
            elif not RULES[rule](value):
                raise ValueError(f"{name} must be {rule}, got {value!r}")
            else:
                value = int(value) if "integer" in rule else float(value)
            setattr(self, name, value)
        self._settings = tuple(settings)

    def config(self) -> dict:
        return {"model": self.NAME, **{name: getattr(self, name) for name in self._settings}}

    def _fit_epochs(self, epoch, what: str, log):
        """Runs ``epoch()`` ``self.epochs`` times, keeping its losses in
        ``history`` and logging ``<what> <n> [<seconds> s]: loss = <loss>``; self."""
        self.history = []
        for number in range(1, self.epochs + 1):
            start = time.time()
            self.history.append(epoch())
            log(f"{what} {number} [{time.time() - start:.1f} s]: "
                f"loss = {self.history[-1]:.4f}")
        return self

    def _iteration(self) -> float:
        """One ALS iteration (``iterate``); the objective after it."""
        self.iterate()
        return self.objective()

    def _batches(self, *arrays: np.ndarray) -> float:
        """``_step`` on each mini-batch of ``batch_size`` of ``arrays``; the mean loss."""
        n = len(arrays[0])
        total = 0.0
        for lo in range(0, n, self.batch_size):
            total += self._step(*(a[lo:lo + self.batch_size] for a in arrays))
        return total / max(n, 1)

    def _dots(self, users, items) -> np.ndarray:
        """``(n,)`` user_factors[u] . item_factors[i] of each pair."""
        users, items = check_pairs(type(self).__name__, self.user_factors is not None,
                                   users, items)
        return np.einsum("nf,nf->n", self.user_factors[users.reshape(-1)],
                         self.item_factors[items.reshape(-1)])


def check_pairs(model: str, fitted: bool, users, items) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)`` as arrays, after checking the model is fitted and shapes agree."""
    if not fitted:
        raise RuntimeError(f"{model}.score called before fit")
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape:
        raise ValueError(f"users and items must have the same shape, got "
                         f"{users.shape} and {items.shape}")
    return users, items


def by_user_rows(users, items, rows, block: int) -> np.ndarray:
    """``(n,)`` ``rows(u)[items[k]]`` of each pair ``(users[k], items[k])``, with
    ``rows(distinct_users)`` called on blocks of at most ``block`` users."""
    users, items = users.reshape(-1), items.reshape(-1)
    scores = np.empty(len(users), np.float64)
    unique_users, row_of_pair = np.unique(users, return_inverse=True)
    order = np.argsort(row_of_pair, kind="stable")
    sorted_rows = row_of_pair[order]
    for first in range(0, len(unique_users), block):
        lo, hi = np.searchsorted(sorted_rows, [first, first + block])
        pairs = order[lo:hi]
        dense = rows(unique_users[first:first + block])
        scores[pairs] = dense[row_of_pair[pairs] - first, items[pairs]]
    return scores


def binary_csr(train: sp.spmatrix) -> sp.csr_matrix:
    """A float64 CSR copy of ``train`` with 1 at each non-zero entry, sorted indices."""
    x = sp.csr_matrix(train, dtype=np.float64, copy=True)
    x.data[:] = x.data != 0
    x.eliminate_zeros()
    x.sort_indices()
    return x
