"""The validation split: its invariants, the "latest" rule, and the loader's
timestamps and line numbers it relies on."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import DATA, requires_real_data
from ncf_tf.data import loader as data
from ncf_tf.data.loader import Dataset, load_dataset
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.data.validation import sample_unseen, validation_split


def hand_dataset(rows, cols, timestamps=None, lines=None, test=((0, 5),), num_items=8,
                 num_users=None) -> Dataset:
    """A Dataset built in memory; ``rows``/``cols`` must be in CSR order."""
    num_users = num_users or max(rows) + 1
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                          shape=(num_users, num_items))
    test_users = np.array([u for u, _ in test], np.int32)
    test_items = np.array([i for _, i in test], np.int32)
    return Dataset("hand", train, test_users, test_items,
                   np.zeros((len(test), 1), np.int32), {},
                   None if timestamps is None else np.asarray(timestamps, np.float64),
                   None if lines is None else np.asarray(lines, np.int64))


def check_invariants(dataset: Dataset, split: Dataset, num_negatives: int) -> None:
    shape = dataset.train.shape
    validation = sp.csr_matrix((np.ones(split.num_test), (split.test_users, split.test_items)),
                               shape=shape)
    test = sp.csr_matrix((np.ones(dataset.num_test), (dataset.test_users, dataset.test_items)),
                         shape=shape)
    # train' + validation = train, disjointly; with the test lines, everything.
    assert split.train.multiply(validation).nnz == 0
    assert (split.train + validation != dataset.train).nnz == 0
    assert (split.train + validation + test != dataset.train + test).nnz == 0
    assert validation.nnz == split.num_test
    # One validation line per user with >= 2 training interactions.
    counts = np.diff(dataset.train.indptr)
    assert split.test_users.tolist() == np.flatnonzero(counts >= 2).tolist()
    # Never the user's test item; never an interaction in train or test.
    test_item = np.full(shape[0], -1)
    test_item[dataset.test_users] = dataset.test_items
    assert (split.test_items != test_item[split.test_users]).all()
    seen = dataset.train + test
    rows = np.repeat(split.test_users, num_negatives)
    assert (np.asarray(seen[rows, split.test_negatives.reshape(-1)]) == 0).all()
    ordered = np.sort(split.test_negatives, axis=1)
    assert (np.diff(ordered, axis=1) != 0).all()   # distinct within a line
    assert split.test_negatives.shape == (split.num_test, num_negatives)
    assert split.train.shape == shape
    assert split.train.has_sorted_indices


# --- the loader keeps timestamps and line numbers ---------------------------

def write_files(folder, train_lines: list[str], num_users: int, test_item: int) -> None:
    """Training lines as given; one test line per user, with one negative (item 0)."""
    os.makedirs(folder, exist_ok=True)
    (folder / "hand.train.rating").write_text("\n".join(train_lines) + "\n")
    (folder / "hand.test.rating").write_text(
        "".join(f"{u}\t{test_item}\t5\t999\n" for u in range(num_users)))
    (folder / "hand.test.negative").write_text(
        "".join(f"({u},{test_item})\t0\n" for u in range(num_users)))


def test_loader_keeps_timestamps_and_lines_in_csr_order(tmp_path):
    # Out of order, a duplicate pair (0, 2), a line without timestamp, a
    # non-positive rating.
    lines = ["1\t4\t5\t300", "0\t2\t5\t100", "0\t1\t4\t200", "1\t0\t3", "0\t2\t5\t150",
             "1\t3\t0\t999", "0\t6\t1\t50"]
    write_files(tmp_path, lines, num_users=2, test_item=5)
    dataset = load_dataset(str(tmp_path), "hand")
    assert dataset.train[0].indices.tolist() == [1, 2, 6]
    assert dataset.train[1].indices.tolist() == [0, 4]   # item 3 had rating 0
    # (0, 2) occurs at 100 (line 1) and 150 (line 4): latest time, first line.
    np.testing.assert_array_equal(dataset.train_timestamps, [200, 150, 50, np.nan, 300])
    np.testing.assert_array_equal(dataset.train_lines, [2, 1, 6, 3, 0])


def test_loader_without_timestamp_column(tmp_path):
    write_files(tmp_path, ["0\t1\t1", "0\t2\t1\t77", "1\t5\t1"], num_users=2, test_item=4)
    (tmp_path / "hand.test.rating").write_text("0\t4\t5\n1\t4\t5\n")
    dataset = load_dataset(str(tmp_path), "hand")
    assert dataset.train_timestamps is None   # the first line has no fourth field
    np.testing.assert_array_equal(dataset.train_lines, [0, 1, 2])
    users, items, ratings = data.read_ratings(str(tmp_path / "hand.train.rating"))
    assert users.tolist() == [0, 0, 1] and items.tolist() == [1, 2, 5]


# --- the split's invariants ---------------------------------------------------

@pytest.mark.parametrize("how", ["latest", "random"])
def test_split_invariants_on_toy_data(toy, how):
    dataset = load_dataset(toy["folder"], toy["name"])
    split = validation_split(dataset, np.random.default_rng(0), how=how, num_negatives=20)
    check_invariants(dataset, split, 20)
    assert split.name == f"toy-validation-{how}"
    assert split.files == dataset.files
    # The evaluator runs on it unchanged.
    evaluation = LeaveOneOutEvaluator.for_dataset(split).evaluate(
        lambda u, i: np.zeros(len(u)))
    assert evaluation.hr == 0.0   # all tied: ties lose


@pytest.mark.parametrize("how", ["latest", "random"])
def test_split_is_determined_by_the_seed(toy, how):
    dataset = load_dataset(toy["folder"], toy["name"])
    a = validation_split(dataset, np.random.default_rng(3), how=how, num_negatives=20)
    b = validation_split(dataset, np.random.default_rng(3), how=how, num_negatives=20)
    c = validation_split(dataset, np.random.default_rng(4), how=how, num_negatives=20)
    for field in ("test_users", "test_items", "test_negatives"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert (a.train != b.train).nnz == 0
    assert not np.array_equal(a.test_negatives, c.test_negatives)
    if how == "random":
        assert not np.array_equal(a.test_items, c.test_items)
    else:   # the held-out items depend on the data only
        np.testing.assert_array_equal(a.test_items, c.test_items)


def test_latest_is_by_timestamp_then_earliest_line():
    # User 0: items 1, 2, 3 at times 10, 30, 30; item 2's line comes first,
    # so it is the later of the two at time 30. User 1: NaN counts as oldest.
    dataset = hand_dataset(rows=[0, 0, 0, 1, 1], cols=[1, 2, 3, 0, 4],
                           timestamps=[10, 30, 30, np.nan, 5], lines=[4, 0, 1, 2, 3],
                           test=((0, 5), (1, 6)))
    split = validation_split(dataset, np.random.default_rng(0), num_negatives=2)
    assert split.test_users.tolist() == [0, 1]
    assert split.test_items.tolist() == [2, 4]
    np.testing.assert_array_equal(split.train_timestamps, [10, 30, np.nan])
    np.testing.assert_array_equal(split.train_lines, [4, 1, 2])


def test_latest_without_timestamps_uses_the_line_order():
    dataset = hand_dataset(rows=[0, 0, 0], cols=[1, 2, 3], lines=[2, 0, 1])
    split = validation_split(dataset, np.random.default_rng(0), num_negatives=2)
    assert split.test_items.tolist() == [2]
    assert split.train_timestamps is None


def test_single_interaction_user_keeps_it():
    dataset = hand_dataset(rows=[0, 0, 1], cols=[1, 2, 3], timestamps=[1, 2, 3],
                           lines=[1, 0, 2], test=((0, 5), (1, 6)))
    for how in ("latest", "random"):
        split = validation_split(dataset, np.random.default_rng(0), how=how, num_negatives=2)
        assert split.test_users.tolist() == [0]
        assert split.train[1].indices.tolist() == [3]
        assert split.num_train == 2


def test_a_training_copy_of_the_test_item_is_never_held_out():
    # User 0's latest training interaction is its test item 5 (a duplicate).
    dataset = hand_dataset(rows=[0, 0, 0], cols=[1, 2, 5], timestamps=[1, 2, 9],
                           lines=[2, 1, 0], test=((0, 5),))
    split = validation_split(dataset, np.random.default_rng(0), num_negatives=2)
    assert split.test_items.tolist() == [2]
    for seed in range(20):
        split = validation_split(dataset, np.random.default_rng(seed), how="random",
                                 num_negatives=2)
        assert split.test_items[0] in (1, 2)


def test_random_draws_every_candidate_uniformly():
    dataset = hand_dataset(rows=[0, 0, 0, 0], cols=[1, 2, 3, 4], timestamps=[1, 2, 3, 4],
                           lines=[3, 2, 1, 0])
    rng = np.random.default_rng(0)
    drawn = [int(validation_split(dataset, rng, how="random", num_negatives=2).test_items[0])
             for _ in range(200)]
    counts = np.bincount(drawn, minlength=5)[1:]
    assert counts.min() > 30, counts   # 50 expected each


def test_negatives_are_uniform_over_unseen_items():
    seen = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0]], dtype=np.float32))
    rng = np.random.default_rng(0)
    draws = np.concatenate([sample_unseen(seen, np.array([0]), 2, rng)[0] for _ in range(800)])
    counts = np.bincount(draws, minlength=6)
    assert counts[:2].sum() == 0
    assert counts[2:].min() > 340, counts   # 400 expected each


@pytest.mark.parametrize("kwargs,match", [
    ({"how": "oldest"}, "how must be one of latest, random, got 'oldest'"),
    ({"num_negatives": 0}, "num_negatives must be a positive integer, got 0"),
    ({"num_negatives": 7}, "num_negatives 7: user 0 has only 5 of 8 items never interacted"),
])
def test_bad_arguments_are_named(kwargs, match):
    dataset = hand_dataset(rows=[0, 0], cols=[1, 2], timestamps=[1, 2], lines=[1, 0])
    with pytest.raises(ValueError, match=match):
        validation_split(dataset, np.random.default_rng(0), **kwargs)


def test_latest_needs_an_order():
    dataset = hand_dataset(rows=[0, 0], cols=[1, 2])
    with pytest.raises(ValueError, match="how='latest' needs timestamps or line numbers"):
        validation_split(dataset, np.random.default_rng(0))
    split = validation_split(dataset, np.random.default_rng(0), how="random", num_negatives=2)
    assert split.num_test == 1


@requires_real_data
@pytest.mark.realdata
def test_ml1m_latest_split_looks_like_the_test_set():
    """Regression guard: breaking ties by item id picked obscure movies.

    Most ml-1m training timestamps here are placeholders (Data/README.md), so
    the line order decides; then the validation items are as popular as the
    test items, and ItemPop scores alike on both.
    """
    dataset = load_dataset(DATA, "ml-1m")
    split = validation_split(dataset, np.random.default_rng(0))
    check_invariants(dataset, split, 99)
    assert split.num_test == dataset.num_test == 6040
    popularity = np.asarray(dataset.train.sum(axis=0)).ravel()
    ratio = popularity[split.test_items].mean() / popularity[dataset.test_items].mean()
    assert 0.8 < ratio < 1.25, ratio
    assert os.path.basename(next(iter(split.files))).startswith("ml-1m")
