"""The learners follow Keras 1's formulas, and update densely."""

import contextlib
import keras
import numpy as np
import pytest

from conftest import tensorflow_only
from ncf_tf.models import neumf
from ncf_tf.train import training
from ncf_tf.train.optimizers import (EPSILON, DeferredAdam, FusedAdam, LazyAdam, dense_gradient,
                                    deferral_series, make_optimizer, settle)

LEARNER_NAMES = ["sgd", "adagrad", "rmsprop", "adam"]


def one_embedding_model():
    ids = keras.Input((1,), dtype="int32")
    table = keras.layers.Embedding(3, 2, name="e", embeddings_initializer="ones")(ids)
    out = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="d")(
        keras.layers.Flatten()(table))
    model = keras.Model(ids, out)
    model.get_layer("d").trainable = False
    return model


def run(learner, lr, steps, optimizer=None):
    """One update per step on the rows of ``steps[t]``, loss mean((p_r0 + p_r1)^2)."""
    model = one_embedding_model()
    model.compile(optimizer or make_optimizer(learner, lr), loss="mse")
    tables = []
    for rows in steps:
        model.train_on_batch(np.array(rows)[:, None], np.zeros((len(rows), 1)))
        tables.append(model.get_layer("e").get_weights()[0].copy())
    return tables


def reference(learner, lr, steps):
    """Keras 1's update rules in numpy, dense over the whole table
    (``lazy_adam``: Adam on the batch's rows only)."""
    p = np.ones((3, 2))
    a = np.zeros_like(p)
    m, v = np.zeros_like(p), np.zeros_like(p)
    out = []
    for t, rows in enumerate(steps, start=1):
        g = np.zeros_like(p)
        for row in rows:                   # d/dp mean_b (p0 + p1)^2; a repeated row adds up
            g[row] += 2 * p[row].sum() / len(rows)
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
        elif learner == "lazy_adam":
            r = sorted(set(rows))
            m[r] = 0.9 * m[r] + 0.1 * g[r]
            v[r] = 0.999 * v[r] + 0.001 * g[r] ** 2
            p[r] -= lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m[r] / (np.sqrt(v[r]) + 1e-8)
        out.append(p.copy())
    return out


@pytest.mark.parametrize("learner", LEARNER_NAMES)
def test_keras1_update_rules(learner):
    steps = [[0], [1], [1], [0], [2]]
    for got, want in zip(run(learner, 0.01, steps), reference(learner, 0.01, steps)):
        np.testing.assert_allclose(got, want, rtol=2e-5)


@pytest.mark.parametrize("learner", LEARNER_NAMES)
def test_repeated_row_squares_its_summed_gradient(learner):
    """Regression: Keras 3 squared an embedding gradient slice by slice.

    A row that occurs twice in a batch got g1^2 + g2^2 in Adam's v (and in
    Adagrad's and RMSprop's accumulators) instead of Keras 1's (g1 + g2)^2:
    with keras.optimizers.Adam the first step below is off by 0.012.
    """
    steps = [[0, 0], [1, 0, 1], [2], [0, 1, 1, 1]]
    for got, want in zip(run(learner, 0.01, steps), reference(learner, 0.01, steps)):
        np.testing.assert_allclose(got, want, rtol=2e-5)


def test_adam_moves_rows_absent_from_the_batch():
    """Dense Adam (as Keras 1 on Theano): row 0's momentum keeps moving it."""
    tables = run("adam", 0.1, [[0], [1]])
    assert not np.allclose(tables[0][0], tables[1][0])
    np.testing.assert_array_equal(tables[0][2], tables[1][2])   # never touched: m = 0


class DenseGradientAdam(keras.optimizers.Adam):
    """Keras's own Adam arithmetic, on the dense gradient (Keras 1's g)."""

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(dense_gradient(gradient), variable, learning_rate)


