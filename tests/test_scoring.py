"""Factored scoring (ncf_tf.models.scoring): both layouts against every pair scored
one by one in float64 numpy from equations 9, 10 and 12, chunking, and the
leave-one-out evaluation it feeds against the model's own forward pass."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ncf_tf.models import scoring
from ncf_tf.train import training
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from trained_models import SPECS, numpy_logits, spread_model


@pytest.mark.parametrize("kind", list(SPECS))
def test_all_item_logits_equal_pairwise_numpy(kind):
    model = spread_model(kind, 7, 11)
    users = np.array([3, 0, 6])
    got = np.asarray(scoring.all_item_logits(model, users))
    want = numpy_logits(model, np.repeat(users, 11), np.tile(np.arange(11), 3)).reshape(3, 11)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", list(SPECS))
def test_pair_scorer_equals_pairwise_numpy_in_any_chunking(kind):
    model = spread_model(kind, 7, 11)
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 7, 50), rng.integers(0, 11, 50)
    want = numpy_logits(model, users, items)
    whole = scoring.PairScorer(model)(users, items)
    assert whole.dtype == np.float32 and whole.shape == (50,)
    np.testing.assert_allclose(whole, want, rtol=1e-5, atol=1e-4)
    # 13 floats per chunk: one pair at a time for the widest towers, the last
    # chunk partial. BLAS may sum a one-row product in another order: rounding.
    np.testing.assert_allclose(scoring.PairScorer(model, max_floats=13)(users, items), whole,
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["GMF", "NeuMF"])
def test_one_pair_scorer_follows_the_weights(kind):
    """Compiled once, it still reads the current weights at every call."""
    model = spread_model(kind, 7, 11)
    scorer = training.make_score_fn(model)
    users, items = np.arange(7), np.arange(7)
    before = scorer(users, items)
    model.set_weights(spread_model(kind, 7, 11, seed=5).get_weights())
    after = scorer(users, items)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, numpy_logits(model, users, items), rtol=1e-5, atol=1e-4)


def test_width_is_the_widest_tower_layer():
    assert scoring.width(spread_model("MLP", 3, 4)) == 8
    assert scoring.width(spread_model("MLP-0", 3, 4)) == 1
    assert scoring.width(spread_model("GMF", 3, 4)) == 1


@pytest.mark.parametrize("kind", ["GMF", "MLP", "NeuMF"])
def test_evaluation_ranks_equal_the_forward_pass(kind):
    """The same ranks, HR and NDCG as scoring every pair with the model itself."""
    users, items = 30, 200
    model = spread_model(kind, users, items, seed=2)
    rng = np.random.default_rng(3)
    evaluator = LeaveOneOutEvaluator(np.arange(users), rng.integers(0, items, users),
                                     rng.integers(0, items, (users, 99)))
    factored = evaluator.evaluate(training.make_score_fn(model))
    forward = evaluator.evaluate(training.keras_score_fn(model))
    np.testing.assert_array_equal(factored.ranks, forward.ranks)
    assert (factored.hr, factored.ndcg) == (forward.hr, forward.ndcg)


def test_rejects_other_models():
    other = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, name="prediction")])
    with pytest.raises(ValueError, match="is not a GMF, MLP or NeuMF"):
        scoring.PairScorer(other)
