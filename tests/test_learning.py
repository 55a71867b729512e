"""Each model must learn a synthetic checkerboard: users of group g like the
items of block g. Random scoring gets HR@3 = 3/21 here; a model that learned
the blocks ranks the held-out item among the few unseen items of its own
block (HR@3 0.5 to 0.9 here)."""

import pytest

from conftest import write_dataset
from ncf_tf.train.config import TrainConfig
from ncf_tf.train.experiment import run

RANDOM_HR3 = 3 / 21


@pytest.mark.parametrize("model,extra", [
    ("GMF", {"num_factors": 8}),
    # narrower towers' ReLUs die here for some initialisations
    ("MLP", {"layers": [64, 32, 16], "reg_layers": [0, 0, 0]}),
    ("NeuMF", {"num_factors": 4, "layers": [16, 8, 4], "reg_layers": [0, 0, 0]}),
])
def test_learns_checkerboard(tmp_path, model, extra):
    info = write_dataset(tmp_path / "data", num_users=60, num_items=60, density=0.8, seed=1)
    config = TrainConfig(model=model, path=info["folder"], dataset="toy", epochs=8, lr=0.01,
                         batch_size=64, topk=3, seed=0, out=0,
                         results_dir=str(tmp_path / "runs"), **extra)
    record = run(config, log=lambda line: None)
    assert record.init["hr"] < 0.4
    assert record.best["hr"] > 0.4 > 2.5 * RANDOM_HR3
    losses = [epoch["loss"] for epoch in record.epochs]
    assert losses[-1] < losses[0]
