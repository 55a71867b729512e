"""The two exact membership structures agree with a Python set, and the
sampler draws the same negatives whichever it uses."""

import numpy as np
import pytest
import scipy.sparse as sp

from ncf_tf.data import membership as mb
from ncf_tf.data.sampling import NegativeSampler


def pairs(rng, num_users, num_items, n):
    return (rng.integers(0, num_users, n).astype(np.int32),
            rng.integers(0, num_items, n).astype(np.int32))


@pytest.mark.parametrize("num_users,num_items,n", [(7, 5, 20), (300, 200, 5000), (50, 3, 150),
                                                   (1, 1, 1), (100_000, 90_000, 20_000)])
def test_both_structures_answer_like_a_set(num_users, num_items, n):
    rng = np.random.default_rng(n)
    users, items = pairs(rng, num_users, num_items, n)   # with duplicates
    truth = set(zip(users.tolist(), items.tolist()))
    q_users, q_items = pairs(rng, num_users, num_items, 4 * n)
    q_users = np.concatenate([q_users, users])            # every member asked too
    q_items = np.concatenate([q_items, items])
    expected = np.array([(u, i) in truth for u, i in zip(q_users.tolist(), q_items.tolist())])
    for kind in (mb.BitsetMembership, mb.HashMembership):
        if kind is mb.BitsetMembership and num_users * num_items > 10**8:
            continue
        found = kind(users, items, num_users, num_items).contains(q_users, q_items)
        np.testing.assert_array_equal(found, expected, err_msg=kind.__name__)


def test_the_hash_set_holds_every_distinct_key_once_at_load_at_most_half():
    rng = np.random.default_rng(0)
    users, items = pairs(rng, 1000, 1000, 30_000)
    table = mb.HashMembership(users, items, 1000, 1000)
    keys = np.unique(users.astype(np.uint64) * np.uint64(1000) + items)
    held = table._table[table._table != mb._EMPTY]
    np.testing.assert_array_equal(np.sort(held), keys)
    assert table.size == len(keys) and len(table._table) >= 2 * len(keys)
    assert table._table[-1] == mb._EMPTY


def test_the_smaller_structure_is_chosen():
    users, items = np.zeros(10, np.int32), np.arange(10, dtype=np.int32)
    assert isinstance(mb.membership(users, items, 6040, 3706), mb.BitsetMembership)
    assert isinstance(mb.membership(users, items, 138_493, 26_744), mb.BitsetMembership)
    # 1M users x 100k items as a bitset: 12.5 GB; a hash set of 10 keys: 128 bytes.
    assert isinstance(mb.membership(users, items, 10**6, 10**5), mb.HashMembership)
    assert mb.bitset_bytes(138_493, 26_744) == 462_982_099   # ceil(138,493 * 26,744 / 8)
    assert mb.hash_bytes(100_000_000) == 2**31


def test_the_sampler_draws_the_same_negatives_with_either_structure():
    rng = np.random.default_rng(3)
    users, items = pairs(rng, 200, 120, 4000)
    train = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(200, 120))
    train.data[:] = 1
    bitset = NegativeSampler(train, num_neg=4)
    assert isinstance(bitset.positives, mb.BitsetMembership)
    hashed = NegativeSampler(train, num_neg=4)
    coo = train.tocoo()
    hashed.positives = mb.HashMembership(coo.row, coo.col, 200, 120)
    a, b = bitset.epoch(np.random.default_rng(9)), hashed.epoch(np.random.default_rng(9))
    for x, y in ((a.users, b.users), (a.items, b.items), (a.labels, b.labels)):
        np.testing.assert_array_equal(x, y)
    negative = a.labels == 0
    assert not bitset.is_positive(a.users[negative], a.items[negative]).any()


def test_distinct_values_like_np_unique():
    from ncf_tf.core.arrays import count_distinct, distinct_sorted
    rng = np.random.default_rng(1)
    for values in (rng.integers(0, 50, 1000), rng.integers(0, 10**12, 1000), np.array([7]),
                   np.array([], dtype=np.int64), np.array([10**9, 3, 3])):
        np.testing.assert_array_equal(distinct_sorted(values), np.unique(values))
        assert count_distinct(values) == len(np.unique(values))


def test_large_evaluations_go_in_blocks_with_the_same_ranks(monkeypatch):
    from ncf_tf.eval import leave_one_out
    rng = np.random.default_rng(5)
    users = np.arange(50)
    items = rng.integers(0, 30, 50)
    negatives = rng.integers(0, 30, (50, 9))
    table = rng.normal(size=(50, 30)).round(1)   # rounded: ties happen
    calls = []

    def score_fn(u, i):
        calls.append(len(u))
        return table[u, i]
    evaluator = leave_one_out.LeaveOneOutEvaluator(users, items, negatives)
    whole = evaluator.evaluate(score_fn)
    monkeypatch.setattr(leave_one_out, "BLOCK_PAIRS", 70)   # 7 lines of 10 pairs a call
    blocks = evaluator.evaluate(score_fn)
    assert calls == [500] + [70] * 7 + [10]
    np.testing.assert_array_equal(whole.ranks, blocks.ranks)
    assert (whole.hr, whole.ndcg) == (blocks.hr, blocks.ndcg)
