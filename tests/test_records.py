"""Run records and the edges of a run: one record type every producer writes
and every reader reads; one owner per run name; divergence recorded as such;
damaged files named; distribute modes that split every batch evenly."""

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, write_dataset
from ncf_tf.baselines.run import run_baseline
from ncf_tf.cli import train as train_cli
from ncf_tf.core import records
from ncf_tf.core.records import RecordError, RunBusyError, RunRecord
from ncf_tf.train import checkpoint, device, experiment
from ncf_tf.train.config import TrainConfig


def strict(path):
    """The JSON in ``path``, refusing NaN and Infinity as strict parsers do."""
    def refuse(name):
        raise ValueError(f"{path}: {name} is not JSON")
    with open(path) as f:
        return json.load(f, parse_constant=refuse)


# ---------------------------------------------------------------- the record type

def test_every_committed_record_loads_with_one_selection_vocabulary():
    paths = glob.glob(os.path.join(REPO, "results", "runs", "**", "*.json"), recursive=True)
    assert len(paths) > 100
    for path in paths:
        record = RunRecord.load(path)
        assert record.kind in ("train", "baseline", "fold_in_train", "fold_in"), path
        assert record.selection in (*records.SELECTIONS, None), path
        assert record.selection is not None or record.kind == "fold_in", path
        assert RunRecord.from_dict(record.to_dict(), path) == record


def test_old_selection_values_are_read_in_the_new_vocabulary():
    assert RunRecord.from_dict({"kind": "baseline", "selection": "none"}).selection == "test"
    assert RunRecord.from_dict({"kind": "train"}).selection == "test"
    old = {"kind": "fold_in_train", "selection": "test HR of the users not held out"}
    assert RunRecord.from_dict(old).selection == "test"
    kept = RunRecord.from_dict({"kind": "train", "selection": "last", "best": None, "x": 1})
    assert kept.to_dict() == {"kind": "train", "config": {}, "selection": "last",
                              "status": "running", "best": None, "x": 1}


def test_records_are_strict_json_and_say_where_a_number_was_not_finite(tmp_path):
    record = RunRecord("train", status="diverged",
                       epochs=[{"epoch": 0, "loss": 0.5}, {"epoch": 1, "loss": float("nan")}],
                       wall_s=np.float32(2.0), best={"hr": float("inf")})
    record.write(str(tmp_path / "r.json"))
    written = strict(tmp_path / "r.json")
    assert written["epochs"][1]["loss"] is None and written["best"]["hr"] is None
    assert written["wall_s"] == 2.0
    assert written["not_finite"] == [
        "best.hr: inf (not a finite number: written as null)",
        "epochs[1].loss: nan (not a finite number: written as null)"]


@pytest.mark.parametrize("text,why", [("", "empty"), ('{"kind": "train", "epo', "damaged"),
                                      ("[1, 2]", "not a run record")])
def test_a_damaged_record_names_itself(tmp_path, text, why):
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(RecordError, match=f"{path}: {why}.*remove it") as error:
        RunRecord.load(str(path))
    assert "JSONDecodeError" not in str(error.value)


# ---------------------------------------------------------------- one owner per run

