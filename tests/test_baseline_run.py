"""bin/train_baseline: records, validation selection, full ranking, bad input;
the Random floor."""

import json

import numpy as np
import pytest

from conftest import write_dataset
from ncf_tf.cli import baseline as baseline_cli
from ncf_tf.baselines import Random


def test_random_scores_are_fixed_per_pair_and_uniform():
    model = Random().fit(np.zeros((50, 40)), np.random.default_rng(0))
    users, items = np.repeat(np.arange(50), 40), np.tile(np.arange(40), 50)
    scores = model.score(users, items)
    np.testing.assert_array_equal(scores, model.score(users, items))
    assert 0 <= scores.min() and scores.max() < 1 and abs(scores.mean() - 0.5) < 0.02
    # The test item's rank among 100 candidates is uniform: HR@10 = 0.1.
    ranks = (model.score(np.repeat(np.arange(50), 100), np.tile(np.arange(100), 50))
             .reshape(50, 100).argsort(axis=1).argsort(axis=1)[:, 0])
    assert 0.0 <= np.mean(ranks >= 90) <= 0.3
    other = Random().fit(np.zeros((50, 40)), np.random.default_rng(1))
    assert not np.array_equal(other.score(users, items), scores)


def test_train_baseline_writes_a_record(tmp_path):
    data = write_dataset(tmp_path / "data", num_users=60, num_items=200, density=0.3)
    base = ["train_baseline", "--path", data["folder"], "--dataset", "toy",
            "--results_dir", str(tmp_path / "r")]
    assert baseline_cli.main(base + ["--baseline", "ItemKNN", "--param", "k_neighbors=20",
                                     "--selection", "validation", "--full_ranking"]) == 0
    (path,) = list((tmp_path / "r").iterdir())
    assert path.name == "toy_ItemKNN_k_neighbors20_val-latest_s0.json"
    record = json.loads(path.read_text())
    assert record["kind"] == "baseline" and record["params"] == {"k_neighbors": 20}
    assert set(record["best_validation"]) == {"hr", "ndcg"}
    assert record["best"]["topk"]["10"]["hr"] == pytest.approx(record["best"]["hr"])
    assert 0 <= record["full_ranking"]["hr"] <= 1


@pytest.mark.parametrize("flags, message", [
    (["--baseline", "SVD"], "--baseline must be one of"),
    (["--baseline", "BPR", "--param", "lr"], "--param must look like name=value"),
    (["--baseline", "BPR", "--param", "depth=3"], "--param: BPR does not take"),
    (["--baseline", "ItemPop", "--selection", "train"], "--selection must be none or validation"),
])
def test_bad_input(tmp_path, capsys, flags, message):
    data = write_dataset(tmp_path / "data")
    argv = ["train_baseline", "--path", data["folder"], "--dataset", "toy",
            "--results_dir", str(tmp_path / "r"), *flags]
    assert baseline_cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