def train_small_neumf(optimizer_class, lr, steps=50, batch=32):
    """``steps`` updates of a NeuMF with 30 users and 40 items (rows repeat in a batch)."""
    model = neumf.build(30, 40, 4, [16, 8, 4], [0, 0, 0], seed=1)
    optimizer = optimizer_class(lr, beta_1=0.9, beta_2=0.999, epsilon=EPSILON)
    training.compile_model(model, optimizer, steps_per_execution=8)
    rng = np.random.default_rng(0)
    n = steps * batch
    users = rng.integers(0, 30, (n, 1)).astype("int32")
    items = rng.integers(0, 40, (n, 1)).astype("int32")
    labels = rng.integers(0, 2, (n, 1)).astype("float32")
    model.fit([users, items], labels, batch_size=batch, shuffle=False, verbose=0)
    return model.get_weights(), [np.asarray(v) for v in optimizer.variables]


def max_difference(a, b):
    return max(float(np.abs(np.asarray(x, np.float64) - y).max()) for x, y in zip(a, b))


def test_fused_adam_matches_keras_adam_over_50_steps():
    """Same weights and moments as Keras's Adam fed the same dense gradients.

    In float32 the kernel rounds 1 - b2 from b2 (0.00099998713) where Keras
    rounds 0.001; over 50 steps this leaves about 2e-7.
    """
    want, want_state = train_small_neumf(DenseGradientAdam, 0.001)
    got, got_state = train_small_neumf(FusedAdam, 0.001)
    assert len(got_state) == len(want_state) == 2 + 2 * len(got)   # iteration, lr, m and v
    assert int(got_state[0]) == int(want_state[0]) == 50
    assert max_difference(got, want) < 1e-6
    assert max_difference(got_state, want_state) < 1e-6


@pytest.fixture
def float64_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.skipif(keras.config.backend() == "jax", reason="JAX computes in float32 unless x64 is on")
def test_fused_adam_is_keras_adam_in_float64(float64_policy):
    """Without float32 rounding of the constants the two agree to the last bits:
    a wiring error (the step t, the moments' order, a variable's copy) cannot hide."""
    want, want_state = train_small_neumf(DenseGradientAdam, 0.01)
    got, got_state = train_small_neumf(FusedAdam, 0.01)
    assert got[0].dtype == np.float64
    assert max_difference(got, want) < 1e-12
    assert max_difference(got_state, want_state) < 1e-12


@tensorflow_only   # a TensorFlow kernel
def test_fused_adam_is_one_kernel_per_variable():
    import tensorflow as tf

    model = one_embedding_model()
    model.get_layer("d").trainable = True
    optimizer = make_optimizer("adam", 0.01)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(tf.constant([[0], [2]])))
        variables = model.trainable_variables
        optimizer.apply(tape.gradient(loss, variables), variables)

    ops = [op.type for op in step.get_concrete_function().graph.get_operations()]
    assert ops.count("ResourceApplyAdam") == len(model.trainable_variables) == 2


def test_fused_adam_saves_and_loads_with_its_state(tmp_path):
    model = one_embedding_model()
    model.compile(make_optimizer("adam", 0.01), loss="mse")
    model.train_on_batch(np.array([[0], [1]]), np.zeros((2, 1)))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, FusedAdam)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class MaskedLazyAdam(LazyAdam):
    """LazyAdam's path for backends with dense gradients, on TensorFlow."""

    def _fused(self):
        return False


@pytest.mark.parametrize("kind", [LazyAdam, MaskedLazyAdam])
def test_lazy_adam_updates_only_the_batch_rows(kind):
    """Fast mode: rows absent from a batch keep weights and moments; a
    repeated row gets Adam on its summed gradient, with the global step t."""
    steps = [[0, 0], [1, 0, 1], [2], [0, 1, 1, 1], [2, 2]]
    optimizer = kind(0.01, beta_1=0.9, beta_2=0.999, epsilon=EPSILON)
    got = run("adam", 0.01, steps, optimizer)
    for table, want in zip(got, reference("lazy_adam", 0.01, steps)):
        np.testing.assert_allclose(table, want, rtol=2e-5)
    np.testing.assert_array_equal(got[1][2], got[0][2])   # row 2 first occurs at step 3


