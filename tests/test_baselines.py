"""The paper's baselines (ItemPop, ItemKNN, BPR, eALS): the math of each, the
shared scoring contract, and a learnable checkerboard each personalised model
must solve.

Checkerboard: 4 groups of users, each interacting with a random 70% of its own
block of 40 items; one positive per user is held out and ranked against 99
items the user never interacted with. About 9 of those 99 lie in the user's
own block, so a model that learned the blocks has HR@10 close to 1, while
random scores (and ItemPop, whose counts are flat across blocks) get ~0.1.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import scipy.sparse as sp

from ncf_tf.baselines import BASELINES, BPR, EALS, PAPER_BASELINES, ItemKNN, ItemPop
from ncf_tf.baselines import itemknn
from ncf_tf.data.sampling import NegativeSampler
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.models import gmf, mlp, neumf
from ncf_tf.train.training import compile_model, fit_epoch, make_score_fn

quiet = lambda line: None  # noqa: E731

# Small settings for the checkerboard: each fit takes well under a second.
FACTORIES = {
    "ItemPop": lambda: ItemPop(),
    "ItemKNN": lambda: ItemKNN(k_neighbors=20),
    "BPR": lambda: BPR(num_factors=8, lr=0.1, epochs=10, batch_size=256),
    "eALS": lambda: EALS(num_factors=8, epochs=5),
}
PERSONALISED = ["ItemKNN", "BPR", "eALS"]


class NCF:
    """GMF, MLP or NeuMF behind the baselines' interface (one epoch of the
    authors' training), so that the shared contract is checked on them too."""

    def __init__(self, name: str, build):
        self.name, self.build = name, build

    def fit(self, train, rng, log=print):
        self.model = self.build(*train.shape, seed=int(rng.integers(1 << 30)))
        compile_model(self.model, keras.optimizers.Adam(0.01))
        fit_epoch(self.model, NegativeSampler(train, 4).epoch(rng), 1024)
        self.scorer = make_score_fn(self.model)
        return self

    def score(self, users, items):
        return np.asarray(self.scorer(users, items), np.float64)

    def config(self):
        return {"model": self.name, "epochs": 1}


NCF_FACTORIES = {
    "GMF": lambda: NCF("GMF", lambda u, i, seed: gmf.build(u, i, 8, seed=seed)),
    "MLP": lambda: NCF("MLP", lambda u, i, seed: mlp.build(u, i, [16, 8], [0, 0], seed=seed)),
    "NeuMF": lambda: NCF("NeuMF", lambda u, i, seed: neumf.build(u, i, 4, [16, 8], [0, 0],
                                                                   seed=seed)),
}
CONTRACT = {**FACTORIES, **NCF_FACTORIES}
"""The baselines, and the neural models, which score in float32: they hold the
contract to float32 rounding."""


def checkerboard(seed: int, num_users: int = 300, num_items: int = 160, groups: int = 4,
                 density: float = 0.7, num_neg: int = 99):
    """Training matrix and a leave-one-out evaluator for the block data set."""
    rng = np.random.default_rng(seed)
    block = num_items // groups
    rows, cols, held_out, negatives = [], [], [], []
    for user in range(num_users):
        own = np.arange(block) + (user % groups) * block
        chosen = own[rng.random(block) < density]
        test_item = rng.choice(chosen)
        kept = chosen[chosen != test_item]
        rows += [user] * len(kept)
        cols += kept.tolist()
        held_out.append(test_item)
        unseen = np.setdiff1d(np.arange(num_items), chosen)
        negatives.append(rng.choice(unseen, size=num_neg, replace=False))
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                          shape=(num_users, num_items))
    evaluator = LeaveOneOutEvaluator(np.arange(num_users), np.array(held_out),
                                     np.stack(negatives), k=10)
    return train, evaluator


def random_pairs(train: sp.csr_matrix, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, train.shape[0], n), rng.integers(0, train.shape[1], n))


# --- the shared contract, run against every baseline -------------------------

