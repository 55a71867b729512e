"""Resumable runs: a run killed with SIGKILL and started again with the same
command ends exactly as an uninterrupted run; checkpoints round-trip."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, write_dataset
from ncf_tf.train import checkpoint, training
from ncf_tf.models import gmf
from ncf_tf.train.config import TrainConfig
from ncf_tf.data.loader import load_dataset
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.train.optimizers import make_optimizer
from ncf_tf.data.sampling import NegativeSampler


def command(data, out, epochs):
    return [sys.executable, os.path.join(REPO, "bin", "train_neumf"), "--path", data["folder"],
            "--dataset", "toy", "--epochs", str(epochs), "--batch_size", "64",
            "--num_factors", "4", "--layers", "16,8,4", "--reg_layers", "0,0,0",
            "--model_dir", str(out / "models"), "--results_dir", str(out / "runs"),
            "--seed", "3", "--progress=false"]


def only_record(folder):
    (path,) = list(folder.glob("*.json"))
    return json.loads(path.read_text())


def test_kill_9_and_resume_ends_as_the_uninterrupted_run(tmp_path):
    data = write_dataset(tmp_path / "data", num_users=150, num_items=150, density=0.5)
    epochs = 6
    whole = subprocess.run(command(data, tmp_path / "whole", epochs), capture_output=True,
                           text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr

    cut = tmp_path / "cut"
    checkpoints = cut / "models" / "checkpoints"
    process = subprocess.Popen(command(data, cut, epochs), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (checkpoints.exists() and any(checkpoints.glob("*.ckpt.npz"))
               and (cut / "runs").exists() and any((cut / "runs").glob("*.json"))):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted = only_record(cut / "runs")
    assert interrupted["status"] == "running" and len(interrupted["epochs"]) < epochs
    # its lock file stays, naming the dead owner; the lock itself died with it
    (lock,) = (cut / "runs").glob("*.lock")
    assert lock.read_text() == str(process.pid)

    again = subprocess.run(command(data, cut, epochs), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "Resuming at iteration" in again.stdout
    assert not any(checkpoints.glob("*.ckpt.npz")) and not any((cut / "runs").glob("*.lock"))

    expected, got = only_record(tmp_path / "whole" / "runs"), only_record(cut / "runs")
    assert got["status"] == "finished" and got["resumed"][0]["at_epoch"] >= 1
    assert [e["epoch"] for e in got["epochs"]] == list(range(epochs))
    for key in ("loss", "hr", "ndcg"):
        np.testing.assert_allclose([e[key] for e in got["epochs"]],
                                   [e[key] for e in expected["epochs"]], rtol=1e-6)
    assert got["best_epoch"] == expected["best_epoch"]
    assert got["best"]["hr"] == pytest.approx(expected["best"]["hr"])
    assert got["best"]["ndcg"] == pytest.approx(expected["best"]["ndcg"])


def test_checkpoint_round_trip_and_continuation(tmp_path):
    data = write_dataset(tmp_path / "data")
    dataset = load_dataset(data["folder"], "toy")
    sampler = NegativeSampler(dataset.train, 2)
    evaluator = LeaveOneOutEvaluator.for_dataset(dataset)

    def fresh():
        model = gmf.build(dataset.num_users, dataset.num_items, 4, seed=1)
        training.compile_model(model, make_optimizer("adam", 0.01))
        return model

    def go(model, epochs, rng, resume=None, on_epoch=None):
        return training.train(model, sampler, evaluator, epochs=epochs, batch_size=32, rng=rng,
                              log=lambda _: None, resume=resume, on_epoch=on_epoch)

    straight = fresh()
    whole = go(straight, 4, np.random.default_rng(5))

    path = str(tmp_path / "c.ckpt.npz")
    first = fresh()
    saved = []

    def stop_after_two(entry, state):
        if entry.epoch == 1:
            checkpoint.save(path, first, state, {"note": "two epochs"})
            saved.append(state.next_epoch)

    go(first, 2, np.random.default_rng(5), on_epoch=stop_after_two)
    assert saved == [2] and checkpoint.read_extra(path) == {"note": "two epochs"}

    second = fresh()
    state = checkpoint.load(path, second)
    assert state.next_epoch == 2 and len(state.epochs) == 2
    for a, b in zip(second.get_weights(), first.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(second.optimizer.variables, first.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    resumed = go(second, 4, np.random.default_rng(999), resume=state)
    np.testing.assert_allclose([e.loss for e in resumed.epochs], [e.loss for e in whole.epochs],
                               rtol=1e-6)
    assert resumed.best_epoch == whole.best_epoch
    np.testing.assert_array_equal(resumed.best.ranks, whole.best.ranks)
    for a, b in zip(second.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    data = write_dataset(tmp_path / "data")
    from ncf_tf.train import experiment
    base = dict(path=data["folder"], dataset="toy", epochs=2, num_factors=4, batch_size=32,
                model_dir=str(tmp_path / "m"), results_dir=str(tmp_path / "r"), out=0)
    config = TrainConfig("GMF", **base)
    paths = experiment.RunFiles.own(config)
    paths.owner.release()
    other = TrainConfig("GMF", **{**base, "lr": 0.5})
    os.makedirs(os.path.dirname(paths.checkpoint))
    np.savez(paths.checkpoint, meta=np.array(json.dumps(
        {"extra": {"config": experiment.resumable_config(other)}})))
    with pytest.raises(ValueError, match="another configuration"):
        experiment.run(config, log=lambda _: None)
    assert not os.path.exists(paths.record)
