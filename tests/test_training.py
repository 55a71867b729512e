"""fit_epoch: its ready-cut batches give Keras's own NumPy updates; the loop's
evaluation schedule."""

import numpy as np
import pytest

from conftest import tensorflow_only, write_dataset
from ncf_tf.models import neumf
from ncf_tf.train import training
from ncf_tf.data.loader import load_dataset
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.train.optimizers import make_optimizer
from ncf_tf.data.sampling import Instances, NegativeSampler

USERS, ITEMS = 30, 20


def instances(n, seed=0):
    rng = np.random.default_rng(seed)
    return Instances(rng.integers(0, USERS, n).astype(np.int32),
                     rng.integers(0, ITEMS, n).astype(np.int32),
                     (rng.random(n) < 0.2).astype(np.float32))


def trained(fit, learner):
    model = neumf.build(USERS, ITEMS, 4, [8, 4, 2], [0, 0, 0], seed=3)
    training.compile_model(model, make_optimizer(learner, 0.01))
    loss = fit(model)
    return model.get_weights(), loss


@pytest.mark.parametrize("n", [64 * 5 + 7, 23])
@pytest.mark.parametrize("learner", ["adam", "sgd"])
def test_fit_epoch_is_kerass_numpy_fit(n, learner):
    data = instances(n)

    def numpy_fit(model):
        history = model.fit([data.users[:, None], data.items[:, None]], data.labels[:, None],
                            batch_size=64, epochs=1, shuffle=False, verbose=0)
        return history.history["loss"][0]

    expected, expected_loss = trained(numpy_fit, learner)
    got, loss = trained(lambda model: training.fit_epoch(model, data, 64), learner)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert not np.allclose(got[0], neumf.build(USERS, ITEMS, 4, [8, 4, 2], [0, 0, 0], seed=3)
                           .get_weights()[0])


@tensorflow_only   # tf.data input
@pytest.mark.parametrize("n, sizes", [(10, [[4, 4], [2]]), (12, [[4, 4, 4]]), (3, [[3]])])
def test_batches_cut_in_order_with_the_remainder_last(n, sizes):
    data = instances(n)
    parts = training.batches(data, 4)
    assert [count for _, count in parts] == [sum(s) for s in sizes]
    cut = [list(dataset.as_numpy_iterator()) for dataset, _ in parts]
    assert [[len(labels) for _, labels in part] for part in cut] == sizes
    # each set has one static batch shape, so that the step compiles for it
    assert [dataset.element_spec[1].shape.as_list() for dataset, _ in parts] == [
        [s[0], 1] for s in sizes]
    # without tf.data's autotuning, whose teardown stalled some epochs by ~8 s
    assert all(dataset.options().autotune.enabled is False for dataset, _ in parts)
    flat = [batch for part in cut for batch in part]
    users = np.concatenate([u[:, 0] for (u, _), _ in flat])
    items = np.concatenate([i[:, 0] for (_, i), _ in flat])
    labels = np.concatenate([y[:, 0] for _, y in flat])
    np.testing.assert_array_equal(users, data.users)
    np.testing.assert_array_equal(items, data.items)
    np.testing.assert_array_equal(labels, data.labels)


def test_fit_epoch_refuses_no_instances():
    model = neumf.build(USERS, ITEMS, 4, [8, 4, 2], [0, 0, 0])
    training.compile_model(model, make_optimizer("adam", 0.01))
    with pytest.raises(ValueError, match="no training instances"):
        training.fit_epoch(model, instances(0), 64)


def test_evaluates_every_verbose_epochs_as_the_authors(tmp_path):
    """``epoch % verbose == 0``: with verbose 3 over 5 epochs, epochs 0 and 3."""
    dataset = load_dataset(write_dataset(tmp_path)["folder"], "toy")
    model = neumf.build(dataset.num_users, dataset.num_items, 4, [8, 4, 2], [0, 0, 0], seed=3)
    training.compile_model(model, make_optimizer("adam", 0.01))
    lines = []
    state = training.train(model, NegativeSampler(dataset.train, 2),
                           LeaveOneOutEvaluator.for_dataset(dataset), epochs=5, batch_size=64,
                           rng=np.random.default_rng(0), verbose=3, log=lines.append)
    assert [e.epoch for e in state.epochs if e.hr is not None] == [0, 3]
    assert [line.split(" [")[0] for line in lines if line.startswith("Iteration")] == \
        ["Iteration 0", "Iteration 3"]
    assert len(state.epochs) == 5 and all(e.loss > 0 for e in state.epochs)
