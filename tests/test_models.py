"""GMF, MLP, NeuMF: layer names, initialisers, batch independence, pretraining."""

import numpy as np
import pytest

from ncf_tf.models import gmf, mlp, neumf, weights
from ncf_tf.train import training

USERS, ITEMS = 30, 20


def models():
    return {"GMF": gmf.build(USERS, ITEMS, 4, seed=1),
            "MLP": mlp.build(USERS, ITEMS, [8, 4, 2], [0, 0, 0], seed=2),
            "NeuMF": neumf.build(USERS, ITEMS, 4, [8, 4, 2], [0, 0, 0], seed=3)}


def predict(model, users, items):
    return np.asarray(model.predict_on_batch([np.asarray(users)[:, None], np.asarray(items)[:, None]]))[:, 0]


def weighted_layers(model):
    return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.weights}


def test_layer_names_and_shapes_are_the_authors():
    m = models()
    assert weighted_layers(m["GMF"]) == {
        "user_embedding": [(USERS, 4)], "item_embedding": [(ITEMS, 4)], "prediction": [(4, 1), (1,)]}
    assert weighted_layers(m["MLP"]) == {
        "user_embedding": [(USERS, 4)], "item_embedding": [(ITEMS, 4)],
        "layer1": [(8, 4), (4,)], "layer2": [(4, 2), (2,)], "prediction": [(2, 1), (1,)]}
    assert weighted_layers(m["NeuMF"]) == {
        "mf_embedding_user": [(USERS, 4)], "mf_embedding_item": [(ITEMS, 4)],
        "mlp_embedding_user": [(USERS, 4)], "mlp_embedding_item": [(ITEMS, 4)],
        "layer1": [(8, 4), (4,)], "layer2": [(4, 2), (2,)], "prediction": [(6, 1), (1,)]}


def test_mlp0_feeds_embeddings_to_prediction():
    assert weighted_layers(mlp.build(USERS, ITEMS, [8], [0])) == {
        "user_embedding": [(USERS, 4)], "item_embedding": [(ITEMS, 4)], "prediction": [(8, 1), (1,)]}


def test_initialisers():
    model = gmf.build(2000, 2000, 16, seed=0)
    table = model.get_layer("user_embedding").get_weights()[0]
    assert abs(table.mean()) < 1e-3 and table.std() == pytest.approx(0.01, rel=0.03)
    kernel = model.get_layer("prediction").get_weights()[0]
    assert np.abs(kernel).max() <= np.sqrt(3 / 16)           # LeCun uniform limit
    assert model.get_layer("prediction").get_weights()[1][0] == 0.0


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (gmf.build(USERS, ITEMS, 4, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


@pytest.mark.parametrize("name", ["GMF", "MLP", "NeuMF"])
def test_batch_independence(name):
    """Regression (a tensordot that summed the whole batch): a score must not
    depend on the other pairs in its batch."""
    model = models()[name]
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, USERS, 64), rng.integers(0, ITEMS, 64)
    batch = predict(model, users, items)
    alone = np.array([predict(model, users[k:k + 1], items[k:k + 1])[0] for k in range(5)])
    np.testing.assert_allclose(batch[:5], alone, rtol=1e-6)
    np.testing.assert_allclose(predict(model, users[::-1], items[::-1]), batch[::-1], rtol=1e-6)


@pytest.mark.parametrize("make", [training.make_score_fn, training.keras_score_fn])
@pytest.mark.parametrize("name", ["GMF", "MLP", "NeuMF"])
def test_score_fn_returns_logits_of_the_probabilities(name, make):
    model = models()[name]
    users, items = np.arange(USERS) % USERS, np.arange(USERS) % ITEMS
    logits = make(model, batch_size=7)(users, items)   # 7: the Keras path pads
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), predict(model, users, items), rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.5, 0.2])
def test_pretraining_invariant(alpha):
    """NeuMF from GMF + MLP predicts sigmoid(alpha*logit_gmf + (1-alpha)*logit_mlp)."""
    g = gmf.build(USERS, ITEMS, 4, seed=11)
    m = mlp.build(USERS, ITEMS, [8, 4, 2], [0, 0, 0], seed=12)
    for model in (g, m):   # non-zero biases, so that the bias blend is exercised
        kernel, _ = model.get_layer("prediction").get_weights()
        model.get_layer("prediction").set_weights([kernel * 50, np.array([0.3 if model is g else -0.7])])
    n = neumf.build(USERS, ITEMS, 4, [8, 4, 2], [0, 0, 0], seed=13)
    weights.assign_named_weights(n, neumf.blend_pretrained(
        weights.named_weights(g), weights.named_weights(m), alpha), "test")
    users, items = np.arange(USERS), np.arange(USERS) % ITEMS
    logit_g = training.make_score_fn(g)(users, items)
    logit_m = training.make_score_fn(m)(users, items)
    expected = 1 / (1 + np.exp(-(alpha * logit_g + (1 - alpha) * logit_m)))
    np.testing.assert_allclose(predict(n, users, items), expected, rtol=1e-5, atol=1e-7)


def test_blend_rejects_alpha_outside_unit_interval():
    g, m = models()["GMF"], models()["MLP"]
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 1.5"):
        neumf.blend_pretrained(weights.named_weights(g), weights.named_weights(m), 1.5)


@pytest.mark.parametrize("build,message", [
    (lambda: mlp.build(5, 5, [7, 4], [0, 0]), r"layers\[0\] must be even, got 7"),
    (lambda: mlp.build(5, 5, [8, 4], [0, 0, 0]), r"layers and reg_layers must have the same length, got 2 and 3"),
    (lambda: neumf.build(5, 5, 0), r"num_factors must be positive, got 0"),
    (lambda: gmf.build(5, 5, 4, regs=[0]), r"regs takes two values"),
])
def test_bad_architectures(build, message):
    with pytest.raises(ValueError, match=message):
        build()
