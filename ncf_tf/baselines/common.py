"""What the baselines share: the check of their settings, the training matrix
they fit on, and the checks of ``score``."""

from __future__ import annotations

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


def check_settings(**settings: tuple[object, str]) -> None:
    """Each keyword is ``name=(value, rule)``, the rule a key of :data:`RULES`;
    ValueError naming the first setting that breaks its rule and its value."""
    for name, (value, rule) in settings.items():
        if not RULES[rule](value):
            raise ValueError(f"{name} must be {rule}, got {value!r}")


def check_pairs(model: str, fitted: bool, users, items) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)`` as arrays, after checking the model is fitted and shapes agree."""
    if not fitted:
        raise RuntimeError(f"{model}.score called before fit")
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape:
        raise ValueError(f"users and items must have the same shape, got "
                         f"{users.shape} and {items.shape}")
    return users, items


def binary_csr(train: sp.spmatrix) -> sp.csr_matrix:
    """A float64 CSR copy of ``train`` with 1 at each non-zero entry, sorted indices."""
    x = sp.csr_matrix(train, dtype=np.float64, copy=True)
    x.data[:] = x.data != 0
    x.eliminate_zeros()
    x.sort_indices()
    return x
