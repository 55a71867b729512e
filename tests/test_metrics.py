"""HR@K, NDCG@K and the library metrics (MAP@K, precision@K, recall@K, MRR,
AUC) against hand-computed values, ties and duplicates included, and against
a brute-force pairwise count on the scores of a fitted model."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from ncf_tf.eval import metrics
from ncf_tf.eval.leave_one_out import Evaluation, LeaveOneOutEvaluator


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


def test_evaluator_without_test_lines_gives_nan_metrics():
    """Regression: no test line is an evaluation of nothing (NaN), not a crash."""
    evaluator = LeaveOneOutEvaluator(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 2), int))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = evaluator.evaluate(lambda u, i: np.zeros(len(u)))
    assert np.isnan(result.hr) and np.isnan(result.ndcg) and len(result.ranks) == 0


def test_one_scoring_call_for_all_users():
    calls = []
    evaluator = LeaveOneOutEvaluator(np.arange(50), np.arange(50), np.tile(np.arange(50, 149), (50, 1)))

    def score(u, i):
        calls.append(len(u))
        return np.zeros(len(u))
    evaluator.evaluate(score)
    assert calls == [50 * 100]


# ----------------------------------------------------------------------------
# MAP@K, precision@K, recall@K, MRR, AUC (one relevant item per test line)


@pytest.mark.parametrize("rank,k,n,expected", [
    # rank 0: everything is 1 but precision (1 / K)
    (0, 10, 100, dict(hr=1, ndcg=1, map=1, precision=0.1, recall=1, mrr=1, auc=1)),
    (2, 10, 100, dict(hr=1, ndcg=0.5, map=1 / 3, precision=0.1, recall=1, mrr=1 / 3,
                      auc=1 - 2 / 99)),
    (9, 10, 1000, dict(hr=1, ndcg=np.log(2) / np.log(11), map=0.1, precision=0.1, recall=1,
                       mrr=0.1, auc=1 - 9 / 999)),
    # just beyond K: the cut metrics are 0, MRR and AUC are not cut
    (10, 10, 100, dict(hr=0, ndcg=0, map=0, precision=0, recall=0, mrr=1 / 11,
                       auc=1 - 10 / 99)),
    # last of n: AUC 0
    (99, 10, 100, dict(hr=0, ndcg=0, map=0, precision=0, recall=0, mrr=0.01, auc=0)),
    (1, 1, 2, dict(hr=0, ndcg=0, map=0, precision=0, recall=0, mrr=0.5, auc=0)),
    (0, 1, 2, dict(hr=1, ndcg=1, map=1, precision=1, recall=1, mrr=1, auc=1)),
])
def test_every_metric_by_hand(rank, k, n, expected):
    got = metrics.ranking_metrics(np.array([rank]), n, k)
    assert list(got) == list(metrics.METRIC_NAMES)
    assert got == pytest.approx(expected, rel=1e-12)
    for name, value in expected.items():
        assert metrics.METRICS[name](np.array([rank]), n, k)[0] == pytest.approx(value)


def test_metrics_of_a_hand_scored_line_with_ties_and_duplicates():
    # Held-out item 7 among "negatives" 7 (itself: collapses), 1 twice (competes
    # once), 2 and 3. Competing: 1, 2, 3, so n = 4 candidates. Item 1 ties the
    # target (counts against it) and item 3 beats it: rank 2.
    evaluator = LeaveOneOutEvaluator(np.array([0]), np.array([7]),
                                     np.array([[7, 1, 1, 2, 3]]), k=3)
    scores = {7: 1.0, 1: 1.0, 2: 0.5, 3: 2.0}
    result = evaluator.evaluate(lambda u, i: np.array([scores[x] for x in i]))
    assert result.ranks.tolist() == [2] and result.num_candidates.tolist() == [4]
    assert result.metrics() == pytest.approx(dict(
        hr=1, ndcg=0.5, map=1 / 3, precision=1 / 3, recall=1, mrr=1 / 3,
        auc=1 / 3))   # beats item 2 only, of 3 competitors
    assert result.metrics(["precision", "map", "auc"], k=2) == pytest.approx(
        dict(precision=0, map=0, auc=1 / 3))
    assert (result.hr, result.ndcg) == (1.0, pytest.approx(0.5))


def test_constant_scores_get_no_auc_credit():
    """Ties count against the held-out item: no half credit (Cornac's rule, not
    the Mann-Whitney one), so a constant model gets AUC 0 as it gets HR 0."""
    evaluator = LeaveOneOutEvaluator(np.array([0, 1]), np.array([7, 8]),
                                     np.array([[1, 2, 3], [8, 4, 5]]), k=2)
    result = evaluator.evaluate(lambda u, i: np.zeros(len(i)))
    assert result.ranks.tolist() == [3, 2] and result.num_candidates.tolist() == [4, 3]
    assert result.metrics(["auc", "mrr"]) == pytest.approx(dict(auc=0, mrr=(1 / 4 + 1 / 3) / 2))


def brute_force(target: np.ndarray, negatives: list, k: int) -> dict:
    """Per line, from the score of the target and the scores of its distinct
    competitors, every metric by counting pairs and sorting."""
    out = {name: [] for name in metrics.METRIC_NAMES}
    for t, negs in zip(target, negatives):
        negs = np.asarray(negs)
        ahead = int(np.sum(negs >= t))
        # the ranking: all candidates sorted best first, the target after its ties
        ranking = sorted([(-x, 0) for x in negs] + [(-t, 1)])
        top = [flag for _, flag in ranking[:k]]
        hit = sum(top)
        position = [flag for _, flag in ranking].index(1)
        out["hr"].append(float(hit))
        out["recall"].append(float(hit))
        out["precision"].append(hit / k)
        out["ndcg"].append(1 / np.log2(position + 2) if hit else 0.0)
        out["map"].append(1 / (position + 1) if hit else 0.0)
        out["mrr"].append(1 / (position + 1))
        out["auc"].append(np.mean([t > x for x in negs]))
        assert position == ahead
    return {name: float(np.mean(v)) for name, v in out.items()}


@pytest.mark.parametrize("num_neg", [99, 999])
def test_metrics_agree_with_brute_force_on_a_fitted_model(num_neg):
    from ncf_tf.baselines.ials import IALS
    rng = np.random.default_rng(0)
    num_users, num_items = 40, 1200
    train = sp.csr_matrix((rng.random((num_users, num_items)) < 0.05).astype(np.float64))
    model = IALS(num_factors=8, alpha=4.0, reg=1.0, epochs=3).fit(train, rng, log=lambda l: None)
    held = rng.integers(0, num_items, num_users)
    # with replacement: some lines repeat a negative or hold the target
    negatives = rng.integers(0, num_items, (num_users, num_neg))
    negatives[:5, 0] = held[:5]
    evaluator = LeaveOneOutEvaluator(np.arange(num_users), held, negatives, k=10)
    result = evaluator.evaluate(model.score)
    scores = model.score_all(np.arange(num_users))
    distinct = [scores[u, np.setdiff1d(negatives[u], [held[u]])] for u in range(num_users)]
    expected = brute_force(scores[np.arange(num_users), held], distinct, 10)
    assert result.metrics() == pytest.approx(expected, rel=1e-12)


def test_auc_agrees_with_sklearn_on_a_fitted_model():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from ncf_tf.baselines.ials import IALS
    rng = np.random.default_rng(1)
    train = sp.csr_matrix((rng.random((30, 300)) < 0.1).astype(np.float64))
    model = IALS(num_factors=8, alpha=4.0, reg=1.0, epochs=3).fit(train, rng, log=lambda l: None)
    held = rng.integers(0, 300, 30)
    negatives = np.array([rng.choice(np.setdiff1d(np.arange(300), [h]), 99, replace=False)
                          for h in held])
    result = LeaveOneOutEvaluator(np.arange(30), held, negatives).evaluate(model.score)
    scores = model.score_all(np.arange(30))
    per_user = [sklearn_metrics.roc_auc_score(np.r_[1, np.zeros(99)],
                                              scores[u, np.r_[held[u], negatives[u]]])
                for u in range(30)]
    assert result.metrics(["auc"])["auc"] == pytest.approx(np.mean(per_user), rel=1e-12)


def test_metric_names_and_inputs_are_checked():
    with pytest.raises(ValueError, match="unknown metric 'f1', expected one of hr, ndcg, map"):
        metrics.ranking_metrics(np.array([0]), 2, 1, ["hr", "f1"])
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        metrics.ranking_metrics(np.array([0]), 2, 0)
    with pytest.raises(ValueError, match="AUC needs at least one negative"):
        metrics.auc(np.array([0]), 1)
    with pytest.raises(ValueError, match="a rank exceeds the number of negatives"):
        metrics.auc(np.array([3]), 3)
    assert np.isnan(metrics.ranking_metrics(np.array([], int), 2, 1, ["mrr"])["mrr"])
    restored = Evaluation(10, 1.0, 1.0, np.array([0]))   # as a checkpoint restores it
    assert restored.metrics(["mrr"]) == {"mrr": 1.0}
    with pytest.raises(ValueError, match="AUC needs the number of candidates"):
        restored.metrics(["auc"])
