"""The learners follow Keras 1's formulas, and update densely."""

import keras
import numpy as np
import pytest

from ncf_tf.optimizers import make_optimizer


def one_embedding_model():
    ids = keras.Input((1,), dtype="int32")
    table = keras.layers.Embedding(3, 2, name="e", embeddings_initializer="ones")(ids)
    out = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="d")(
        keras.layers.Flatten()(table))
    model = keras.Model(ids, out)
    model.get_layer("d").trainable = False
    return model


def run(learner, lr, steps):
    """Trains on row 0 then row 1 ... with loss mean((y - 0)^2)/... -> known gradient."""
    model = one_embedding_model()
    model.compile(make_optimizer(learner, lr), loss="mse")
    tables = []
    for row in steps:
        model.train_on_batch(np.array([[row]]), np.array([[0.0]]))
        tables.append(model.get_layer("e").get_weights()[0].copy())
    return tables


def reference(learner, lr, steps):
    """Keras 1's update rules in numpy, dense over the whole table."""
    p = np.ones((3, 2))
    a = np.zeros_like(p)
    m, v = np.zeros_like(p), np.zeros_like(p)
    out = []
    for t, row in enumerate(steps, start=1):
        g = np.zeros_like(p)
        g[row] = 2 * p[row].sum()          # d/dp (p0 + p1)^2, for both entries of the row
        if learner == "sgd":
            p = p - lr * g
        elif learner == "adagrad":
            a = a + g ** 2
            p = p - lr * g / (np.sqrt(a) + 1e-8)
        elif learner == "rmsprop":
            a = 0.9 * a + 0.1 * g ** 2
            p = p - lr * g / (np.sqrt(a) + 1e-8)
        elif learner == "adam":
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g ** 2
            p = p - lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-8)
        out.append(p.copy())
    return out


@pytest.mark.parametrize("learner", ["sgd", "adagrad", "rmsprop", "adam"])
def test_keras1_update_rules(learner):
    steps = [0, 1, 1, 0, 2]
    for got, want in zip(run(learner, 0.01, steps), reference(learner, 0.01, steps)):
        np.testing.assert_allclose(got, want, rtol=2e-5)


def test_adam_moves_rows_absent_from_the_batch():
    """Dense Adam (as Keras 1 on Theano): row 0's momentum keeps moving it."""
    tables = run("adam", 0.1, [0, 1])
    assert not np.allclose(tables[0][0], tables[1][0])
    np.testing.assert_array_equal(tables[0][2], tables[1][2])   # never touched: m = 0


def test_unknown_learner():
    with pytest.raises(ValueError, match="--learner must be one of adagrad, adam, rmsprop, sgd; got 'nadam'"):
        make_optimizer("nadam", 0.001)
