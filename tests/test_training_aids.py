"""Opt-in aids beyond the authors' code: dropout, early stopping, Adam's betas,
and the MLPerf preset. Off, the models and runs are exactly the authors'."""

import json

import numpy as np
import pytest

from conftest import write_dataset
from ncf_tf.cli import train as train_cli
from ncf_tf.data.loader import load_dataset
from ncf_tf.data.sampling import NegativeSampler
from ncf_tf.eval.leave_one_out import Evaluation, LeaveOneOutEvaluator
from ncf_tf.models import mlp, neumf
from ncf_tf.train import training
from ncf_tf.train.config import PRESETS, TrainConfig, with_preset
from ncf_tf.train.optimizers import make_optimizer


def test_no_dropout_is_the_authors_model_and_dropout_only_trains():
    plain = neumf.build(30, 20, 4, [16, 8, 4], [0, 0, 0], seed=3)
    again = neumf.build(30, 20, 4, [16, 8, 4], [0, 0, 0], seed=3, dropout=0.0)
    assert [l.name for l in plain.layers] == [l.name for l in again.layers]
    assert not any("dropout" in l.name for l in plain.layers)
    dropped = neumf.build(30, 20, 4, [16, 8, 4], [0, 0, 0], seed=3, dropout=0.5)
    assert [l.name for l in dropped.layers if "dropout" in l.name] == ["dropout1", "dropout2"]
    # The same initial weights: dropout has none and draws no seed of its own.
    for layer in plain.layers:
        for a, b in zip(layer.get_weights(), dropped.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    users, items = np.arange(10)[:, None], np.arange(10)[:, None]
    np.testing.assert_allclose(dropped.predict([users, items], verbose=0),
                               plain.predict([users, items], verbose=0), rtol=1e-6)
    train_out = np.asarray(dropped([users, items], training=True))
    assert not np.allclose(train_out, np.asarray(plain([users, items], training=True)))
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got 1.0"):
        mlp.build(30, 20, [16, 8], [0, 0], dropout=1.0)


class Scripted:
    """An evaluator whose HR follows a script, one value per call."""

    def __init__(self, hrs):
        self.hrs = list(hrs)

    def evaluate(self, score_fn):
        hr = self.hrs.pop(0)
        return Evaluation(10, hr, hr / 2, np.zeros(1), np.ones(1))


@pytest.mark.parametrize("patience,hrs,ran", [
    (2, [0.1, 0.3, 0.2, 0.25, 0.5, 0.6], 3),   # epoch 0 best, 1 and 2 worse: stop
    (2, [0.1, 0.3, 0.2, 0.4, 0.3, 0.35], 5),   # epoch 2 resets the count
    (0, [0.1, 0.3, 0.2, 0.25, 0.2, 0.2], 5),   # off: every epoch, as the authors
    (1, [0.5, 0.3, 0.6, 0.7, 0.8, 0.9], 1),    # nothing beats the initial model
])
def test_early_stop_counts_evaluations_without_a_better_hr(tmp_path, patience, hrs, ran):
    info = write_dataset(tmp_path, num_users=12, num_items=40, num_neg=5)
    ds = load_dataset(info["folder"], "toy")
    model = neumf.build(ds.num_users, ds.num_items, 4, [8, 4], [0, 0])
    training.compile_model(model, make_optimizer("adam", 0.01))
    state = training.train(model, NegativeSampler(ds.train, 1), Scripted(hrs), epochs=5,
                           batch_size=64, rng=np.random.default_rng(0), log=lambda _: None,
                           early_stop=patience)
    assert len(state.epochs) == ran
    assert training.stale_evaluations(state) == (patience if ran < 5 else
                                                 training.stale_evaluations(state))


def test_adam_betas_reach_the_optimizer():
    opt = make_optimizer("adam", 0.0045, betas=(0.25, 0.5))
    assert (opt.beta_1, opt.beta_2) == (0.25, 0.5)
    default = make_optimizer("adam", 0.001)
    assert (default.beta_1, default.beta_2) == (0.9, 0.999)
    with pytest.raises(ValueError, match="betas must be in"):
        make_optimizer("adam", 0.001, betas=(1.0, 0.5))


def test_the_mlperf_preset_and_explicit_flags_win():
    values = with_preset({"model": "NeuMF", "epochs": 3, "lr": 0.001}, "mlperf", {"epochs"})
    config = TrainConfig(**values)
    assert (config.num_factors, config.layers, config.batch_size, config.lr,
            config.adam_betas) == (64, [256, 256, 128, 64], 2**20, 0.0045, [0.25, 0.5])
    assert config.epochs == 3 and config.preset == "mlperf"
    kept = with_preset({"model": "NeuMF", "lr": 0.002}, "mlperf", {"lr"})
    assert kept["lr"] == 0.002
    with pytest.raises(ValueError, match="preset must be one of mlperf, got 'x'"):
        with_preset({"model": "NeuMF"}, "x")
    with pytest.raises(ValueError, match="preset='mlperf' is for NeuMF, not GMF"):
        with_preset({"model": "GMF"}, "mlperf")
    assert config.fast_mode() and config.beyond_authors() == [
        "Adam betas 0.25, 0.5 (Keras 1's: 0.9, 0.999)"]
    assert set(PRESETS["mlperf"]) >= {"num_factors", "layers", "batch_size", "lr", "adam_betas"}


def test_aids_are_labelled_in_the_record(tmp_path, capsys):
    info = write_dataset(tmp_path / "data")
    common = ["--path", info["folder"], "--dataset", "toy", "--epochs", "3",
              "--batch_size", "64", "--num_factors", "4", "--layers", "16,8,4",
              "--reg_layers", "0,0,0", "--model_dir", str(tmp_path / "m"),
              "--results_dir", str(tmp_path / "r")]
    assert train_cli.main("NeuMF", ["train_neumf", *common, "--dropout", "0.2",
                                    "--early_stop", "1", "--adam_betas", "0.8,0.99"]) == 0
    out = capsys.readouterr().out
    assert "Beyond the authors' code: dropout 0.2 after each MLP layer; early stopping" in out
    path = next((tmp_path / "r").iterdir())
    assert path.name == "toy_NeuMF_4_16-8-4_b64_betas0.8-0.99_dropout0.2_es1_e3_s0.json"
    record = json.load(open(path))
    assert record["mode"] == "beyond" and len(record["beyond_authors"]) == 3
    assert record["config"]["dropout"] == 0.2 and record["config"]["early_stop"] == 1
    assert train_cli.main("NeuMF", ["train_neumf", *common]) == 0
    faithful = [json.load(open(p)) for p in (tmp_path / "r").iterdir()]
    assert sorted(r["mode"] for r in faithful) == ["beyond", "faithful"]
    gmf_flags = [*common[:10], *common[14:]]
    assert train_cli.main("GMF", ["train_gmf", *gmf_flags, "--early_stop", "-1"]) == 2
    assert "--early_stop must be an integer >= 0, got -1" in capsys.readouterr().err