def test_lazy_adam_differs_from_dense_adam_only_through_absent_rows():
    dense = run("adam", 0.1, [[0], [1]])
    lazy = run("adam", 0.1, [[0], [1]], make_optimizer("adam", 0.1, lazy=True))
    np.testing.assert_allclose(lazy[0], dense[0], rtol=1e-6)      # step 1: moments were 0
    np.testing.assert_array_equal(lazy[1][0], lazy[0][0])         # row 0 rests under lazy Adam
    assert not np.allclose(dense[1][0], dense[0][0])              # and moves under dense Adam
    np.testing.assert_allclose(lazy[1][1], dense[1][1], rtol=1e-6)


def test_lazy_adam_is_dense_adam_when_every_row_is_in_every_batch():
    want, want_state = train_small_neumf(FusedAdam, 0.001, steps=10, batch=4000)
    got, got_state = train_small_neumf(LazyAdam, 0.001, steps=10, batch=4000)
    assert max_difference(got, want) < 1e-6
    assert max_difference(got_state, want_state) < 1e-6


SKEWED_USERS, SKEWED_ITEMS = 40, 400


def skewed_batches(steps, batch):
    """Ids drawn with probability falling as 1 / rank^2: a few rows in most
    batches, many idle for hundreds or thousands of steps; odd items never
    drawn. Labels follow the ids."""
    rng = np.random.default_rng(0)

    def draw(count):
        p = 1.0 / np.arange(1, count + 1) ** 2
        return rng.choice(count, (steps * batch, 1), p=p / p.sum()).astype("int32")

    users, items = draw(SKEWED_USERS), 2 * draw(SKEWED_ITEMS // 2)
    return users, items, ((users * 7 + items * 3) % 5 < 2).astype("float32")


@pytest.fixture(scope="module")
def skewed_runs():
    """NeuMF trained 1,000 steps of batch 32 on :func:`skewed_batches` from the
    same weights: dense Adam in float64 (the reference), dense and deferred in
    float32 and, where the backend computes float64, deferred in float64.
    Each: (weights, Adam's moments, whether rows were deferred at the end)."""
    steps, batch = 1000, 32
    users, items, labels = skewed_batches(steps, batch)
    init = neumf.build(SKEWED_USERS, SKEWED_ITEMS, 4, [16, 8, 4], [0, 0, 0], seed=1).get_weights()

    def train(adam, policy):
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            model = neumf.build(SKEWED_USERS, SKEWED_ITEMS, 4, [16, 8, 4], [0, 0, 0], seed=1)
            model.set_weights(init)
            optimizer = make_optimizer("adam", 0.001, adam=adam)
            training.compile_model(model, optimizer, steps_per_execution=50)
            model.fit([users, items], labels, batch_size=batch, shuffle=False, verbose=0)
            deferred = isinstance(optimizer, DeferredAdam) and any(
                int(np.min(np.asarray(last))) < int(optimizer.iterations)
                for last in optimizer._last_steps if last is not None)
            settle(optimizer)
            moments = [np.asarray(v, np.float64) for v in optimizer.variables
                       if "momentum" in v.name or "velocity" in v.name]
            return [np.asarray(w, np.float64) for w in model.get_weights()], moments, deferred
        finally:
            keras.config.set_dtype_policy(previous)

    with float64():
        reference = train("dense", "float64")
    runs = {"reference": reference, "dense": train("dense", "float32"),
            "deferred": train("deferred", "float32"), "init": (init, None, None),
            "items": np.bincount(items[:, 0], minlength=SKEWED_ITEMS)}
    with float64():
        runs["deferred64"] = train("deferred", "float64")
    return runs


def float64():
    """A scope in which float64 is float64 (JAX computes in float32 unless
    x64 is on, and is turned back off after it)."""
    if keras.config.backend() != "jax":
        return contextlib.nullcontext()
    import jax
    return jax.enable_x64(True)


def distance(got, want):
    """The root of the summed squared differences over all arrays."""
    return float(np.sqrt(sum(np.sum((g - w) ** 2) for g, w in zip(got, want))))


def test_deferred_adam_is_as_close_to_dense_adam_as_float32_allows(skewed_runs):
    """Keras 1's dense Adam, float32: the deferred weights and moments are as
    close to the float64 reference as the dense optimizer's (both drift by
    rounding, amplified over 1,000 steps)."""
    reference = skewed_runs["reference"]
    for part in (0, 1):
        dense = distance(skewed_runs["dense"][part], reference[part])
        deferred = distance(skewed_runs["deferred"][part], reference[part])
        assert deferred <= 2 * dense
    idle = skewed_runs["items"] == 0                    # items never drawn keep their weights
    assert idle.any() and 0 < skewed_runs["items"][SKEWED_ITEMS - 2] < 5
    for run in ("dense", "deferred"):
        np.testing.assert_array_equal(skewed_runs[run][0][1][idle], skewed_runs["init"][0][1][idle])


def test_deferred_adam_defers_rows(skewed_runs):
    assert skewed_runs["deferred"][2]


def test_deferred_adam_is_dense_adam_in_float64(skewed_runs):
    """Without float32 rounding the closed form is the dense steps it replaces,
    to its series' tolerance (1e-9 of a move; 1,000 steps amplify it a little)."""
    reference = skewed_runs["reference"]
    for got, want in zip(skewed_runs["deferred64"][0] + skewed_runs["deferred64"][1],
                         reference[0] + reference[1]):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-8 * max(1.0, np.abs(want).max()))


