"""bin/export: the .keras model and the SavedModel, reloaded in a fresh Python
that imports TensorFlow and Keras only, score and recommend as ncf_tf does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, tensorflow_only, write_dataset
from ncf_tf.serve import export, recommend
from ncf_tf.cli import export as export_cli
from ncf_tf.models import scoring, trained
from ncf_tf.data.loader import load_dataset
from trained_models import save_model, spread_model, write_id_maps

# Runs in a fresh interpreter: no ncf_tf, so the export must stand on its own.
RELOAD = r"""
import json, sys
import numpy as np
import tensorflow as tf
import keras
folders, users, items = json.loads(sys.argv[1])
out = {}
for name, folder in folders.items():
    served = tf.saved_model.load(folder + "/saved_model")
    # raw ids: the id maps' strings
    raw_users = [f"u{3 * u + 7}" for u in users]
    raw_items = [f"m{5 * i}" for i in items]
    score = served.signatures["score"](user=tf.constant(raw_users), item=tf.constant(raw_items))
    best = served.signatures["top_k"](user=tf.constant([f"u{3 * u + 7}"
                                                        for u in sorted(set(users))]))
    model = keras.saving.load_model(folder + "/model.keras")
    out[name + "/score"] = score["score"].numpy()
    out[name + "/probability"] = score["probability"].numpy()
    out[name + "/top_items"] = [int(i.decode()[1:]) // 5 for i in best["items"].numpy().ravel()]
    out[name + "/top_scores"] = best["scores"].numpy()
    out[name + "/keras"] = np.asarray(model.predict_on_batch(
        [np.array(users)[:, None], np.array(items)[:, None]]))[:, 0]
assert not any(m.startswith("ncf_tf") for m in sys.modules), "ncf_tf was imported"
np.savez(sys.argv[2], **out)
"""


@pytest.fixture
def toy(tmp_path):
    info = write_dataset(tmp_path / "data")
    info["dataset"] = load_dataset(info["folder"], info["name"])
    return info


def run_export(argv, capsys):
    code = export_cli.main(["export", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
@tensorflow_only
def test_export_reloads_in_a_fresh_python_with_the_same_scores(toy, tmp_path, capsys):
    data = toy["dataset"]
    write_id_maps(toy["folder"], "toy", data.num_users, data.num_items)
    models, folders = {}, {}
    for seed, kind in enumerate(("GMF", "MLP", "NeuMF")):
        models[kind] = spread_model(kind, data.num_users, data.num_items, seed=seed)
        _, record = save_model(models[kind], tmp_path / "runs", kind, toy)
        folders[kind] = str(tmp_path / "exports" / kind)
        code, out, err = run_export(["--record", record, "--dest", folders[kind],
                                     "--topk", "7"], capsys)
        assert code == 0, err
        assert f"Exported {kind} (#user=40, #item=60" in out
    rng = np.random.default_rng(0)
    users = rng.integers(0, data.num_users, 50)
    items = rng.integers(0, data.num_items, 50)
    result = tmp_path / "reloaded.npz"
    done = subprocess.run(
        [sys.executable, "-c", RELOAD, json.dumps([folders, users.tolist(), items.tolist()]),
         str(result)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    reloaded = np.load(result)
    asked = np.array(sorted(set(users.tolist())))
    for kind, model in models.items():
        logits = np.asarray(trained.logits_model(model).predict_on_batch(
            [users[:, None], items[:, None]]))[:, 0]
        np.testing.assert_allclose(reloaded[f"{kind}/score"], logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(reloaded[f"{kind}/probability"], 1 / (1 + np.exp(-logits)),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(reloaded[f"{kind}/keras"],
                                   np.asarray(model.predict_on_batch(
                                       [users[:, None], items[:, None]]))[:, 0],
                                   rtol=1e-6, atol=1e-7)
        best = recommend.top_k(model, asked, data.num_items, data.train, 7)
        np.testing.assert_array_equal(reloaded[f"{kind}/top_items"].reshape(best.items.shape),
                                      best.items)
        np.testing.assert_allclose(reloaded[f"{kind}/top_scores"], best.scores, rtol=1e-5,
                                   atol=1e-5)
        seen = data.train.toarray() > 0
        assert not seen[asked[:, None], reloaded[f"{kind}/top_items"].reshape(
            best.items.shape)].any()
    # The folder: the ids are looked up inside the SavedModel; configuration complete.
    folder = folders["NeuMF"]
    assert sorted(os.listdir(folder)) == ["config.json", "model.keras", "saved_model"]
    config = json.load(open(os.path.join(folder, "config.json")))
    assert {k: config[k] for k in ("model", "num_factors", "layers", "num_users", "num_items",
                                   "k", "seen_excluded")} == {
        "model": "NeuMF", "num_factors": 4, "layers": [16, 8, 4], "num_users": 40,
        "num_items": 60, "k": 7, "seen_excluded": True}
    assert set(config["signatures"]) == {"score", "top_k"}
    assert config["source"]["dataset"] == "toy" and len(config["source"]["weights_sha256"]) == 64
    assert not [p for p in os.listdir(tmp_path / "exports") if p.startswith(".")]


@tensorflow_only
def test_exported_keras_file_is_accepted_by_recommend(toy, tmp_path, capsys):
    data = toy["dataset"]
    model = spread_model("MLP", data.num_users, data.num_items)
    _, record = save_model(model, tmp_path / "runs", "MLP", toy)
    dest = tmp_path / "exported"
    assert run_export(["--record", record, "--dest", str(dest), "--include_seen"], capsys)[0] == 0
    config = json.load(open(dest / "config.json"))
    assert config["seen_excluded"] is False
    assert config["ids"]["user"].startswith("raw user ids: integers (int64")
    reloaded = trained.load_keras_model(str(dest / "model.keras"), 40, 60)
    assert trained.spec_of(reloaded) == trained.ModelSpec("MLP", 8, (16, 8, 4))
    np.testing.assert_allclose(
        np.asarray(scoring.all_item_logits(reloaded, np.arange(40))),
        np.asarray(scoring.all_item_logits(model, np.arange(40))), rtol=1e-6, atol=1e-6)


@tensorflow_only
def test_existing_destination_refused_then_replaced(toy, tmp_path, capsys):
    data = toy["dataset"]
    _, record = save_model(spread_model("GMF", data.num_users, data.num_items),
                           tmp_path / "runs", "GMF", toy)
    dest = tmp_path / "exported"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    code, _, err = run_export(["--record", record, "--dest", str(dest)], capsys)
    assert code == 2 and "exists; refusing to replace it (--overwrite)" in err
    assert os.listdir(dest) == ["old.txt"]
    code, _, err = run_export(["--record", record, "--dest", str(dest), "--overwrite"], capsys)
    assert code == 0, err
    assert "old.txt" not in os.listdir(dest) and "model.keras" in os.listdir(dest)
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith(".")) == []


@tensorflow_only
def test_bad_input_one_line_error_nothing_written(toy, tmp_path, capsys):
    data = toy["dataset"]
    _, record = save_model(spread_model("NeuMF", data.num_users, data.num_items),
                           tmp_path / "runs", "NeuMF", toy)
    other, _ = save_model(spread_model("NeuMF", 40, 61), tmp_path / "other", "NeuMF", toy)
    dest = str(tmp_path / "exported")
    flags = ["--model", "NeuMF", "--num_factors", "4", "--layers", "16,8,4",
             "--path", toy["folder"], "--dataset", "toy"]
    cases = [
        (["--record", record], r"--dest is required"),
        (["--record", record, "--dest", dest, "--topk", "61"],
         r"--topk must be an integer in 1\.\.60 \(the number of items\), got 61"),
        (["--record", record, "--dest", dest, "--topk", "0"], r"--topk must be a positive"),
        (["--weights", other, *flags, "--dest", dest],
         r"trained on 40 users x 61 items, but data set toy .* has 40 users x 60 items"),
        (["--keras", str(tmp_path / "missing.keras"), "--dest", dest],
         r"missing\.keras: model file not found"),
        (["--keras", record, "--dest", dest], r"NeuMF\.json: a whole model file must end in "
         r"\.keras"),
    ]
    for argv, message in cases:
        code, _, err = run_export(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("export: error: "), err
        assert re.search(message, lines[0]), (message, lines[0])
        assert not os.path.exists(dest)
        assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_export_refuses_a_file_as_destination(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(export.ExportError, match=r"^dest .*file: exists and is not a folder"):
        export.check_destination(str(tmp_path / "file"), overwrite=True)


@tensorflow_only
def test_a_saved_recommender_folder_is_exported(toy, tmp_path, capsys):
    import ncf_tf
    import pandas as pd
    from ncf_tf.api.recommender import RECORD
    train = pd.read_csv(os.path.join(toy["folder"], "toy.train.rating"), sep="\t",
                        names=["user", "item", "rating", "time"])
    rec = ncf_tf.Recommender("GMF", num_factors=4, epochs=1).fit(
        train.assign(item="m" + train["item"].astype(str)), log=None)
    rec.save(str(tmp_path / "model"))
    for flag, value, dest in (("--saved", tmp_path / "model", tmp_path / "a"),
                              ("--record", tmp_path / "model" / RECORD, tmp_path / "b")):
        code, out, err = run_export([flag, str(value), "--dest", str(dest), "--topk", "3"],
                                    capsys)
        assert code == 0, err
        assert "Exported GMF (#user=40, #item=60" in out
        config = json.load(open(dest / "config.json"))
        assert config["source"]["saved"] == str(value if flag == "--saved" else value.parent)
        assert config["ids"] == {"user": "raw user ids: integers (int64; int32 also accepted "
                                         "by the functions)", "item": "raw item ids: strings"}
    code, _, err = run_export(["--saved", str(tmp_path / "model"), "--path", "x", "--dest",
                               str(tmp_path / "c")], capsys)
    assert code == 2 and "drop --path" in err and not os.path.exists(tmp_path / "c")


KILLED_EXPORT = r"""
import os, signal, sys
from ncf_tf.serve import export
from ncf_tf.cli import export as cli

def killed(*args, **kwargs):   # model.keras written, the SavedModel not yet
    os.kill(os.getpid(), signal.SIGKILL)
export.write_saved_model = killed
sys.exit(cli.main(["export", *sys.argv[1:]]))
"""


@tensorflow_only
def test_a_killed_exports_staging_folder_is_removed_by_the_next(toy, tmp_path):
    data = toy["dataset"]
    _, record = save_model(spread_model("GMF", data.num_users, data.num_items),
                           tmp_path / "runs", "GMF", toy)
    (tmp_path / "out").mkdir()
    argv = ["--record", record, "--dest", str(tmp_path / "out" / "model")]
    env = {**os.environ, "PYTHONPATH": REPO}
    killed = subprocess.run([sys.executable, "-c", KILLED_EXPORT, *argv], capture_output=True,
                            text=True, timeout=300, env=env, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr[-2000:]
    [left] = os.listdir(tmp_path / "out")
    assert re.fullmatch(r"\.model\.\d+\.export", left)
    assert os.listdir(tmp_path / "out" / left) == ["model.keras"]
    again = subprocess.run([sys.executable, os.path.join(REPO, "bin", "export"), *argv],
                           capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert os.listdir(tmp_path / "out") == ["model"]
    assert sorted(os.listdir(tmp_path / "out" / "model")) == ["config.json", "model.keras",
                                                              "saved_model"]
