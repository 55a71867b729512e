"""--selection validation and --full_ranking on a training script."""

import json

import numpy as np

from conftest import tensorflow_only, write_dataset
from ncf_tf.models import gmf
from ncf_tf.cli import train as train_cli


def test_validation_selection_reports_test_at_the_validation_pick(tmp_path):
    data = write_dataset(tmp_path / "data", num_users=60, num_items=200, density=0.3)
    argv = ["train_gmf", "--path", data["folder"], "--dataset", "toy", "--epochs", "4",
            "--num_factors", "4", "--batch_size", "64", "--lr", "0.01",
            "--model_dir", str(tmp_path / "m"), "--results_dir", str(tmp_path / "r"),
            "--selection", "validation", "--full_ranking"]
    assert train_cli.main("GMF", argv) == 0
    (path,) = list((tmp_path / "r").iterdir())
    assert "val-latest" in path.name
    record = json.loads(path.read_text())
    assert record["selection"] == "validation" and record["config"]["validation_split"] == "latest"
    epochs = record["epochs"]
    assert all(set(e["monitor"]) == {"test"} for e in epochs)
    best = record["best_epoch"]
    if best >= 0:
        picked = epochs[best]
        assert picked["hr"] == max(e["hr"] for e in epochs)            # validation picks
        assert record["best"]["hr"] == picked["monitor"]["test"]["hr"]  # test is reported
        assert record["best_validation"]["hr"] == picked["hr"]
    top = max(epochs, key=lambda e: e["monitor"]["test"]["hr"])
    assert record["test_picked"]["hr"] == top["monitor"]["test"]["hr"] >= record["best"]["hr"]
    full = record["full_ranking"]
    assert full["k"] == 10 and 0 <= full["ndcg"] <= full["hr"] <= 1
    assert np.isclose(full["recall"], full["hr"])  # one held-out item per user


def test_bad_selection_flags(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    base = ["train_gmf", "--path", data["folder"], "--dataset", "toy", "--epochs", "1",
            "--results_dir", str(tmp_path / "r")]
    assert train_cli.main("GMF", base + ["--selection", "train"]) == 2
    assert "--selection must be test or validation" in capsys.readouterr().err
    assert train_cli.main("GMF", base + ["--selection", "validation", "--validation_split", "first"]) == 2
    assert "--validation_split must be latest or random" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@tensorflow_only
def test_tensorboard_logs_every_epoch(tmp_path):
    data = write_dataset(tmp_path / "data")
    argv = ["train_gmf", "--path", data["folder"], "--dataset", "toy", "--epochs", "2",
            "--num_factors", "4", "--out", "0", "--results_dir", str(tmp_path / "r"),
            "--model_dir", str(tmp_path / "m"),
            "--tensorboard", str(tmp_path / "tb")]
    assert train_cli.main("GMF", argv) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    (run,) = list((tmp_path / "tb").iterdir())
    events = EventAccumulator(str(run))
    events.Reload()
    tags = events.Tags()["tensors"] or events.Tags()["scalars"]
    assert {"loss", "hr", "ndcg"} <= set(tags)
