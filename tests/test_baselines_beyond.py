"""Stronger baselines (MF, iALS, EASE): the math of each, the shared scoring
contract, and the checkerboard of test_baselines.py each must learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit

from ncf_tf.baselines import BASELINES, EASE, IALS, MF, ItemPop
from ncf_tf.eval.full_ranking import FullRankingEvaluator
from test_baselines import checkerboard, random_pairs

quiet = lambda line: None  # noqa: E731

# Small settings for the checkerboard: each fit takes about a second at most.
FACTORIES = {
    "MF": lambda: MF(num_factors=8, num_neg=4, lr=0.05, reg=0.005, epochs=8, batch_size=512),
    "iALS": lambda: IALS(num_factors=8, alpha=2.0, reg=1.0, epochs=5),
    "EASE": lambda: EASE(reg=10.0),
}
STOCHASTIC = ["MF", "iALS"]


# --- the shared contract ------------------------------------------------------

@pytest.mark.parametrize("name", list(FACTORIES))
def test_scoring_contract(name):
    """Shape, batch independence, determinism, score_all, config round trip."""
    train, _ = checkerboard(seed=0)
    model = FACTORIES[name]().fit(train, np.random.default_rng(0), log=quiet)
    users, items = random_pairs(train, 500, seed=1)

    scores = model.score(users, items)
    assert scores.shape == (500,) and np.isfinite(scores).all()
    one_by_one = np.array([model.score(users[k:k + 1], items[k:k + 1])[0] for k in range(20)])
    np.testing.assert_allclose(scores[:20], one_by_one, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.score(users[::-1], items[::-1]), scores[::-1],
                               rtol=1e-12, atol=1e-12)
    # score_all is score on every item.
    rows = model.score_all(users[:7])
    assert rows.shape == (7, train.shape[1])
    np.testing.assert_allclose(rows[np.arange(7), items[:7]], scores[:7], rtol=1e-9, atol=1e-12)

    again = FACTORIES[name]().fit(train, np.random.default_rng(0), log=quiet)
    np.testing.assert_array_equal(again.score(users, items), scores)

    config = model.config()
    assert config["model"] == name and BASELINES[name] is type(model)
    json.dumps(config)
    rebuilt = type(model)(**{k: v for k, v in config.items() if k != "model"})
    assert rebuilt.config() == config
    np.testing.assert_array_equal(
        rebuilt.fit(train, np.random.default_rng(0), log=quiet).score(users, items), scores)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_another_seed_gives_another_model(name):
    train, _ = checkerboard(seed=0)
    users, items = random_pairs(train, 100, seed=1)
    a = FACTORIES[name]().fit(train, np.random.default_rng(0), log=quiet).score(users, items)
    b = FACTORIES[name]().fit(train, np.random.default_rng(1), log=quiet).score(users, items)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_score_before_fit_fails_clearly(name):
    with pytest.raises(RuntimeError, match="before fit"):
        FACTORIES[name]().score(np.array([0]), np.array([0]))
    with pytest.raises(RuntimeError, match="before fit"):
        FACTORIES[name]().score_all(np.array([0]))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_learns_checkerboard(name, seed):
    train, evaluator = checkerboard(seed)
    random_hr = evaluator.evaluate(
        lambda u, i: np.random.default_rng(seed).random(len(u))).hr
    pop_hr = evaluator.evaluate(ItemPop().fit(train, log=quiet).score).hr
    model = FACTORIES[name]().fit(train, np.random.default_rng(seed), log=quiet)
    hr = evaluator.evaluate(model.score).hr
    assert random_hr < 0.25 and pop_hr < 0.25
    assert hr > 0.8, f"{name}: HR@10 = {hr:.3f} on the checkerboard"
    assert hr > pop_hr + 0.5 and hr > random_hr + 0.5


@pytest.mark.parametrize("name", list(FACTORIES))
def test_full_ranking_on_checkerboard(name):
    """Against all 160 items, the own block (~12 unseen items) must come first."""
    train, evaluator = checkerboard(seed=0)
    held_out = evaluator.pair_items.reshape(evaluator.shape)[:, 0]
    full = FullRankingEvaluator.from_pairs(np.arange(train.shape[0]), held_out, train.shape,
                                           exclude=train, k=10)
    model = FACTORIES[name]().fit(train, np.random.default_rng(0), log=quiet)
    pop = full.evaluate(ItemPop().fit(train, log=quiet).score).hr
    hr = full.evaluate_all(model.score_all).hr
    assert hr > 0.6 and hr > pop + 0.4, (hr, pop)


def test_registry_has_the_stronger_baselines():
    assert {"MF", "iALS", "EASE"} <= set(BASELINES)
    assert (BASELINES["MF"], BASELINES["iALS"], BASELINES["EASE"]) == (MF, IALS, EASE)


@pytest.mark.parametrize("cls,kwargs,match", [
    (MF, {"num_factors": 0}, "num_factors must be a positive integer, got 0"),
    (MF, {"num_neg": -1}, "num_neg must be an integer >= 0, got -1"),
    (MF, {"lr": 0.0}, "lr must be > 0, got 0.0"),
    (MF, {"reg": -0.1}, "reg must be >= 0, got -0.1"),
    (MF, {"init_std": -1.0}, "init_std must be >= 0, got -1.0"),
    (MF, {"epochs": 1.5}, "epochs must be an integer >= 0, got 1.5"),
    (MF, {"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    (IALS, {"num_factors": 2.0}, "num_factors must be a positive integer, got 2.0"),
    (IALS, {"alpha": -1.0}, "alpha must be >= 0, got -1.0"),
    (IALS, {"reg": 0.0}, "reg must be > 0, got 0.0"),
    (IALS, {"reg_exponent": -0.5}, "reg_exponent must be >= 0, got -0.5"),
    (IALS, {"epochs": -1}, "epochs must be an integer >= 0, got -1"),
    (IALS, {"solver": "lu"}, "solver must be one of cholesky, cg, got 'lu'"),
    (IALS, {"cg_steps": 0}, "cg_steps must be a positive integer, got 0"),
    (EASE, {"reg": 0.0}, "reg must be > 0, got 0.0"),
])
def test_bad_hyper_parameter_is_named(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# --- MF -----------------------------------------------------------------------

def mf_with(rng, num_users=3, num_items=4, num_factors=3, **kwargs) -> MF:
    model = MF(num_factors=num_factors, **kwargs)
    model.user_factors = rng.normal(size=(num_users, num_factors)).astype(np.float32)
    model.item_factors = rng.normal(size=(num_items, num_factors)).astype(np.float32)
    model.user_bias = rng.normal(size=num_users).astype(np.float32)
    model.item_bias = rng.normal(size=num_items).astype(np.float32)
    model.bias = 0.3
    return model


def test_mf_step_on_one_instance_is_the_stated_sgd_step():
    rng = np.random.default_rng(0)
    model = mf_with(rng, lr=0.1, reg=0.05)
    p, q = model.user_factors.astype(np.float64), model.item_factors.astype(np.float64)
    bu, bi, b = model.user_bias.astype(np.float64), model.item_bias.astype(np.float64), 0.3
    y = b + bu[1] + bi[2] + p[1] @ q[2]
    for label in (1.0, 0.0):
        m = mf_with(np.random.default_rng(0), lr=0.1, reg=0.05)
        loss = m._step(np.array([1]), np.array([2]), np.array([label], np.float32))
        g = label - expit(y)
        np.testing.assert_allclose(loss, -label * np.log(expit(y))
                                   - (1 - label) * np.log(1 - expit(y)), rtol=1e-5)
        np.testing.assert_allclose(m.user_factors[1], p[1] + 0.1 * (g * q[2] - 0.05 * p[1]),
                                   rtol=1e-5)
        np.testing.assert_allclose(m.item_factors[2], q[2] + 0.1 * (g * p[1] - 0.05 * q[2]),
                                   rtol=1e-5)
        np.testing.assert_allclose(m.user_bias[1], bu[1] + 0.1 * (g - 0.05 * bu[1]), rtol=1e-5)
        np.testing.assert_allclose(m.item_bias[2], bi[2] + 0.1 * (g - 0.05 * bi[2]), rtol=1e-5)
        np.testing.assert_allclose(m.bias, b + 0.1 * (g - 0.05 * b), rtol=1e-6)
        # Untouched rows stay put.
        np.testing.assert_array_equal(m.user_factors[0], model.user_factors[0])
        np.testing.assert_array_equal(m.item_factors[3], model.item_factors[3])


def test_mf_batch_step_sums_the_instance_steps():
    """Factors and per-user/item biases: the sum of the steps at the old parameters."""
    rng = np.random.default_rng(1)
    u, i = np.array([0, 1, 0, 2, 0]), np.array([1, 1, 3, 0, 1])   # (0, 1) twice
    r = np.array([1, 0, 0, 1, 1], np.float32)
    model = mf_with(rng, lr=0.05, reg=0.1)
    before = mf_with(np.random.default_rng(1), lr=0.05, reg=0.1)
    model._step(u, i, r)
    expected_p = before.user_factors.astype(np.float64)
    expected_bu = before.user_bias.astype(np.float64)
    for uk, ik, rk in zip(u, i, r):
        p, q = before.user_factors[uk].astype(np.float64), before.item_factors[ik]
        y = before.bias + before.user_bias[uk] + before.item_bias[ik] + p @ q
        g = rk - expit(y)
        expected_p[uk] += 0.05 * (g * q - 0.1 * p)
        expected_bu[uk] += 0.05 * (g - 0.1 * before.user_bias[uk])
    np.testing.assert_allclose(model.user_factors, expected_p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.user_bias, expected_bu, rtol=1e-5, atol=1e-6)


def test_mf_global_bias_step_is_stable_for_large_batches():
    """Regression guard: summing every instance's step into b diverges.

    50,000 instances of 50,000 users and items (each met about once), 20%
    positive, every parameter at 0: per-instance SGD takes b to about
    logit(0.2) = -1.39 (lr * sigmoid' * n >> 1); the sum of the batch's
    steps would be lr * n * (0.2 - 0.5) = -150.
    """
    rng = np.random.default_rng(0)
    n = 50_000
    model = mf_with(rng, num_users=n, num_items=n, lr=0.01, reg=0.0)
    for array in (model.user_factors, model.item_factors, model.user_bias, model.item_bias):
        array[:] = 0.0
    model.bias = 0.0
    labels = (rng.random(n) < 0.2).astype(np.float32)
    users, items = rng.integers(0, n, n), rng.integers(0, n, n)
    model._step(users, items, labels)
    assert model.bias == pytest.approx((labels.mean() - 0.5) / 0.25, rel=1e-6)
    for _ in range(5):
        model._step(users, items, labels)
    assert -1.6 < model.bias < -1.2


def test_mf_global_bias_step_of_one_instance_is_plain_sgd():
    for lr in (1e-9, 0.1, 5.0):   # also lr * sigmoid' >= 1
        model = mf_with(np.random.default_rng(0), lr=lr, reg=0.2)
        b = model.bias
        y = b + model.user_bias[0] + model.item_bias[1] + model.user_factors[0] @ \
            model.item_factors[1]
        model._step(np.array([0]), np.array([1]), np.array([1.0], np.float32))
        assert model.bias == pytest.approx(b + lr * (1.0 - expit(y) - 0.2 * b), rel=1e-6)


def test_mf_loss_decreases_and_excluding_positives_also_learns():
    train, evaluator = checkerboard(seed=0)
    model = FACTORIES["MF"]().fit(train, np.random.default_rng(0), log=quiet)
    assert model.history[-1] < 0.8 * model.history[0]
    excluding = MF(num_factors=8, num_neg=4, lr=0.05, epochs=8, batch_size=512,
                   exclude_positives=True).fit(train, np.random.default_rng(0), log=quiet)
    assert evaluator.evaluate(excluding.score).hr > 0.8


def test_mf_epoch_continues_fit():
    """fit(epochs=2) is fit(epochs=1) then one epoch() on the same rng stream."""
    train, _ = checkerboard(seed=0)
    users, items = random_pairs(train, 50, seed=1)
    two = MF(num_factors=4, epochs=2, batch_size=512).fit(train, np.random.default_rng(0),
                                                          log=quiet)
    rng = np.random.default_rng(0)
    one = MF(num_factors=4, epochs=1, batch_size=512).fit(train, rng, log=quiet)
    loss = one.epoch(rng)
    assert loss == two.history[1]
    np.testing.assert_array_equal(one.score(users, items), two.score(users, items))
    with pytest.raises(RuntimeError, match="MF.epoch called before fit"):
        MF().epoch(rng)


# --- iALS ---------------------------------------------------------------------

def small_implicit(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((9, 7)) < 0.35
    dense[0] = False      # a user without interactions
    dense[:, 6] = False   # an item without interactions
    dense[1, 0] = True
    return sp.csr_matrix(dense.astype(np.float32))


def dense_row_reg(p: np.ndarray, alpha: float, reg: float, nu: float) -> np.ndarray:
    """reg_u for each row of the 0/1 matrix p, from its confidences written out."""
    weight = np.sum(1.0 + alpha * p, axis=1)
    return reg * (weight / weight.mean()) ** nu


def dense_objective(model: IALS, train: sp.csr_matrix) -> float:
    """L of the module docstring, summed over every (u, i) explicitly."""
    x, y = model.user_factors, model.item_factors
    p = (train.toarray() > 0).astype(np.float64)
    c = 1.0 + model.alpha * p
    user_reg = dense_row_reg(p, model.alpha, model.reg, model.reg_exponent)
    item_reg = dense_row_reg(p.T, model.alpha, model.reg, model.reg_exponent)
    return float(np.sum(c * (p - x @ y.T) ** 2)
                 + user_reg @ np.sum(x ** 2, axis=1) + item_reg @ np.sum(y ** 2, axis=1))


def dense_user_solve(y: np.ndarray, train: sp.csr_matrix, alpha: float,
                     reg: float, nu: float = 0.0) -> np.ndarray:
    """Hu et al.'s eq. 4 with the full diagonal C^u, one user at a time."""
    p = (train.toarray() > 0).astype(np.float64)
    row_reg = dense_row_reg(p, alpha, reg, nu)
    x = np.empty((p.shape[0], y.shape[1]))
    for u in range(p.shape[0]):
        c = 1.0 + alpha * p[u]
        x[u] = np.linalg.solve(y.T @ (c[:, None] * y) + row_reg[u] * np.eye(y.shape[1]),
                               y.T @ (c * p[u]))
    return x


@pytest.mark.parametrize("nu", [0.0, 1.0])
def test_ials_objective_matches_dense_sum(nu):
    train = small_implicit()
    model = IALS(num_factors=3, alpha=4.0, reg=0.3, reg_exponent=nu, epochs=2, init_std=0.3)
    model.fit(train, np.random.default_rng(0), log=quiet)
    np.testing.assert_allclose(model.objective(), dense_objective(model, train), rtol=1e-10)


@pytest.mark.parametrize("nu", [0.0, 0.5, 1.0])
def test_ials_sweep_is_the_exact_weighted_least_squares_solution(nu):
    train = small_implicit()
    model = IALS(num_factors=3, alpha=4.0, reg=0.3, reg_exponent=nu, epochs=0, init_std=0.3)
    model.fit(train, np.random.default_rng(1), log=quiet)
    y0 = model.item_factors.copy()
    model.iterate()
    expected_x = dense_user_solve(y0, train, 4.0, 0.3, nu)
    expected_y = dense_user_solve(expected_x, train.T.tocsr(), 4.0, 0.3, nu)
    np.testing.assert_allclose(model.user_factors, expected_x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.item_factors, expected_y, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(model.user_factors[0], 0.0)   # no interactions


def test_ials_frequency_scaled_regularisation_by_hand():
    # 2 users x 3 items, alpha 2: row weights 3 + 2 * (2, 1) = (7, 5), mean 6.
    train = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], np.float32))
    model = IALS(num_factors=2, alpha=2.0, reg=6.0, reg_exponent=1.0)
    np.testing.assert_allclose(model.row_regularisation(train), [7.0, 5.0])
    model = IALS(num_factors=2, alpha=2.0, reg=6.0, reg_exponent=0.0)
    np.testing.assert_allclose(model.row_regularisation(train), [6.0, 6.0])