HOLD = """
import sys, time
from ncf_tf.core import records
owner = records.own_run(sys.argv[1], "myrun")
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_process_is_refused_until_the_owner_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": REPO})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusyError, match=rf"^run myrun is being written by process "
                                               rf"{holder.pid} \(lock "):
            records.own_run(str(tmp_path), "myrun")
    finally:
        holder.kill()   # SIGKILL: no clean-up runs
        holder.wait()
    assert (tmp_path / "myrun.lock").exists()
    owner = records.own_run(str(tmp_path), "myrun")
    assert owner.name == "myrun" and (tmp_path / "myrun.lock").read_text() == str(os.getpid())
    owner.release()
    assert not (tmp_path / "myrun.lock").exists()


def test_a_finished_record_is_never_replaced(tmp_path):
    RunRecord("train", status="finished").write(str(tmp_path / "myrun.json"))
    owner = records.own_run(str(tmp_path), "myrun")
    assert owner.name.startswith("myrun_2")
    owner.release()
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(RecordError, match="broken.json: damaged run record; remove it"):
        records.own_run(str(tmp_path), "broken")
    assert not (tmp_path / "broken.lock").exists()


def test_a_baseline_rerun_keeps_the_finished_record(tmp_path):
    data = write_dataset(tmp_path / "data")
    runs = tmp_path / "runs"
    first = run_baseline("ItemPop", {}, path=data["folder"], dataset="toy",
                         results_dir=str(runs), log=lambda _: None)
    before = (runs / "toy_ItemPop_s0.json").read_bytes()
    second = run_baseline("ItemPop", {}, path=data["folder"], dataset="toy",
                          results_dir=str(runs), log=lambda _: None)
    assert (runs / "toy_ItemPop_s0.json").read_bytes() == before
    assert second.path != first.path and second.best == first.best
    assert sorted(p.suffix for p in runs.iterdir()) == [".json", ".json"]
    assert strict(first.path)["selection"] == "test"


def test_two_scripts_with_one_run_name_one_refuses(tmp_path):
    data = write_dataset(tmp_path / "data")
    argv = [sys.executable, os.path.join(REPO, "bin", "train_gmf"), "--path", data["folder"],
            "--dataset", "toy", "--epochs", "400", "--num_factors", "4", "--run_name", "same",
            "--model_dir", str(tmp_path / "m"), "--results_dir", str(tmp_path / "r"),
            "--progress=false"]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not glob.glob(str(tmp_path / "r" / "same.json")):
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.1)
        second = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first run ended before the second was refused"
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    assert second.stderr.strip().splitlines()[-1] == (
        f"train_gmf: error: run same is being written by process {first.pid} "
        f"(lock {tmp_path / 'r' / 'same.lock'}); wait for it to end or choose another run_name")


# ---------------------------------------------------------------- divergence

@pytest.mark.parametrize("field,value,message", [
    ("lr", float("inf"), "lr must be a positive finite number, got inf"),
    ("lr", float("nan"), "lr must be a positive finite number, got nan"),
    ("lr", 0.0, "lr must be a positive finite number, got 0.0"),
    ("seed", -1, "seed must be an integer >= 0, got -1"),
    ("reg_mf", float("inf"), "reg_mf must be a finite number >= 0, got inf"),
])
def test_settings_that_cannot_train_are_refused_before_the_data(tmp_path, field, value,
                                                                message):
    config = TrainConfig("GMF", path=str(tmp_path / "nothing here"), **{field: value},
                         results_dir=str(tmp_path / "r"))
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        experiment.run(config)
    assert not (tmp_path / "r").exists()


def test_a_diverging_run_stops_and_is_recorded_as_diverged(tmp_path):
    data = write_dataset(tmp_path / "data")
    config = TrainConfig("GMF", path=data["folder"], dataset="toy", epochs=5, num_factors=4,
                         lr=1e30, learner="sgd", model_dir=str(tmp_path / "m"),
                         results_dir=str(tmp_path / "r"), progress=False)
    lines = []
    with pytest.raises(experiment.DivergedError, match=r"^run toy_GMF_4_lr1e\+30_sgd_e5_s0 "
                                                       r"diverged at epoch 0 \(loss = ") as e:
        experiment.run(config, log=lines.append)
    assert [line for line in lines if line.startswith("Diverged")] == [
        f"Diverged at iteration 0: loss = {e.value.record.epochs[0]['loss']:.4f}; "
        "training stops here"]
    (path,) = (tmp_path / "r").glob("*.json")
    written = strict(path)
    assert written["status"] == "diverged" and written["diverged"]["epoch"] == 0
    assert len(written["epochs"]) == 1 and "weights_file" not in written
    assert not list((tmp_path / "m").glob("**/*.npz")) and not list((tmp_path / "r").glob("*.lock"))
    # the script: one line, exit 1, the record kept
    argv = ["train_gmf", "--path", data["folder"], "--dataset", "toy", "--epochs", "2",
            "--num_factors", "4", "--lr", "1e30", "--learner", "sgd", "--run_name", "again",
            "--model_dir", str(tmp_path / "m"), "--results_dir", str(tmp_path / "r")]
    assert train_cli.main("GMF", argv) == 1
    assert strict(tmp_path / "r" / "again.json")["status"] == "diverged"


# ---------------------------------------------------------------- damaged state

def test_a_damaged_checkpoint_names_itself(tmp_path):
    data = write_dataset(tmp_path / "data")
    config = TrainConfig("GMF", path=data["folder"], dataset="toy", epochs=1, num_factors=4,
                         model_dir=str(tmp_path / "m"), results_dir=str(tmp_path / "r"),
                         progress=False, run_name="cut")
    path = tmp_path / "m" / "checkpoints" / "cut.ckpt.npz"
    path.parent.mkdir(parents=True)
    for content, why in ((b"", "empty"), (b"PK\x03\x04 half a zip", "damaged"),
                         (b"\x80\x04pickled", "damaged")):
        path.write_bytes(content)
        with pytest.raises(checkpoint.CheckpointError,
                           match=rf"checkpoint {path} is {why}.*; remove it") as error:
            experiment.run(config, log=lambda _: None)
        assert "allow_pickle" not in str(error.value)
        assert not (tmp_path / "r" / "cut.json").exists()


# ---------------------------------------------------------------- distribute

class Replicas:
    def __init__(self, count):
        self.num_replicas_in_sync = count


def test_every_batch_must_split_evenly_over_the_replicas():
    device.check_split(Replicas(2), 8, 100)      # 12 batches of 8, a last one of 4
    device.check_split(None, 7, 100)
    with pytest.raises(ValueError, match=r"^batch_size 7 does not split evenly over the 2 "
                                         r"replicas.*; batch_size 8 would$"):
        device.check_split(Replicas(2), 7, 100)
    with pytest.raises(ValueError, match=r"^the last batch of each epoch \(5 of its 105 "
                                         r"instances\) does not split .*another num_neg would$"):
        device.check_split(Replicas(2), 10, 105)


@pytest.mark.parametrize("text,what", [("{not json", "is not valid JSON"),
                                       ('{"task": {"type": "worker", "index": 0}}', '"cluster"'),
                                       ('{"cluster": {"worker": ["a:1"]}, "task": '
                                        '{"type": "worker", "index": 1}}', '"task"')])
def test_a_malformed_tf_config_is_named(text, what):
    with pytest.raises(ValueError, match=f"^TF_CONFIG .*{what}"):
        device.check_tf_config(text)
    device.check_tf_config("")
    device.check_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, '
                           '"task": {"type": "worker", "index": 1}}')


# ---------------------------------------------------------------- what a run prints

def test_with_nothing_held_out_every_epoch_prints_its_loss_and_the_last_is_kept(tmp_path):
    from ncf_tf.data.loader import load_dataset
    from ncf_tf.data.sampling import NegativeSampler
    from ncf_tf.models import gmf
    from ncf_tf.train import training
    from ncf_tf.train.optimizers import make_optimizer
    data = write_dataset(tmp_path / "data")
    dataset = load_dataset(data["folder"], "toy")
    model = gmf.build(dataset.num_users, dataset.num_items, 4, seed=1)
    training.compile_model(model, make_optimizer("adam", 0.01))
    lines = []
    state = training.train(model, NegativeSampler(dataset.train, 2), None, epochs=3,
                           batch_size=32, rng=np.random.default_rng(0), log=lines.append)
    assert [line.split(" [")[0] for line in lines[:3]] == [
        f"Iteration {e}" for e in range(3)]
    assert [float(line.rsplit("loss = ", 1)[1]) for line in lines[:3]] == pytest.approx(
        [e.loss for e in state.epochs], abs=1e-4)
    assert lines[3] == "End. Kept iteration 2, the last."
    assert not any("nan" in line for line in lines)


def test_pretrain_pairs_only_gmf_and_mlp_runs_trained_alike(tmp_path):
    def finished(model, name, **settings):
        weights = tmp_path / f"{name}.weights.h5"
        weights.write_bytes(b"weights")
        config = {**TrainConfig(model, dataset="toy").__dict__, **settings}
        RunRecord("train", model=model, config=config, mode="faithful", status="finished",
                  started="2026-01-01", weights_file=str(weights)).write(
            str(tmp_path / f"{name}.json"))
        return str(weights)
    gmf_file = finished("GMF", "gmf")
    mlp_file = finished("MLP", "mlp", epochs=20, lr=0.01)
    config = TrainConfig("NeuMF", dataset="toy", pretrain=True, results_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"^pretrain: the GMF run gmf and the MLP run mlp differ "
                                         r"in epochs 100 and 20, lr 0.001 and 0.01; train them "
                                         r"alike, or set pretrain_mismatch_ok"):
        experiment.pretrained_files(config)
    lines = []
    accepted = TrainConfig("NeuMF", dataset="toy", pretrain=True, results_dir=str(tmp_path),
                           pretrain_mismatch_ok=True)
    assert experiment.pretrained_files(accepted, lines.append) == (gmf_file, mlp_file)
    assert lines == ["Warning: the GMF run gmf and the MLP run mlp differ in epochs 100 and 20, "
                     "lr 0.001 and 0.01; blended as pretrain_mismatch_ok asks"]


def test_the_record_names_the_adam_that_auto_chose(tmp_path, monkeypatch):
    """``adam="auto"``: dense for small tables, deferred from DEFER_MIN_FLOATS
    embedding floats on; the record says which was used."""
    from ncf_tf.data.loader import load_dataset
    from ncf_tf.train import config as config_module
    data = write_dataset(tmp_path / "data")
    dataset = load_dataset(data["folder"], "toy")
    config = TrainConfig("GMF", dataset="toy", epochs=1, num_factors=4, progress=False)
    assert config.adam == "auto"
    floats = config.table_floats(dataset.num_users, dataset.num_items)
    assert floats == (dataset.num_users + dataset.num_items) * 4
    for threshold, used in ((floats + 1, "dense"), (floats, "deferred")):
        monkeypatch.setattr(config_module, "DEFER_MIN_FLOATS", threshold)
        outcome = experiment.run_dataset(dataset, config, log=lambda _: None, write_files=False)
        assert outcome.record.config["adam"] == used
    assert config.adam == "auto"                       # the caller's configuration is kept
    for changes in ({"learner": "sgd"}, {"lazy_adam": True}, {"adam": "dense"},
                    {"precision": "mixed_bfloat16"}):
        other = TrainConfig("GMF", num_factors=4, **changes)
        assert other.resolved_adam(10 ** 9, 10 ** 9) == "dense"
    assert TrainConfig("GMF", adam="deferred").resolved_adam(1, 1) == "deferred"
    with pytest.raises(ValueError, match="adam='deferred' needs precision='float32'"):
        TrainConfig("GMF", adam="deferred", precision="mixed_float16").validate()
