"""Full-ranking HR@K, NDCG@K, recall@K and the library metrics (MAP@K,
precision@K, MRR, AUC): a hand-computed table, the tie and exclusion rules,
agreement with the sampled evaluator when every candidate is a negative, and
with a brute-force count on a fitted model."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.eval.full_ranking import (FullRankingEvaluator, held_out_positions, per_user_metrics,
                                 score_all_from_pairs)

NAN = np.nan

# 4 users x 6 items.
SCORES = np.array([
    [9, 5, 7, 5, 1, 5],            # user 0
    [3, 4, 10, 0, 8, 3],           # user 1
    [1, 2, 3, 4, 5, 6],            # user 2: nothing held out
    [NAN, NAN, 0, -1, NAN, NAN],   # user 3: a diverged model
])
TRAIN = sp.csr_matrix(np.array([
    [1, 0, 0, 0, 0, 0],
    [0, 0, 1, 0, 1, 0],
    [1, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0],
], dtype=np.float32))
HELD_OUT = sp.csr_matrix(np.array([
    [0, 0, 0, 1, 0, 0],
    [1, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0],
    [0, 1, 0, 0, 0, 0],
], dtype=np.float32))
# User 0: item 0 is a training item (not ranked, though it scores 9); items 1
#   and 5 tie with the held-out item 3 and item 2 beats it: position 3.
# User 1: items 2 and 4 are training items; held-out items 0 and 5 both
#   score 3; of the candidates that are not held out only item 1 (4) is
#   >= 3: positions 0 + 1 and 1 + 1.
# User 3: the held-out item's NaN is -inf; every other item ties or beats
#   it (NaN too): position 5.
POSITIONS = [3, 1, 2, 5]
L = np.log2


def evaluator(**kwargs) -> FullRankingEvaluator:
    return FullRankingEvaluator(HELD_OUT, TRAIN, **kwargs)


def test_hand_computed_positions():
    result = evaluator(k=3).evaluate_all(lambda users: SCORES[users])
    assert result.users.tolist() == [0, 1, 3]
    assert result.indptr.tolist() == [0, 1, 3, 4]
    assert result.positions.tolist() == POSITIONS


@pytest.mark.parametrize("k,hr,recall,ndcg", [
    (1, [0, 0, 0], [0, 0, 0], [0, 0, 0]),
    (2, [0, 1, 0], [0, 1 / 2, 0], [0, (1 / L(3)) / (1 + 1 / L(3)), 0]),
    (3, [0, 1, 0], [0, 1, 0], [0, (1 / L(3) + 1 / L(4)) / (1 + 1 / L(3)), 0]),
    (4, [1, 1, 0], [1, 1, 0], [1 / L(5), (1 / L(3) + 1 / L(4)) / (1 + 1 / L(3)), 0]),
    (6, [1, 1, 1], [1, 1, 1], [1 / L(5), (1 / L(3) + 1 / L(4)) / (1 + 1 / L(3)), 1 / L(7)]),
])
def test_hand_computed_metrics(k, hr, recall, ndcg):
    result = evaluator(k=k).evaluate_all(lambda users: SCORES[users])
    per_user = result.per_user(k)
    np.testing.assert_allclose(per_user["hr"], hr)
    np.testing.assert_allclose(per_user["recall"], recall)
    np.testing.assert_allclose(per_user["ndcg"], ndcg, rtol=1e-12)
    assert result.hr == pytest.approx(np.mean(hr))
    assert result.recall == pytest.approx(np.mean(recall))
    assert result.ndcg == pytest.approx(np.mean(ndcg))
    assert result.at(k) == pytest.approx({"hr": np.mean(hr), "recall": np.mean(recall),
                                          "ndcg": np.mean(ndcg)})


def test_constant_scores_lose_every_tie():
    result = evaluator(k=5).evaluate_all(lambda users: np.zeros((len(users), 6)))
    # User 0: 4 other candidates; user 1: 2 others, then the held-out pair.
    assert result.positions.tolist() == [4, 2, 3, 5]


def test_without_exclusion_training_items_compete():
    result = FullRankingEvaluator(HELD_OUT, None, k=3).evaluate_all(lambda u: SCORES[u])
    # User 0 now also loses to item 0 (9); user 1 to items 2 (10) and 4 (8).
    assert result.positions.tolist() == [4, 3, 4, 5]


def test_batches_and_pair_scoring_give_the_same_result():
    expected = evaluator(k=3).evaluate_all(lambda users: SCORES[users])
    for batch_size in (1, 2, 3):
        calls = []

        def score_all(users):
            calls.append(len(users))
            return SCORES[users]

        result = evaluator(k=3, batch_size=batch_size).evaluate_all(score_all)
        assert max(calls) <= batch_size
        np.testing.assert_array_equal(result.positions, expected.positions)

    def score_fn(users, items):
        assert users.shape == items.shape
        return SCORES[users, items]

    result = evaluator(k=3).evaluate(score_fn)
    np.testing.assert_array_equal(result.positions, expected.positions)


def test_score_all_from_pairs_lays_out_rows():
    score_all = score_all_from_pairs(lambda u, i: 10.0 * u + i, 3)
    np.testing.assert_array_equal(score_all(np.array([2, 0])), [[20, 21, 22], [0, 1, 2]])


def test_one_held_out_item_equals_the_sampled_evaluator_with_all_candidates():
    """With every candidate as a negative, leave-one-out and full ranking agree."""
    rng = np.random.default_rng(0)
    num_users, num_items = 30, 25
    train = sp.csr_matrix((rng.random((num_users, num_items)) < 0.3).astype(np.float32))
    held = np.array([rng.choice(np.flatnonzero(train[u].toarray()[0] == 0))
                     for u in range(num_users)])
    # Rounded scores make ties common.
    scores = np.round(rng.normal(size=(num_users, num_items)), 1)

    full = FullRankingEvaluator.from_pairs(np.arange(num_users), held, train.shape,
                                           exclude=train, k=5).evaluate_all(lambda u: scores[u])
    # Candidates per user differ in number: pad with the held-out item,
    # which the sampled evaluator collapses into it.
    negatives = np.tile(held[:, None], (1, num_items))
    for u in range(num_users):
        others = np.flatnonzero((train[u].toarray()[0] == 0) & (np.arange(num_items) != held[u]))
        negatives[u, :len(others)] = others
    sampled = LeaveOneOutEvaluator(np.arange(num_users), held, negatives, k=5).evaluate(
        lambda u, i: scores[u, i])
    np.testing.assert_array_equal(full.positions, sampled.ranks)
    assert full.hr == pytest.approx(sampled.hr) and full.recall == pytest.approx(sampled.hr)
    assert full.ndcg == pytest.approx(sampled.ndcg)
    np.testing.assert_array_equal(full.num_candidates, sampled.num_candidates)
    assert full.metrics() == pytest.approx(sampled.metrics(), rel=1e-12)


def test_held_out_training_item_is_ranked_not_excluded():
    held = sp.csr_matrix(np.array([[1, 0, 0]], dtype=np.float32))
    exclude = sp.csr_matrix(np.array([[1, 1, 0]], dtype=np.float32))
    positions = held_out_positions(np.array([[1.0, 5.0, 0.5]]), held, exclude)
    assert positions.tolist() == [0]   # item 1 is excluded, item 2 scores lower


def test_repeated_held_out_pair_counts_once():
    result = FullRankingEvaluator.from_pairs([0, 0], [1, 1], (1, 3), k=1).evaluate_all(
        lambda u: np.array([[0.0, 1.0, 0.5]]))
    assert result.positions.tolist() == [0] and result.recall == 1.0


def test_ideal_dcg_is_capped_at_k():
    # 3 held-out items all in the top 2 positions is impossible; at K = 2 the
    # ideal is 2 hits, so the best ranking has NDCG@2 = 1 and recall@2 = 2/3.
    metrics = per_user_metrics(np.array([0, 3]), np.array([0, 1, 2]), 2)
    assert metrics["ndcg"][0] == pytest.approx(1.0)
    assert metrics["recall"][0] == pytest.approx(2 / 3)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        evaluator(k=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        evaluator(batch_size=0)
    with pytest.raises(ValueError, match=r"exclude has shape \(4, 5\), but held_out has \(4, 6\)"):
        FullRankingEvaluator(HELD_OUT, sp.csr_matrix((4, 5)))
    with pytest.raises(ValueError, match=r"score_all returned shape \(3, 5\) for 3 users, "
                                         r"expected \(3, 6\)"):
        evaluator().evaluate_all(lambda users: np.zeros((len(users), 5)))


# User 0: 5 candidates (item 0 is a training item), held-out item 3 at
#   position 3: MRR 1/4; it beats 1 of the 4 others (item 4): AUC 1/4.
# User 1: 4 candidates (items 2, 4 excluded), held-out 0 and 5 at positions
#   1 and 2 (j = 0, 1): each beats item 3 and loses to item 1: AUC 2/4.
#   MAP@3 = (1/2 + 2/3) / min(3, 2).
# User 3: 6 candidates, position 5: MRR 1/6, AUC 0 (its NaN loses every tie).
@pytest.mark.parametrize("k,precision,average_precision", [
    (2, [0, 1 / 2, 0], [0, (1 / 2) / 2, 0]),
    (3, [0, 2 / 3, 0], [0, (1 / 2 + 2 / 3) / 2, 0]),
    (4, [1 / 4, 2 / 4, 0], [1 / 4, (1 / 2 + 2 / 3) / 2, 0]),
    (6, [1 / 6, 2 / 6, 1 / 6], [1 / 4, (1 / 2 + 2 / 3) / 2, 1 / 6]),
])
def test_hand_computed_library_metrics(k, precision, average_precision):
    result = evaluator(k=k).evaluate_all(lambda users: SCORES[users])
    assert result.num_candidates.tolist() == [5, 4, 6]
    per_user = result.per_user(k, ["precision", "map", "mrr", "auc"])
    np.testing.assert_allclose(per_user["precision"], precision, rtol=1e-12)
    np.testing.assert_allclose(per_user["map"], average_precision, rtol=1e-12)
    np.testing.assert_allclose(per_user["mrr"], [1 / 4, 1 / 2, 1 / 6], rtol=1e-12)
    np.testing.assert_allclose(per_user["auc"], [1 / 4, 1 / 2, 0], rtol=1e-12)
    assert result.metrics() == pytest.approx({
        "hr": result.hr, "ndcg": result.ndcg, "map": np.mean(average_precision),
        "precision": np.mean(precision), "recall": result.recall,
        "mrr": np.mean([1 / 4, 1 / 2, 1 / 6]), "auc": 0.25})
    assert result.metrics(["mrr"], k=1) == pytest.approx({"mrr": np.mean([1 / 4, 1 / 2, 1 / 6])})


def test_held_out_training_item_stays_a_candidate():
    held = sp.csr_matrix(np.array([[1, 0, 0, 0]], dtype=np.float32))
    exclude = sp.csr_matrix(np.array([[1, 1, 0, 0]], dtype=np.float32))
    result = FullRankingEvaluator(held, exclude, k=1).evaluate_all(
        lambda u: np.array([[1.0, 5.0, 0.5, 2.0]]))
    # candidates: items 0 (held out), 2 and 3; item 3 beats it, item 2 does not
    assert result.num_candidates.tolist() == [3]
    assert result.metrics(["mrr", "auc"]) == pytest.approx({"mrr": 0.5, "auc": 0.5})


def test_map_is_normalised_by_the_hits_the_top_k_can_hold():
    # 3 held-out items at positions 0, 2, 5; K = 2: one hit of at most 2.
    metrics = per_user_metrics(np.array([0, 3]), np.array([0, 2, 5]), 2, ["map", "precision"])
    assert metrics["map"][0] == pytest.approx(1 / 2)
    assert metrics["precision"][0] == pytest.approx(1 / 2)
    # K = 6: (1/1 + 2/3 + 3/6) / 3
    metrics = per_user_metrics(np.array([0, 3]), np.array([0, 2, 5]), 6, ["map"])
    assert metrics["map"][0] == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)


def test_library_metrics_agree_with_brute_force_on_a_fitted_model():
    from ncf_tf.baselines.ials import IALS
    rng = np.random.default_rng(3)
    num_users, num_items, k = 25, 80, 10
    interactions = rng.random((num_users, num_items)) < 0.25
    held_mask = interactions & (rng.random((num_users, num_items)) < 0.3)
    held_mask[np.arange(num_users), rng.integers(0, num_items, num_users)] = True
    train = sp.csr_matrix((interactions & ~held_mask).astype(np.float64))
    model = IALS(num_factors=6, alpha=4.0, reg=1.0, epochs=3).fit(train, rng, log=lambda l: None)
    scores = model.score_all(np.arange(num_users))
    result = FullRankingEvaluator(sp.csr_matrix(held_mask.astype(np.float64)), train,
                                  k=k).evaluate_all(model.score_all)
    expected = {name: [] for name in ("hr", "recall", "precision", "ndcg", "map", "mrr", "auc")}
    for u in range(num_users):
        candidates = np.flatnonzero(~train[u].toarray()[0].astype(bool))
        relevant = held_mask[u, candidates]
        order = np.argsort(-scores[u, candidates], kind="stable")
        ranked = relevant[order]          # continuous scores: no ties to break
        hits = ranked[:k]
        expected["hr"].append(float(hits.any()))
        expected["recall"].append(hits.sum() / relevant.sum())
        expected["precision"].append(hits.sum() / k)
        dcg = np.sum(hits / np.log2(np.arange(2, k + 2)))
        expected["ndcg"].append(dcg / np.sum(1 / np.log2(np.arange(2, min(k, relevant.sum()) + 2))))
        precision_at = np.cumsum(ranked) / np.arange(1, len(ranked) + 1)
        expected["map"].append(np.sum(precision_at[:k] * hits) / min(k, relevant.sum()))
        expected["mrr"].append(1 / (np.argmax(ranked) + 1))
        pos, neg = scores[u, candidates[relevant]], scores[u, candidates[~relevant]]
        expected["auc"].append(np.mean(pos[:, None] > neg[None, :]))
    assert result.metrics() == pytest.approx({n: np.mean(v) for n, v in expected.items()},
                                             rel=1e-12)
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return
    per_user = result.per_user(k, ["auc"])["auc"]
    for u in range(num_users):
        candidates = np.flatnonzero(~train[u].toarray()[0].astype(bool))
        assert per_user[u] == pytest.approx(roc_auc_score(held_mask[u, candidates],
                                                          scores[u, candidates]))


def test_library_metrics_need_what_they_need():
    with pytest.raises(ValueError, match="AUC needs the number of candidates"):
        per_user_metrics(np.array([0, 1]), np.array([0]), 1, ["auc"])
    with pytest.raises(ValueError, match="AUC needs a candidate that is not held out"):
        per_user_metrics(np.array([0, 1]), np.array([0]), 1, ["auc"], np.array([1]))
    with pytest.raises(ValueError, match="unknown metric 'ap'"):
        per_user_metrics(np.array([0, 1]), np.array([0]), 1, ["ap"])