@pytest.mark.parametrize("name", list(CONTRACT))
def test_scoring_contract(name):
    """Shape, batch independence, determinism, config: what the evaluator relies on."""
    train, _ = checkerboard(seed=0)
    model = CONTRACT[name]().fit(train, np.random.default_rng(0), log=quiet)
    users, items = random_pairs(train, 500, seed=1)
    tolerance = 1e-6 if name in NCF_FACTORIES else 1e-12

    scores = model.score(users, items)
    assert scores.shape == (500,) and np.isfinite(scores).all()
    # Batch independence: a pair's score must not depend on its batch-mates.
    one_by_one = np.array([model.score(users[k:k + 1], items[k:k + 1])[0] for k in range(20)])
    np.testing.assert_allclose(scores[:20], one_by_one, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(model.score(users[::-1], items[::-1]), scores[::-1],
                               rtol=tolerance, atol=tolerance)

    again = CONTRACT[name]().fit(train, np.random.default_rng(0), log=quiet)
    np.testing.assert_allclose(again.score(users, items), scores, rtol=tolerance, atol=tolerance)

    config = model.config()
    assert config["model"] == name
    assert name in NCF_FACTORIES or BASELINES[name] is type(model)
    json.dumps(config)   # goes into run records as is


@pytest.mark.parametrize("name", ["BPR", "eALS"])
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


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", PERSONALISED)
def test_learns_checkerboard(name, seed):
    train, evaluator = checkerboard(seed)
    random_hr = evaluator.evaluate(
        lambda u, i: np.random.default_rng(seed).random(len(u))).hr
    pop_hr = evaluator.evaluate(ItemPop().fit(train, log=quiet).score).hr
    model = FACTORIES[name]().fit(train, np.random.default_rng(seed), log=quiet)
    hr = evaluator.evaluate(model.score).hr
    assert random_hr < 0.25 and pop_hr < 0.25   # the data set is not trivial
    assert hr > 0.75, f"{name}: HR@10 = {hr:.3f} on the checkerboard"
    assert hr > pop_hr + 0.4 and hr > random_hr + 0.4


def test_registry_uses_the_papers_names():
    assert PAPER_BASELINES == ("ItemPop", "ItemKNN", "BPR", "eALS")
    assert list(BASELINES)[:5] == ["Random", *PAPER_BASELINES]


@pytest.mark.parametrize("cls,kwargs,match", [
    (ItemKNN, {"k_neighbors": 0}, "k_neighbors must be a positive integer, got 0"),
    (ItemKNN, {"k_neighbors": 2.5}, "k_neighbors must be a positive integer, got 2.5"),
    (ItemKNN, {"shrink": -1.0}, "shrink must be >= 0, got -1.0"),
    (BPR, {"num_factors": 0}, "num_factors must be a positive integer, got 0"),
    (BPR, {"lr": 0.0}, "lr must be > 0, got 0.0"),
    (BPR, {"reg": -0.1}, "reg must be >= 0, got -0.1"),
    (BPR, {"epochs": -1}, "epochs must be an integer >= 0, got -1"),
    (BPR, {"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    (EALS, {"num_factors": -3}, "num_factors must be a positive integer, got -3"),
    (EALS, {"reg": -1.0}, "reg must be >= 0, got -1.0"),
    (EALS, {"c0": -1.0}, "c0 must be >= 0, got -1.0"),
    (EALS, {"alpha": -0.5}, "alpha must be >= 0, got -0.5"),
    (EALS, {"w": 0.0}, "w must be > 0, got 0.0"),
])
def test_bad_hyper_parameter_is_named(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# --- ItemPop ------------------------------------------------------------------

def test_itempop_scores_are_interaction_counts():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0],
                                    [1, 0, 0, 0],
                                    [1, 1, 1, 0]], dtype=np.float32))
    model = ItemPop().fit(train, log=quiet)
    np.testing.assert_array_equal(model.score(np.array([0, 1, 2, 0]), np.array([0, 1, 2, 3])),
                                  [3, 2, 1, 0])


# --- ItemKNN ------------------------------------------------------------------

# Users x items; item columns (1,1,1), (1,0,1), (0,1,1).
HAND = sp.csr_matrix(np.array([[1, 1, 0],
                               [1, 0, 1],
                               [1, 1, 1]], dtype=np.float32))


