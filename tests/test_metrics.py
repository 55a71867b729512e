"""HR@K and NDCG@K against hand-computed values, ties and duplicates included."""

import numpy as np
import pytest

from ncf_tf.eval import metrics
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator


def test_ranks_hand_table():
    target = np.array([0.9, 0.5, 0.1, 0.5])
    negatives = np.array([[0.1, 0.2, 0.3],    # nothing beats 0.9       -> rank 0
                          [0.6, 0.4, 0.7],    # 0.6, 0.7 beat 0.5        -> rank 2
                          [0.2, 0.3, 0.4],    # all beat 0.1             -> rank 3
                          [0.5, 0.1, 0.2]])   # a tie counts against     -> rank 1
    np.testing.assert_array_equal(metrics.ranks(target, negatives), [0, 2, 3, 1])


@pytest.mark.parametrize("rank,k,hr,ndcg", [
    (0, 10, 1.0, 1.0),
    (1, 10, 1.0, np.log(2) / np.log(3)),
    (2, 10, 1.0, 0.5),                      # log 2 / log 4
    (9, 10, 1.0, np.log(2) / np.log(11)),
    (10, 10, 0.0, 0.0),
    (2, 2, 0.0, 0.0),
    (1, 2, 1.0, np.log(2) / np.log(3)),
])
def test_hr_ndcg_by_hand(rank, k, hr, ndcg):
    assert metrics.hit_ratio(np.array([rank]), k)[0] == hr
    assert metrics.ndcg(np.array([rank]), k)[0] == pytest.approx(ndcg)


def test_evaluator_means_over_users():
    # Two users, 3 negatives each; held-out items 10 and 20.
    evaluator = LeaveOneOutEvaluator(np.array([0, 1]), np.array([10, 20]),
                                     np.array([[1, 2, 3], [4, 5, 6]]), k=2)
    scores = {10: 5.0, 1: 9.0, 2: 1.0, 3: 1.0,     # user 0: rank 1 -> HR 1, NDCG 1/log2(3)
              20: 0.0, 4: 1.0, 5: 2.0, 6: 3.0}     # user 1: rank 3 -> HR 0
    result = evaluator.evaluate(lambda u, i: np.array([scores[x] for x in i]))
    assert result.hr == 0.5
    assert result.ndcg == pytest.approx(0.5 * np.log(2) / np.log(3))
    np.testing.assert_array_equal(result.ranks, [1, 3])
    assert result.at(4) == (1.0, pytest.approx(0.5 * (np.log(2) / np.log(3) + np.log(2) / np.log(5))))


def test_constant_scores_get_no_hit():
    """Regression: a model scoring all items alike must not get HR = 1."""
    evaluator = LeaveOneOutEvaluator(np.array([0]), np.array([7]), np.arange(99)[None] + 100, k=10)
    result = evaluator.evaluate(lambda u, i: np.zeros(len(i)))
    assert result.hr == 0.0 and result.ndcg == 0.0


def test_duplicate_negative_collapses_into_test_item():
    """The 156 ml-1m lines whose negatives contain the held-out item itself."""
    negatives = np.array([[7, 1, 2, 3]])   # item 7 is the test item and a "negative"
    evaluator = LeaveOneOutEvaluator(np.array([0]), np.array([7]), negatives, k=1)
    result = evaluator.evaluate(lambda u, i: np.where(i == 7, 1.0, 0.0))
    # Without collapsing, the duplicate would tie the target and push it to rank 1.
    assert result.ranks[0] == 0 and result.hr == 1.0


def test_negative_listed_twice_competes_once():
    """The authors' dict keyed by item id holds a repeated negative once."""
    negatives = np.array([[3, 1, 3, 2, 3],    # 3 beats the target: rank 1, not 3
                          [4, 4, 5, 6, 7]])   # 4 ties the target: rank 1, not 2
    evaluator = LeaveOneOutEvaluator(np.array([0, 1]), np.array([9, 8]), negatives, k=2)
    scores = {9: 0.5, 3: 0.9, 1: 0.1, 2: 0.1, 8: 0.5, 4: 0.5, 5: 0.0, 6: 0.0, 7: 0.0}
    result = evaluator.evaluate(lambda u, i: np.array([scores[x] for x in i]))
    np.testing.assert_array_equal(result.ranks, [1, 1])
    np.testing.assert_array_equal(evaluator.competing,
                                  [[1, 1, 0, 1, 0], [1, 0, 1, 1, 1]])


def test_nan_scores_lose():
    evaluator = LeaveOneOutEvaluator(np.array([0]), np.array([5]), np.array([[1, 2]]), k=1)
    result = evaluator.evaluate(lambda u, i: np.full(len(i), np.nan))
    assert result.ranks[0] == 2 and result.hr == 0.0   # ranked last, not first


def test_evaluator_rejects_bad_k():
    with pytest.raises(ValueError, match="topk must be a positive integer, got 0"):
        LeaveOneOutEvaluator(np.array([0]), np.array([5]), np.array([[1, 2]]), k=0)


def test_one_scoring_call_for_all_users():
    calls = []
    evaluator = LeaveOneOutEvaluator(np.arange(50), np.arange(50), np.tile(np.arange(50, 149), (50, 1)))

    def score(u, i):
        calls.append(len(u))
        return np.zeros(len(u))
    evaluator.evaluate(score)
    assert calls == [50 * 100]