def test_deferral_series_for_keras1_betas():
    """The tails T_l(t) = sum_(j>=1) f(t + j) c_l^j, summed directly."""
    tails, ratios, binomials = deferral_series(0.9, 0.999)
    assert len(ratios) == 5 and ratios[1] == pytest.approx(0.9 * np.sqrt(0.999))
    b1, b2 = (float(np.float32(b)) for b in (0.9, 0.999))
    j = np.arange(1, 400)
    for t in (0, 1, 100, 5000):
        f = np.sqrt(1 - b2 ** (t + j)) / (1 - b1 ** (t + j))
        for l in (0, 4):
            assert tails[t, l] == pytest.approx(np.sum(f * ratios[l] ** j), rel=1e-12)
    assert tails[-1, 0] == pytest.approx(ratios[0] / (1 - ratios[0]), rel=1e-15)
    shrink = 1 - np.sqrt(0.999) ** j     # sum_l binomials[n, l] c_l^j, to float64 cancellation
    np.testing.assert_allclose(binomials[3] @ ratios[:, None] ** j, 0.9 ** j * shrink ** 3,
                               rtol=0, atol=1e-14)
    assert deferral_series(0.25, 0.5) is None           # MLPerf's betas: no short series


def test_make_optimizer_adam_kinds():
    assert type(make_optimizer("adam", 0.001)) is FusedAdam
    assert type(make_optimizer("adam", 0.001, adam="deferred")) is DeferredAdam
    assert type(make_optimizer("adam", 0.001, betas=(0.25, 0.5), adam="deferred")) is FusedAdam
    assert type(make_optimizer("adam", 0.001, lazy=True)) is LazyAdam
    with pytest.raises(ValueError, match="adam must be one of dense, deferred, got 'sparse'"):
        make_optimizer("adam", 0.001, adam="sparse")


def test_lazy_needs_adam():
    with pytest.raises(ValueError, match="lazy needs learner='adam', got 'sgd'"):
        make_optimizer("sgd", 0.001, lazy=True)


def test_unknown_learner():
    with pytest.raises(ValueError, match="learner must be one of adagrad, adam, rmsprop, sgd, got 'nadam'"):
        make_optimizer("nadam", 0.001)
