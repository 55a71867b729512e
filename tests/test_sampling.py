"""Invariants of the negative-sampling instance generator."""

import numpy as np
import pytest
import scipy.sparse as sp

from ncf_tf.data.sampling import Instances, NegativeSampler, shuffle_records


def random_train(num_users=200, num_items=50, density=0.3, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.random((num_users, num_items)) < density
    dense[:, 0] = True   # every user has a positive
    return sp.csr_matrix(dense.astype(np.float32))


def test_each_positive_exactly_once_with_label_one():
    train = random_train()
    inst = NegativeSampler(train, 4).sample(np.random.default_rng(1))
    pos = inst.labels == 1
    got = sp.csr_matrix((np.ones(pos.sum()), (inst.users[pos], inst.items[pos])), shape=train.shape)
    assert pos.sum() == train.nnz
    assert (got != train).nnz == 0 and got.max() == 1


def test_ratio_and_no_negative_is_a_training_positive():
    train = random_train()
    inst = NegativeSampler(train, 4).sample(np.random.default_rng(2))
    neg = inst.labels == 0
    assert neg.sum() == 4 * train.nnz
    dense = train.toarray() > 0
    assert not dense[inst.users[neg], inst.items[neg]].any()


def test_each_positive_gets_num_neg_negatives_of_its_user():
    train = random_train()
    inst = NegativeSampler(train, 3).sample(np.random.default_rng(3))
    pos_users = np.sort(inst.users[inst.labels == 1])
    neg_users = np.sort(inst.users[inst.labels == 0])
    np.testing.assert_array_equal(np.repeat(pos_users, 3), neg_users)


def test_seed_determinism():
    train = random_train()
    a = NegativeSampler(train, 4).sample(np.random.default_rng(7)).shuffled(np.random.default_rng(8))
    b = NegativeSampler(train, 4).sample(np.random.default_rng(7)).shuffled(np.random.default_rng(8))
    c = NegativeSampler(train, 4).sample(np.random.default_rng(9))
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(NegativeSampler(train, 4).sample(np.random.default_rng(7)).items,
                              c.items)


def test_negatives_uniform_over_non_positives():
    # One user with positives {0, 1}; 10 items -> negatives uniform on 2..9.
    train = sp.csr_matrix(np.array([[1, 1] + [0] * 8], dtype=np.float32))
    sampler = NegativeSampler(train, 1)
    items = sampler.negatives(np.zeros(80_000, np.int32), np.random.default_rng(0))
    counts = np.bincount(items, minlength=10)
    assert counts[:2].sum() == 0
    expected = 80_000 / 8
    chi2 = ((counts[2:] - expected) ** 2 / expected).sum()
    assert chi2 < 24.3   # chi-square, 7 degrees of freedom, p = 0.001


def test_test_items_may_be_drawn():
    """Faithful: only training positives are excluded, not the test item."""
    train = sp.csr_matrix(np.array([[1, 0, 0]], dtype=np.float32))
    items = NegativeSampler(train, 1).negatives(np.zeros(1000, np.int32), np.random.default_rng(0))
    assert set(np.unique(items)) == {1, 2}


def test_shuffle_is_a_permutation():
    train = random_train()
    inst = NegativeSampler(train, 2).sample(np.random.default_rng(0))
    shuffled = inst.shuffled(np.random.default_rng(1))
    key = lambda x: np.sort(x.users.astype(np.int64) * 1000 + x.items * 2 + x.labels.astype(int))
    np.testing.assert_array_equal(key(inst), key(shuffled))
    assert not np.array_equal(inst.users, shuffled.users)


@pytest.mark.parametrize("bucket_size", [1, 2, 4])   # 4, 2 and 1 buckets
def test_shuffle_records_is_uniform(bucket_size):
    rng = np.random.default_rng(0)
    draws = 24_000
    codes = [int("".join(map(str, shuffle_records(np.arange(4), rng, bucket_size))))
             for _ in range(draws)]
    _, counts = np.unique(codes, return_counts=True)
    assert len(counts) == 24
    expected = draws / 24
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 49.7   # chi-square, 23 degrees of freedom, p = 0.001


def test_shuffle_records_leaves_its_input_alone():
    records = np.arange(100_000, dtype=np.int64)
    out = shuffle_records(records, np.random.default_rng(0), bucket_size=1000)
    np.testing.assert_array_equal(records, np.arange(100_000))
    np.testing.assert_array_equal(np.sort(out), records)
    assert not np.array_equal(out, records)


def test_shuffled_keeps_each_label_with_its_pair():
    """The label rides in the user's sign bit: the largest int32 id survives."""
    top = np.iinfo(np.int32).max
    users = np.array([0, top, 5, top, 7], np.int32)
    items = np.array([top, 0, 3, 2, 7], np.int32)
    labels = np.array([1, 1, 0, 0, 1], np.float32)
    out = Instances(users, items, labels).shuffled(np.random.default_rng(3))
    assert (out.users.dtype, out.items.dtype, out.labels.dtype) == (np.int32, np.int32, np.float32)
    assert sorted(zip(out.users, out.items, out.labels)) == sorted(zip(users, items, labels))


def test_shuffled_is_deterministic_per_seed():
    inst = NegativeSampler(random_train(), 4).sample(np.random.default_rng(0))
    a, b = (inst.shuffled(np.random.default_rng(5)) for _ in range(2))
    c = inst.shuffled(np.random.default_rng(6))
    for field in ("users", "items", "labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.items, c.items)


def test_num_neg_larger_than_a_users_unseen_items():
    train = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"num_neg=2: user 0 can be paired with only 1 items"):
        NegativeSampler(train, 2)


def test_negative_num_neg():
    with pytest.raises(ValueError, match="num_neg must be >= 0, got -1"):
        NegativeSampler(random_train(), -1)


def test_epoch_is_sample_then_shuffled():
    sampler = NegativeSampler(random_train(num_users=1000, num_items=100), 3)
    assert sampler.num_neg * 1000 * 100 * 0.3 > 4 * 16384   # several shuffle buckets
    a = sampler.epoch(np.random.default_rng(11))
    rng = np.random.default_rng(11)
    b = sampler.sample(rng).shuffled(rng)
    for x, y in ((a.users, b.users), (a.items, b.items), (a.labels, b.labels)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    assert 0 < a.labels.mean() < 1