def test_itemknn_cosine_on_hand_example():
    s01 = 2 / np.sqrt(6)   # |{0,2}| / (sqrt(3) sqrt(2))
    s12 = 1 / 2            # |{2}| / (sqrt(2) sqrt(2))
    expected = np.array([[0, s01, s01],
                         [s01, 0, s12],
                         [s01, s12, 0]])
    model = ItemKNN(k_neighbors=2).fit(HAND, log=quiet)
    np.testing.assert_allclose(model.similarity.toarray(), expected, rtol=1e-12)
    # User 0 has items {0, 1}: score(0, 2) = sim(2, 0) + sim(2, 1).
    np.testing.assert_allclose(model.score(np.array([0]), np.array([2])), [s01 + s12])


def test_itemknn_keeps_top_k_neighbours_and_shrinks():
    model = ItemKNN(k_neighbors=1).fit(HAND, log=quiet)
    # Item 2's nearest neighbour is item 0 (2/sqrt(6) > 1/2); item 1 is dropped.
    np.testing.assert_allclose(model.score(np.array([0]), np.array([2])), [2 / np.sqrt(6)])
    assert (np.diff(model.similarity.indptr) == 1).all()
    shrunk = ItemKNN(k_neighbors=2, shrink=1.0).fit(HAND, log=quiet)
    np.testing.assert_allclose(shrunk.similarity[1, 2], 1 / (2 + 1.0))


def test_itemknn_blocked_computation_matches_dense(monkeypatch):
    """Regression guard for the row blocks of fit and score (pinterest-size memory)."""
    rng = np.random.default_rng(0)
    dense = rng.random((50, 30)) < 0.2
    dense[7] = False   # a user without training items scores 0 everywhere
    train = sp.csr_matrix(dense.astype(np.float32))
    users, items = random_pairs(train, 400, seed=2)
    users[:5] = 7

    dense = train.toarray().astype(np.float64)
    norms = np.sqrt(dense.sum(axis=0))
    sim = dense.T @ dense / np.maximum(np.outer(norms, norms), 1e-300)
    np.fill_diagonal(sim, 0.0)
    expected_scores = (dense @ sim.T)[users, items]   # k >= #items: all neighbours

    monkeypatch.setattr(itemknn, "_BLOCK_ENTRIES", 70)   # blocks of 2 rows
    model = ItemKNN(k_neighbors=100).fit(train, log=quiet)
    np.testing.assert_allclose(model.similarity.toarray(), sim, rtol=1e-12)
    np.testing.assert_allclose(model.score(users, items), expected_scores, rtol=1e-12)
    assert (model.score(users[:5], items[:5]) == 0).all()


# --- BPR ----------------------------------------------------------------------

def bpr_loss(p, q_i, q_j, b_i, b_j, reg):
    """One triple's loss, written from the module docstring."""
    x = p @ (q_i - q_j) + b_i - b_j
    return np.logaddexp(0.0, -x) + reg / 2 * (p @ p + q_i @ q_i + q_j @ q_j + b_i ** 2 + b_j ** 2)


def test_bpr_step_is_sgd_on_the_stated_loss():
    rng = np.random.default_rng(0)
    model = BPR(num_factors=3, lr=0.1, reg=0.05)
    model.user_factors = rng.normal(size=(2, 3))
    model.item_factors = rng.normal(size=(4, 3))
    model.item_bias = rng.normal(size=4)
    before = (model.user_factors.copy(), model.item_factors.copy(), model.item_bias.copy())
    theta = np.concatenate([before[0][1], before[1][2], before[1][3], before[2][2:4]])

    def loss(t):
        return bpr_loss(t[0:3], t[3:6], t[6:9], t[9], t[10], 0.05)

    eps = 1e-6
    grad = np.array([(loss(theta + eps * e) - loss(theta - eps * e)) / (2 * eps)
                     for e in np.eye(len(theta))])
    returned = model._step(np.array([1]), np.array([2]), np.array([3]))
    after = np.concatenate([model.user_factors[1], model.item_factors[2],
                            model.item_factors[3], model.item_bias[2:4]])
    np.testing.assert_allclose(after, theta - 0.1 * grad, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(returned, np.logaddexp(0.0, -(
        before[0][1] @ (before[1][2] - before[1][3]) + before[2][2] - before[2][3])))
    # Untouched rows stay put.
    np.testing.assert_array_equal(model.user_factors[0], before[0][0])
    np.testing.assert_array_equal(model.item_factors[:2], before[1][:2])


def test_bpr_loss_decreases():
    train, _ = checkerboard(seed=0)
    model = FACTORIES["BPR"]().fit(train, np.random.default_rng(0), log=quiet)
    assert model.history[0] > 0.6   # ~ln 2 at the N(0, 0.01) start
    assert model.history[-1] < 0.5 * model.history[0]


def test_bpr_fails_when_a_user_has_no_negative():
    train = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0]], dtype=np.float32))
    with pytest.raises(ValueError, match="user 0 has interacted with all 3 items"):
        BPR().fit(train, np.random.default_rng(0), log=quiet)


