"""What every baseline's ``score`` checks before scoring."""

from __future__ import annotations

import numpy as np


def check_pairs(model: str, fitted: bool, users, items) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)`` as arrays, after checking the model is fitted and shapes agree."""
    if not fitted:
        raise RuntimeError(f"{model}.score called before fit")
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape:
        raise ValueError(f"users and items must have the same shape, got "
                         f"{users.shape} and {items.shape}")
    return users, items