@pytest.mark.parametrize("nu", [0.0, 1.0])
def test_ials_conjugate_gradient_converges_to_the_exact_solve(nu):
    train = small_implicit()
    exact = IALS(num_factors=3, alpha=4.0, reg=0.3, reg_exponent=nu, epochs=0, init_std=0.3)
    exact.fit(train, np.random.default_rng(1), log=quiet)
    cg = IALS(num_factors=3, alpha=4.0, reg=0.3, reg_exponent=nu, epochs=0, init_std=0.3,
              solver="cg", cg_steps=3)   # K = 3 steps solve a 3 x 3 system exactly
    cg.fit(train, np.random.default_rng(1), log=quiet)
    exact.iterate()
    cg.iterate()
    np.testing.assert_allclose(cg.user_factors, exact.user_factors, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(cg.item_factors, exact.item_factors, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("solver,cg_steps,nu", [("cholesky", 3, 0.0), ("cg", 1, 0.0),
                                                ("cg", 3, 0.0), ("cholesky", 3, 1.0)])
def test_ials_objective_never_increases(solver, cg_steps, nu):
    train, _ = checkerboard(seed=0)
    model = IALS(num_factors=8, epochs=6, solver=solver, cg_steps=cg_steps, reg_exponent=nu)
    model.fit(train, np.random.default_rng(0), log=quiet)
    history = np.array(model.history)
    assert (np.diff(history) <= 1e-9 * history[:-1]).all(), history
    assert history[-1] < history[0]


# --- EASE ---------------------------------------------------------------------

def test_ease_weights_satisfy_the_constrained_optimum():
    """Zero diagonal, and the gradient of |X - XB|^2 + reg |B|^2 vanishes off it."""
    train = small_implicit()
    model = EASE(reg=0.7).fit(train, log=quiet)
    b = model.weights
    x = train.toarray().astype(np.float64)
    gram = x.T @ x
    np.testing.assert_array_equal(np.diag(b), 0.0)
    gradient = (gram + 0.7 * np.eye(len(gram))) @ b - gram
    off_diagonal = gradient - np.diag(np.diag(gradient))
    np.testing.assert_allclose(off_diagonal, 0.0, atol=1e-12)


def test_ease_column_is_ridge_regression_on_the_other_items():
    """Column j of B regresses item j's column on every other item's (Steck, sec. 2)."""
    train = small_implicit(seed=3)
    model = EASE(reg=0.5).fit(train, log=quiet)
    x = train.toarray().astype(np.float64)
    for j in range(x.shape[1]):
        others = np.delete(np.arange(x.shape[1]), j)
        a = x[:, others]
        w = np.linalg.solve(a.T @ a + 0.5 * np.eye(len(others)), a.T @ x[:, j])
        np.testing.assert_allclose(model.weights[others, j], w, rtol=1e-9, atol=1e-12)


def test_ease_scores_are_the_rows_of_x_times_b():
    train = small_implicit()
    model = EASE(reg=2.0).fit(train, log=quiet)
    users, items = random_pairs(train, 60, seed=4)
    expected = (train.toarray() @ model.weights)[users, items]
    np.testing.assert_allclose(model.score(users, items), expected, rtol=1e-12, atol=1e-15)
