"""--distribute: tf.distribute over two logical CPU devices gives the updates of
one device (the global batch is split, the gradients summed)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, tensorflow_only, write_dataset
from ncf_tf.cli import train as train_cli

pytestmark = tensorflow_only

SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from ncf_tf.train import device, training
from ncf_tf.models import neumf
from ncf_tf.data.loader import load_dataset
from ncf_tf.train.optimizers import make_optimizer
from ncf_tf.data.sampling import NegativeSampler

dataset = load_dataset(sys.argv[1], "toy")
instances = NegativeSampler(dataset.train, 2).sample(np.random.default_rng(0)).shuffled(
    np.random.default_rng(1))

def trained(strategy, learner):
    with device.placement("cpu:0", strategy):
        model = neumf.build(dataset.num_users, dataset.num_items, 4, [16, 8, 4], [0, 0, 0], 0, 1)
        training.compile_model(model, make_optimizer(learner, 0.01))
        loss = training.fit_epoch(model, instances, 64)
    return model.get_weights(), loss

out = {}
for learner in ("adam", "sgd"):
    single, loss1 = trained(None, learner)
    strategy = device.distribution(sys.argv[2])
    mirrored, loss2 = trained(strategy, learner)
    out[learner] = {"replicas": strategy.num_replicas_in_sync,
                    "max_diff": max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored)),
                    "losses": [loss1, loss2]}
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["mirrored", "multiworker"])
def test_distributed_training_matches_one_device(tmp_path, kind):
    data = write_dataset(tmp_path / "data")
    done = subprocess.run([sys.executable, "-c", SCRIPT, data["folder"], kind],
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={k: v for k, v in os.environ.items() if k != "TF_CONFIG"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for learner, got in result.items():
        assert got["replicas"] == (2 if kind == "mirrored" else 1)
        assert got["max_diff"] < 1e-5, (learner, got)
        assert got["losses"][0] == pytest.approx(got["losses"][1], rel=1e-5)


def test_distribute_flag_end_to_end_and_bad_value(tmp_path):
    data = write_dataset(tmp_path / "data")
    base = ["train_gmf", "--path", data["folder"], "--dataset", "toy", "--epochs", "1",
            "--num_factors", "4", "--model_dir", str(tmp_path / "m"),
            "--results_dir", str(tmp_path / "r")]
    assert train_cli.main("GMF", base + ["--distribute", "ring"]) == 2
    assert not (tmp_path / "r").exists()
    assert train_cli.main("GMF", base + ["--distribute", "mirrored"]) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "r").iterdir()]
    assert record["device"].startswith("mirrored: ") and record["config"]["distribute"] == "mirrored"
