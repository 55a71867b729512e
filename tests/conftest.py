"""Shared fixtures: tiny data sets in the authors' file format, made by the tests."""

from __future__ import annotations

import configparser
import os

import keras
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "Data")

tensorflow_only = pytest.mark.skipif(keras.config.backend() != "tensorflow",
                                     reason="needs the TensorFlow backend")
"""For what only TensorFlow does here: tf.distribute, SavedModel export,
TensorBoard summaries (the suite also runs with KERAS_BACKEND=jax)."""


def block_interactions(num_users: int, num_items: int, groups: int, density: float,
                       rng: np.random.Generator) -> list[tuple[int, int]]:
    """A learnable "checkerboard": user u likes items of block u % groups only."""
    pairs = []
    block = num_items // groups
    for user in range(num_users):
        own = np.arange(block) + (user % groups) * block
        chosen = own[rng.random(block) < density]
        if len(chosen) < 3:
            chosen = own[:3]
        pairs += [(user, int(item)) for item in chosen]
    return pairs


def entry_points() -> dict[str, str]:
    """setup.cfg's console scripts: name -> ``module:function``."""
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


def write_dataset(folder, name: str = "toy", num_users: int = 40, num_items: int = 60,
                  groups: int = 2, density: float = 0.5, num_neg: int = 20,
                  seed: int = 0) -> dict:
    """Writes ``<name>.train.rating``, ``.test.rating``, ``.test.negative``.

    One interaction of each user is held out; its negatives are drawn from the
    items the user never interacted with. Returns the pieces for assertions.
    """
    rng = np.random.default_rng(seed)
    pairs = block_interactions(num_users, num_items, groups, density, rng)
    by_user: dict[int, list[int]] = {}
    for user, item in pairs:
        by_user.setdefault(user, []).append(item)
    train, test, negatives = [], [], []
    for user, items in sorted(by_user.items()):
        held_out = items[len(items) // 2]
        test.append((user, held_out))
        train += [(user, item) for item in items if item != held_out]
        unseen = np.setdiff1d(np.arange(num_items), items)
        negatives.append(rng.choice(unseen, size=num_neg, replace=False))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.train.rating"), "w") as f:
        f.writelines(f"{u}\t{i}\t1\t{978300000 + k}\n" for k, (u, i) in enumerate(train))
    with open(os.path.join(folder, f"{name}.test.rating"), "w") as f:
        f.writelines(f"{u}\t{i}\t5\t978301000\n" for u, i in test)
    with open(os.path.join(folder, f"{name}.test.negative"), "w") as f:
        f.writelines(f"({u},{i})\t" + "\t".join(map(str, negs)) + "\n"
                     for (u, i), negs in zip(test, negatives))
    return {"train": train, "test": test, "negatives": negatives, "folder": str(folder),
            "name": name, "num_users": num_users, "num_items": num_items}


@pytest.fixture
def toy(tmp_path):
    """A small learnable data set in the authors' format under tmp_path/data."""
    return write_dataset(tmp_path / "data")


def has_real_data() -> bool:
    return all(os.path.isfile(os.path.join(DATA, f"ml-1m.{s}"))
               for s in ("train.rating", "test.rating", "test.negative"))


requires_real_data = pytest.mark.skipif(
    not has_real_data(), reason="the authors' ml-1m files are not in Data/ "
    "(bin/download_data --dataset ml-1m)")
