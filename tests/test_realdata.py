"""On the authors' ml-1m files (skipped when Data/ lacks them)."""

import json
import os

import numpy as np
import pytest

from conftest import DATA, requires_real_data
from ncf_tf.models import gmf, mlp, neumf, weights
from ncf_tf.train import training
from ncf_tf.train.config import TrainConfig
from ncf_tf.data.loader import load_dataset
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.train.experiment import run

pytestmark = [requires_real_data, pytest.mark.realdata]
AUTHORS = os.path.join(DATA, "authors_pretrain")
GMF_FILE = os.path.join(AUTHORS, "ml-1m_GMF_8_1501651698.h5")
MLP_FILE = os.path.join(AUTHORS, "ml-1m_MLP_[64,32,16,8]_1501652038.h5")
requires_authors_weights = pytest.mark.skipif(
    not os.path.isfile(GMF_FILE), reason="bin/download_data --dataset ml-1m-pretrain")


@pytest.fixture(scope="module")
def ml1m():
    return load_dataset(DATA, "ml-1m")


def test_counts(ml1m):
    assert (ml1m.num_users, ml1m.num_items, ml1m.num_train, ml1m.num_test) == (6040, 3706, 994169, 6040)
    assert ml1m.test_negatives.shape == (6040, 99)
    np.testing.assert_array_equal(ml1m.test_users, np.arange(6040))


def test_156_lines_list_the_test_item_among_its_negatives(ml1m):
    duplicated = (ml1m.test_negatives == ml1m.test_items[:, None]).any(axis=1)
    assert duplicated.sum() == 156
    # No negative is a training positive of its user (they were sampled so).
    dense = ml1m.train.toarray() > 0
    assert not dense[ml1m.test_users[:, None], ml1m.test_negatives].any()


def evaluate(model, dataset):
    return LeaveOneOutEvaluator.for_dataset(dataset).evaluate(training.make_score_fn(model))


@requires_authors_weights
def test_authors_pretrained_weights_reproduce_their_accuracy(ml1m):
    g = gmf.build(ml1m.num_users, ml1m.num_items, 8)
    weights.load_weights(g, GMF_FILE)
    m = mlp.build(ml1m.num_users, ml1m.num_items)
    weights.load_weights(m, MLP_FILE)
    hr_g, hr_m = evaluate(g, ml1m).hr, evaluate(m, ml1m).hr
    assert 0.62 < hr_g < 0.66 and 0.65 < hr_m < 0.69   # the paper: GMF ~0.64, MLP-3 0.671
    n = neumf.build(ml1m.num_users, ml1m.num_items, 8)
    weights.assign_named_weights(n, neumf.blend_pretrained(
        weights.named_weights(g), weights.named_weights(m), 0.5), "authors")
    assert evaluate(n, ml1m).hr > max(hr_g, hr_m) - 0.01


@requires_authors_weights
def test_factored_scoring_ranks_as_the_forward_pass(ml1m):
    """The authors' MLP: the same logits to float32 rounding and the same
    ranks, but for near-ties that rounding may swap (none on this model here)."""
    m = mlp.build(ml1m.num_users, ml1m.num_items)
    weights.load_weights(m, MLP_FILE)
    evaluator = LeaveOneOutEvaluator.for_dataset(ml1m)
    users, items = evaluator.pair_users, evaluator.pair_items
    factored = training.make_score_fn(m)(users, items)
    forward = training.keras_score_fn(m)(users, items)
    np.testing.assert_allclose(factored, forward, rtol=1e-5, atol=1e-5)
    swapped = evaluator.evaluate_scores(factored).ranks != evaluator.evaluate_scores(forward).ranks
    assert swapped.sum() <= 6   # 0.1% of the users


@pytest.mark.slow
def test_one_epoch_of_gmf(tmp_path):
    record = run(TrainConfig(model="GMF", path=DATA, epochs=1, out=0, results_dir=str(tmp_path)),
                 log=lambda line: None)
    assert record.init["hr"] < 0.15          # random: about 0.10
    assert record.epochs[0]["hr"] > 0.45     # one epoch of GMF-8: about 0.50
    assert json.load(open(record.path))["status"] == "finished"