# --- eALS ---------------------------------------------------------------------

def small_implicit(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((9, 7)) < 0.35
    dense[:, 6] = False   # an item nobody interacted with: c_i = 0
    dense[0] = False      # a user without interactions
    dense[1, 0] = True
    return sp.csr_matrix(dense.astype(np.float32))


def dense_weights(model: EALS, train: sp.csr_matrix) -> np.ndarray:
    observed = train.toarray() > 0
    return np.where(observed, model.w, model.confidence[None, :])


def dense_objective(model: EALS, train: sp.csr_matrix) -> float:
    """L of the module docstring, summed over every (u, i) explicitly."""
    p, q = model.user_factors, model.item_factors
    r = (train.toarray() > 0).astype(np.float64)
    return float(np.sum(dense_weights(model, train) * (r - p @ q.T) ** 2)
                 + model.reg * (np.sum(p ** 2) + np.sum(q ** 2)))


def reference_iteration(p, q, weights, r, reg):
    """The authors' order: for u: for f: exact minimiser of p_uf; then items."""
    p, q = p.copy(), q.copy()
    for u in range(p.shape[0]):
        for f in range(p.shape[1]):
            residual = r[u] - (q @ p[u] - q[:, f] * p[u, f])
            p[u, f] = (weights[u] * residual) @ q[:, f] / (weights[u] @ q[:, f] ** 2 + reg)
    for i in range(q.shape[0]):
        for f in range(q.shape[1]):
            residual = r[:, i] - (p @ q[i] - p[:, f] * q[i, f])
            q[i, f] = (weights[:, i] * residual) @ p[:, f] / (weights[:, i] @ p[:, f] ** 2 + reg)
    return p, q


def test_eals_confidence_is_popularity_weighted():
    train = small_implicit()
    model = EALS(c0=10.0, alpha=0.5, epochs=0).fit(train, np.random.default_rng(0), log=quiet)
    f = np.asarray(train.sum(axis=0)).ravel()
    np.testing.assert_allclose(model.confidence, 10.0 * f ** 0.5 / np.sum(f ** 0.5))
    assert model.confidence[6] == 0 and np.isclose(model.confidence.sum(), 10.0)


def test_eals_objective_matches_dense_sum():
    train = small_implicit()
    model = EALS(num_factors=3, c0=5.0, reg=0.1, epochs=2, init_std=0.3)
    model.fit(train, np.random.default_rng(0), log=quiet)
    np.testing.assert_allclose(model.objective(), dense_objective(model, train), rtol=1e-10)


def test_eals_vectorised_sweep_equals_sequential_coordinate_descent():
    train = small_implicit()
    model = EALS(num_factors=3, c0=5.0, alpha=0.4, reg=0.1, epochs=0, init_std=0.3)
    model.fit(train, np.random.default_rng(1), log=quiet)
    expected_p, expected_q = reference_iteration(
        model.user_factors, model.item_factors, dense_weights(model, train),
        (train.toarray() > 0).astype(np.float64), model.reg)
    model.iterate()
    np.testing.assert_allclose(model.user_factors, expected_p, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.item_factors, expected_q, rtol=1e-9, atol=1e-12)


def test_eals_objective_never_increases():
    train, _ = checkerboard(seed=0)
    model = EALS(num_factors=8, epochs=6).fit(train, np.random.default_rng(0), log=quiet)
    history = np.array(model.history)
    assert (np.diff(history) <= 1e-9 * history[:-1]).all(), history
    assert history[-1] < history[0]
