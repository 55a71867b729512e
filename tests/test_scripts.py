"""bin/train_gmf, bin/train_mlp, bin/train_neumf end to end on a tiny data set,
and every bad flag: one-line error, exit code 2, nothing written."""

import json
import os
import subprocess
import sys

import h5py
import pytest

from conftest import REPO, write_dataset
from ncf_tf.models import gmf, mlp, neumf
from ncf_tf.train.config import TrainConfig
from ncf_tf.train.experiment import pretrained_files
from ncf_tf.core.records import write_json
from ncf_tf.cli import train as train_cli

SMALL = ["--epochs", "2", "--batch_size", "64", "--lr", "0.01", "--num_factors", "4",
         "--layers", "[16,8,4]", "--reg_layers", "0,0,0"]


def common(tmp_path):
    info = write_dataset(tmp_path / "data")
    return info, ["--path", info["folder"], "--dataset", "toy",
                  "--model_dir", str(tmp_path / "models"), "--results_dir", str(tmp_path / "runs")]


def only(flags, allowed):
    """Keeps the --flag value pairs a script defines."""
    pairs = zip(flags[::2], flags[1::2])
    return [x for flag, value in pairs if flag in allowed for x in (flag, value)]


def test_pretrain_finds_the_runs_of_the_same_seed_and_protocol(tmp_path):
    config = TrainConfig(model="NeuMF", dataset="toy", pretrain=True, num_factors=4,
                         layers=[16, 8, 4], seed=1, results_dir=str(tmp_path))

    def run(name, model, started, status="finished", mode="faithful", **settings):
        weights_file = str(tmp_path / f"{name}.weights.h5")
        open(weights_file, "w").close()
        values = {"dataset": "toy", "num_neg": 4, "seed": 1, "selection": "test",
                  "validation_split": "latest", "num_factors": 4, "layers": [16, 8, 4]}
        write_json(str(tmp_path / f"{name}.json"), {
            "kind": "train", "model": model, "status": status, "mode": mode, "started": started,
            "config": {**values, **settings}, "weights_file": weights_file})
        return weights_file

    gmf_file = run("gmf", "GMF", "2026-01-01T00:00:00", epochs=20)
    mlp_file = run("mlp", "MLP", "2026-01-01T00:00:00", epochs=20)
    # Newer, but not what a seed-1, test-selected, faithful NeuMF-4 starts from.
    run("gmf_seed2", "GMF", "2026-02-01", seed=2)
    run("gmf_val", "GMF", "2026-02-01", selection="validation")
    run("gmf_neg7", "GMF", "2026-02-01", num_neg=7)
    run("gmf_f8", "GMF", "2026-02-01", num_factors=8)
    run("gmf_fast", "GMF", "2026-02-01", mode="fast")
    run("gmf_running", "GMF", "2026-02-01", status="running")
    run("mlp_tower", "MLP", "2026-02-01", layers=[32, 16, 8])
    assert pretrained_files(config) == (gmf_file, mlp_file)
    # A newer finished run of the same settings is taken.
    newer = run("gmf_again", "GMF", "2026-03-01", epochs=20)
    assert pretrained_files(config) == (newer, mlp_file)
    os.remove(newer)  # ...while its weights file exists.
    assert pretrained_files(config) == (gmf_file, mlp_file)
    with pytest.raises(ValueError, match="no finished MLP run with .*layers \\[16, 8, 4\\]"):
        os.remove(mlp_file)
        pretrained_files(config)


GMF_FLAGS = {"--epochs", "--batch_size", "--lr", "--num_factors"}
MLP_FLAGS = {"--epochs", "--batch_size", "--lr", "--layers", "--reg_layers"}


def records(tmp_path):
    folder = tmp_path / "runs"
    return sorted(folder.glob("*.json"))


