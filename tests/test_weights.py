"""Weight files: Keras 3 round trips, the authors' Keras 1 layout, mismatches."""

import h5py
import numpy as np
import pytest

from ncf_tf.models import gmf, mlp, neumf, weights
from ncf_tf.models.weights import WeightsError

USERS, ITEMS = 12, 9


def outputs(model):
    u, i = np.arange(USERS)[:, None], (np.arange(USERS) % ITEMS)[:, None]
    return np.asarray(model.predict_on_batch([u, i]))


@pytest.mark.parametrize("build", [
    lambda s: gmf.build(USERS, ITEMS, 3, seed=s),
    lambda s: mlp.build(USERS, ITEMS, [6, 4, 2], [0, 0, 0], seed=s),
    lambda s: neumf.build(USERS, ITEMS, 3, [6, 4, 2], [0, 0, 0], seed=s),
])
def test_save_load_round_trip(tmp_path, build):
    model, fresh = build(1), build(2)
    path = str(tmp_path / "m.weights.h5")
    weights.save_weights(model, path)
    assert not np.allclose(outputs(model), outputs(fresh))
    weights.load_weights(fresh, path)
    np.testing.assert_array_equal(outputs(model), outputs(fresh))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.weights.h5"]   # no temp file left


def write_keras1(path, layers):
    """A Keras 1 HDF5 weight file: root layer_names, <layer>/<layer>_W and _b."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in ["user_input", *layers]]
        f.create_group("user_input").attrs["weight_names"] = np.array([], dtype=float)
        for name, arrays in layers.items():
            group = f.create_group(name)
            names = [f"{name}_W", f"{name}_b"][: len(arrays)]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, a in zip(names, arrays):
                group.create_dataset(n, data=a)


def test_loads_keras1_layout(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"user_embedding": [rng.normal(size=(USERS, 3))], "item_embedding": [rng.normal(size=(ITEMS, 3))],
              "prediction": [rng.normal(size=(3, 1)), np.array([0.25])]}
    write_keras1(tmp_path / "gmf.h5", arrays)
    model = gmf.build(USERS, ITEMS, 3)
    weights.load_weights(model, str(tmp_path / "gmf.h5"))
    np.testing.assert_allclose(model.get_layer("item_embedding").get_weights()[0], arrays["item_embedding"][0], rtol=1e-6)
    np.testing.assert_allclose(model.get_layer("prediction").get_weights()[1], [0.25])


def test_wrong_shapes_name_layer_and_shapes(tmp_path):
    write_keras1(tmp_path / "gmf.h5", {"user_embedding": [np.zeros((USERS, 8))],
                                       "item_embedding": [np.zeros((ITEMS, 8))],
                                       "prediction": [np.zeros((8, 1)), np.zeros(1)]})
    model = gmf.build(USERS, ITEMS, 3)
    before = model.get_weights()
    with pytest.raises(WeightsError, match=r"gmf.h5: layer 'user_embedding' has shapes \[\(12, 8\)\], "
                                           r"the GMF model expects \[\(12, 3\)\]"):
        weights.load_weights(model, str(tmp_path / "gmf.h5"))
    for a, b in zip(before, model.get_weights()):   # nothing assigned
        np.testing.assert_array_equal(a, b)


def test_wrong_model_is_refused(tmp_path):
    path = str(tmp_path / "gmf.weights.h5")
    weights.save_weights(gmf.build(USERS, ITEMS, 3), path)
    with pytest.raises(WeightsError, match=r"no weights for layer 'layer1'.*is it a MLP weight file"):
        weights.load_weights(mlp.build(USERS, ITEMS, [6, 4, 2], [0, 0, 0]), path)


def test_unreadable_files(tmp_path):
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(WeightsError, match="junk.h5: not a readable HDF5 weight file"):
        weights.read_named_weights(str(tmp_path / "junk.h5"))
    with pytest.raises(WeightsError, match="missing.h5: weight file not found"):
        weights.read_named_weights(str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="must end in .weights.h5"):
        weights.save_weights(gmf.build(USERS, ITEMS, 3), str(tmp_path / "x.h5"))
