"""Fast mode: opt-in changes of the mathematics, each labelled in the run record."""

import json

import keras
import numpy as np
import pytest

from conftest import write_dataset
from ncf_tf.models import neumf
from ncf_tf.train import training
from ncf_tf.train.config import TrainConfig
from ncf_tf.cli import train as train_cli


def test_faithful_by_default_and_each_change_named():
    assert TrainConfig(model="NeuMF").fast_mode() == []
    assert TrainConfig(model="NeuMF", batch_size=1024).fast_mode() == []   # searched in the paper
    fast = TrainConfig(model="NeuMF", batch_size=2048, lr=0.003, lazy_adam=True,
                       precision="mixed_bfloat16")
    changes = fast.fast_mode()
    assert len(changes) == 3
    assert "lazy Adam" in changes[0] and "mixed_bfloat16" in changes[1] and "batch 2048" in changes[2]
    assert fast.run_key() == "ml-1m_NeuMF_8_64-32-16-8_b2048_lr0.003_lazy_bfloat16_e100_s0"


def test_mixed_precision_keeps_the_output_in_float32():
    with training.precision("mixed_bfloat16"):
        model = neumf.build(10, 20, 4, [8, 4], [0, 0])
    assert keras.config.dtype_policy().name == "float32"          # restored
    assert model.get_layer("layer1").compute_dtype == "bfloat16"
    assert model.get_layer("prediction").compute_dtype == "float32"
    assert model.get_layer("probability").compute_dtype == "float32"
    assert model.get_layer("mf_embedding_user").embeddings.dtype == "float32"  # master weights


@pytest.mark.parametrize("flags,mode", [
    ([], "faithful"),
    (["--lazy_adam", "--batch_size", "2048", "--lr", "0.05"], "fast"),   # 2 steps an epoch
    (["--precision", "mixed_bfloat16"], "fast"),
])
def test_fast_mode_runs_learn_and_are_labelled(tmp_path, capsys, flags, mode):
    info = write_dataset(tmp_path / "data")
    argv = ["train_neumf", "--path", info["folder"], "--dataset", "toy", "--epochs", "3",
            "--num_factors", "4", "--layers", "16,8,4", "--reg_layers", "0,0,0", "--lr", "0.01",
            "--batch_size", "64", "--model_dir", str(tmp_path / "m"),
            "--results_dir", str(tmp_path / "runs"), "--run_name", "r", *flags]
    assert train_cli.main("NeuMF", argv) == 0, capsys.readouterr().err
    record = json.load(open(tmp_path / "runs" / "r.json"))
    assert record["mode"] == mode and bool(record["fast_mode"]) == (mode == "fast")
    assert record["best"]["hr"] > record["init"]["hr"]
    if "--lazy_adam" in flags:
        assert record["optimizer"] == "LazyAdam"
        assert "Fast mode, results differ" in capsys.readouterr().out
    assert np.isfinite([e["loss"] for e in record["epochs"]]).all()


def test_mixed_float16_records_the_learner_under_loss_scaling(tmp_path, capsys):
    info = write_dataset(tmp_path / "data")
    argv = ["train_neumf", "--path", info["folder"], "--dataset", "toy", "--epochs", "1",
            "--num_factors", "4", "--layers", "16,8,4", "--reg_layers", "0,0,0",
            "--model_dir", str(tmp_path / "m"), "--results_dir", str(tmp_path / "runs"),
            "--run_name", "r", "--precision", "mixed_float16", "--lazy_adam"]
    assert train_cli.main("NeuMF", argv) == 0, capsys.readouterr().err
    record = json.load(open(tmp_path / "runs" / "r.json"))
    assert record["optimizer"] == "LazyAdam"
    assert len(record["fast_mode"]) == 2