def test_scripts_end_to_end_with_pretraining(tmp_path, capsys, monkeypatch):
    # The default folders: records in runs/, weights in runs/models/ (both ignored by git).
    info = write_dataset(tmp_path / "data")
    base = ["--path", info["folder"], "--dataset", "toy"]
    monkeypatch.chdir(tmp_path)
    # A real subprocess through bin/ for one script...
    done = subprocess.run([sys.executable, os.path.join(REPO, "bin", "train_gmf"), *base,
                           *only(SMALL, GMF_FLAGS)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr
    assert "Load data done" in done.stdout and "Init: HR = " in done.stdout
    assert "Iteration 1 [" in done.stdout and "End. Best Iteration" in done.stdout
    # ...and main(argv) in-process for the others; --reg_layers defaults to one 0 a layer.
    assert train_cli.main("MLP", ["train_mlp", *base,
                                  *only(SMALL, MLP_FLAGS - {"--reg_layers"})]) == 0
    assert train_cli.main("NeuMF", ["train_neumf", *base, *SMALL, "--pretrain"]) == 0
    out = capsys.readouterr().out
    assert "Optimizer: sgd, lr = 0.01 (vanilla SGD after pretraining" in out

    runs = {json.load(open(p))["model"]: json.load(open(p)) for p in records(tmp_path)}
    assert set(runs) == {"GMF", "MLP", "NeuMF"}
    # NeuMF must not replay the negatives its GMF and MLP were trained on.
    assert runs["GMF"]["training_stream"] == runs["MLP"]["training_stream"] == [0]
    assert runs["NeuMF"]["training_stream"] == [0, 2]
    for record in runs.values():
        assert record["status"] == "finished" and len(record["epochs"]) == 2
        assert {"loss", "hr", "ndcg", "sample_s", "train_s", "eval_s"} <= set(record["epochs"][0])
        assert record["versions"]["keras"] and record["machine"]["cpu_count"]
        assert record["machine"]["intra_op_threads"] >= 1
        assert os.path.isfile(record["weights_file"])
        assert all(len(sha) == 64 for sha in record["data"]["files"].values())
    assert runs["NeuMF"]["learner"] == "sgd"
    assert runs["MLP"]["config"]["reg_layers"] == [0, 0, 0]
    assert runs["NeuMF"]["start_from"]["mf_pretrain"].startswith(os.path.join("runs", "models", ""))
    with open(os.path.join(REPO, ".gitignore")) as f:
        assert "/runs/" in f.read().splitlines()
    # The pretrained NeuMF starts where the blend of its parents puts it, and
    # --weights --epochs 0 reproduces a saved model's evaluation exactly.
    saved = runs["GMF"]
    assert train_cli.main("GMF", ["train_gmf", *base, "--num_factors", "4", "--epochs", "0", "--out", "0",
                     "--weights", saved["weights_file"], "--run_name", "eval"]) == 0
    evaluated = json.load(open(tmp_path / "runs" / "eval.json"))
    assert evaluated["init"]["hr"] == saved["best"]["hr"]
    assert evaluated["init"]["ndcg"] == pytest.approx(saved["best"]["ndcg"], abs=1e-12)


def test_neumf_from_keras1_weight_files(tmp_path, capsys):
    info, base = common(tmp_path)
    users, items = info["num_users"], 60
    g, m = gmf.build(users, items, 4), mlp.build(users, items, [16, 8, 4], [0, 0, 0])
    for model, path in ((g, tmp_path / "g.h5"), (m, tmp_path / "m.h5")):
        with h5py.File(path, "w") as f:   # the authors' layout
            named = [layer for layer in model.layers if layer.weights]
            f.attrs["layer_names"] = [layer.name.encode() for layer in named]
            for layer in named:
                names = [f"{layer.name}_W", f"{layer.name}_b"][: len(layer.weights)]
                f.create_group(layer.name).attrs["weight_names"] = [n.encode() for n in names]
                for n, w in zip(names, layer.get_weights()):
                    f[layer.name].create_dataset(n, data=w)
    code = train_cli.main("NeuMF", ["train_neumf", *base, *SMALL, "--epochs", "0", "--out", "0",
                       "--mf_pretrain", str(tmp_path / "g.h5"), "--mlp_pretrain", str(tmp_path / "m.h5")])
    assert code == 0, capsys.readouterr().err


BAD = [
    (["--layers", "[64,32]", "--reg_layers", "[0,0,0]"], "--layers and --reg_layers must have the same length, got 2 and 3$"),
    (["--layers", "[63,32]", "--reg_layers", "[0,0]"], r"--layers\[0\] must be even, got 63: "),
    (["--layers", "eval('1')"], "--layers must be a comma-separated list of integers"),
    (["--learner", "nadam"], "--learner must be one of adagrad, adam, rmsprop, sgd"),
    (["--batch_size", "0"], "--batch_size must be an integer >= 1, got 0"),
    (["--epochs", "-1"], "--epochs must be an integer >= 0, got -1"),
    (["--num_neg", "0"], "--num_neg must be an integer >= 1, got 0"),
    (["--num_neg", "50"], "--num_neg 50: user .* can be paired with only"),
    (["--alpha", "2"], r"--alpha must be a number in \[0, 1\], got 2.0"),
    (["--mf_pretrain", "x.h5"], "--mf_pretrain and --mlp_pretrain must be given together"),
    (["--pretrain"], "--pretrain: no finished GMF run with dataset toy, num_neg 4, seed 0"),
    (["--mf_pretrain", "nope.h5", "--mlp_pretrain", "nope2.h5"], "nope.h5: weight file not found"),
    (["--device", "tpu"], "--device must be auto, cpu or gpu:N, got 'tpu'"),
    (["--epochs", "x"], "flag --epochs=x"),
    (["--precision", "float16"], "--precision must be one of float32, mixed_float16, mixed_bfloat16"),
    (["--lazy_adam", "--learner", "sgd"], "--lazy_adam needs --learner adam, got 'sgd'$"),
    (["--lazy_adam", "--mf_pretrain", "g.h5", "--mlp_pretrain", "m.h5"],
     "--lazy_adam needs --learner adam, got 'sgd' .the default after pretraining; pass --learner adam.$"),
    (["--dataset", "missing"], "missing.train.rating: file not found .*bin/download_data"),
    (["stray"], "unexpected arguments"),
    (["--run_name", "../elsewhere"], "--run_name must be a plain file name .no path separator, "
     "no '..'., got '../elsewhere'$"),
    (["--run_name", "a/b"], "--run_name must be a plain file name"),
]


@pytest.mark.parametrize("flags,message", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_flags(tmp_path, capsys, flags, message):
    _, base = common(tmp_path)
    code = train_cli.main("NeuMF", ["train_neumf", *base, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("train_neumf: error: ")
    assert __import__("re").search(message, err[0]), err[0]
    assert records(tmp_path) == [] and not (tmp_path / "models").exists()


def test_wrong_weight_file_for_the_model(tmp_path, capsys):
    _, base = common(tmp_path)
    assert train_cli.main("GMF", ["train_gmf", *base, "--epochs", "0", "--num_factors", "4"]) == 0
    saved = json.load(open(records(tmp_path)[0]))["weights_file"]
    code = train_cli.main("MLP", ["train_mlp", *base, "--epochs", "0", "--weights", saved])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no weights for layer 'layer1'" in err and "is it a MLP weight file" in err


def test_help(capsys):
    assert train_cli.main("GMF", ["train_gmf", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--num_factors" in out and "--regs" in out and "--layers" not in out
