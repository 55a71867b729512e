"""The Python API, ncf_tf.Recommender: one code path with bin/train_*, and its contract."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import ncf_tf
from conftest import REPO, write_dataset
from ncf_tf.cli import train as train_cli

COLUMNS = ["user", "item", "rating", "time"]
ALL_METRICS = ["hr", "ndcg", "map", "precision", "recall", "mrr", "auc"]


def read_frames(prefix: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The authors' three files as a training and a test DataFrame (negatives as lists)."""
    train = pd.read_csv(f"{prefix}.train.rating", sep="\t", names=COLUMNS)
    test = pd.read_csv(f"{prefix}.test.rating", sep="\t", names=COLUMNS)
    negatives = pd.read_csv(f"{prefix}.test.negative", sep="\t", header=None)
    test["negatives"] = negatives.iloc[:, 1:].values.tolist()
    return train, test


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api") / "data"
    info = write_dataset(folder)
    info["frames"] = read_frames(os.path.join(folder, info["name"]))
    return info


@pytest.fixture(scope="module")
def wide_files(tmp_path_factory):
    """Enough items for the validation split's 99 negatives per user."""
    folder = tmp_path_factory.mktemp("api_wide") / "data"
    info = write_dataset(folder, num_items=200, density=0.2)
    info["frames"] = read_frames(os.path.join(folder, info["name"]))
    return info


@pytest.fixture(scope="module")
def fitted(toy_files):
    """A GMF fitted on the toy frames with the test set (best epoch on it)."""
    train, test = toy_files["frames"]
    return ncf_tf.Recommender("GMF", num_factors=4, seed=0).fit(
        train, epochs=3, test_df=test, log=None)


def script_record(toy_files, tmp_path, model: str, *flags: str) -> dict:
    """bin/train_<model> on the toy files, in-process; its run record."""
    out = str(tmp_path / "script")
    argv = [f"train_{model.lower()}", "--path", toy_files["folder"], "--dataset",
            toy_files["name"], "--results_dir", out, "--model_dir", out, "--out", "0", *flags]
    assert train_cli.main(model, argv) == 0
    [name] = [f for f in os.listdir(out) if f.endswith(".json")]
    with open(os.path.join(out, name)) as f:
        return json.load(f)


def per_epoch(record: dict) -> list:
    return [(e["epoch"], e["loss"], e["hr"], e["ndcg"], e["monitor"]) for e in record["epochs"]]


# ---------------------------------------------------------------- one path


def test_import_ncf_tf_stays_light():
    code = ("import sys, ncf_tf; assert 'keras' not in sys.modules, 'keras imported'; "
            "R = ncf_tf.Recommender; assert 'keras' in sys.modules; print(R.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "Recommender"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        ncf_tf.Nope


@pytest.mark.parametrize("model,settings,flags", [
    ("GMF", {"num_factors": 4}, ["--num_factors", "4"]),
    ("NeuMF", {"num_factors": 4, "layers": [16, 8], "reg_layers": [0, 0], "num_neg": 2},
     ["--num_factors", "4", "--layers", "16,8", "--reg_layers", "0,0", "--num_neg", "2"]),
])
def test_same_epochs_as_the_script(toy_files, tmp_path, model, settings, flags):
    # One path, not two: the same data as files (bin/train_*) and as DataFrames
    # (the API) give the same loss, HR and NDCG at every epoch, exactly.
    script = script_record(toy_files, tmp_path, model, "--epochs", "3", "--seed", "3", *flags)
    train, test = toy_files["frames"]
    rec = ncf_tf.Recommender(model, seed=3, **settings).fit(train, epochs=3, test_df=test,
                                                            log=None)
    assert per_epoch(rec.record) == per_epoch(script)
    assert rec.record["init"]["hr"] == script["init"]["hr"]
    assert (rec.record["best_epoch"], rec.record["best"]) == (script["best_epoch"],
                                                              script["best"])
    assert rec.record["config"]["batch_size"] == script["config"]["batch_size"]
    assert rec.record["data"]["summary"] == script["data"]["summary"]
    # and evaluate() on the kept epoch reports what training reported for it
    assert rec.evaluate(test, k=10)["hr"] == script["best"]["hr"]


def test_validation_latest_is_the_scripts_selection_validation(wide_files, tmp_path):
    script = script_record(wide_files, tmp_path, "MLP", "--epochs", "2", "--layers", "16,8",
                           "--reg_layers", "0,0", "--selection", "validation")
    train, test = wide_files["frames"]
    rec = ncf_tf.Recommender("MLP", layers=[16, 8]).fit(
        train, epochs=2, timestamp_col="time", validation="latest", test_df=test, log=None)
    assert per_epoch(rec.record) == per_epoch(script)   # validation HR, test as monitor
    assert rec.record["best_validation"] == script["best_validation"]
    assert rec.record["selection"] == "validation"
    # without a test set: picked and reported on the validation split alone
    alone = ncf_tf.Recommender("MLP", layers=[16, 8]).fit(
        train, epochs=2, timestamp_col="time", validation="latest", log=None)
    assert [e["monitor"] for e in alone.record["epochs"]] == [{}, {}]
    assert alone.record["selection"] == "validation"
    assert alone.record["best"]["hr"] == alone.record["best_validation"]["hr"]


def test_pretrained_neumf_is_the_scripts(toy_files, tmp_path):
    # NeuMF from GMF + MLP Recommenders == bin/train_neumf from their weight files.
    train, test = toy_files["frames"]
    gmf = ncf_tf.Recommender("GMF", num_factors=4).fit(train, epochs=1, test_df=test, log=None)
    mlp = ncf_tf.Recommender("MLP", layers=[16, 8]).fit(train, epochs=1, test_df=test, log=None)
    gmf.save(str(tmp_path / "gmf"))
    mlp.save(str(tmp_path / "mlp"))
    rec = ncf_tf.Recommender("NeuMF", num_factors=4, layers=[16, 8], pretrain=(gmf, mlp),
                             alpha=0.5).fit(train, epochs=2, test_df=test, log=None)
    script = script_record(
        toy_files, tmp_path, "NeuMF", "--epochs", "2", "--num_factors", "4", "--layers", "16,8",
        "--reg_layers", "0,0", "--mf_pretrain", str(tmp_path / "gmf" / "model.weights.h5"),
        "--mlp_pretrain", str(tmp_path / "mlp" / "model.weights.h5"))
    assert rec.record["learner"] == script["learner"] == "sgd"   # paper, sec. 3.4.1
    assert rec.record["training_stream"] == script["training_stream"]
    assert rec.record["init"]["hr"] == script["init"]["hr"]
    assert per_epoch(rec.record) == per_epoch(script)


# ------------------------------------------------------------- the contract


def test_round_trip_with_string_ids(toy_files, tmp_path):
    train, test = toy_files["frames"]
    train = train.assign(user="u" + train["user"].astype(str), item="i" + train["item"].astype(str))
    test = test.assign(user="u" + test["user"].astype(str), item="i" + test["item"].astype(str),
                       negatives=[[f"i{n}" for n in row] for row in test["negatives"]])
    rec = ncf_tf.Recommender("NeuMF", num_factors=4, layers=[16, 8], seed=1).fit(
        train, epochs=2, test_df=test, log=None)
    users, items = ["u0", "u1", "u7"], ["i3", "i40", "i5"]
    scores = rec.score(users, items)
    assert scores.shape == (3,) and scores.dtype == np.float32
    top = rec.recommend(["u0", "u1"], k=5)
    assert list(top.columns) == ["user", "rank", "item", "score"]
    assert top["user"].tolist() == ["u0"] * 5 + ["u1"] * 5
    assert top["rank"].tolist() == [1, 2, 3, 4, 5] * 2
    for user, group in top.groupby("user"):   # training items are never recommended
        assert not set(group["item"]) & set(train.loc[train["user"] == user, "item"])
        assert (np.diff(group["score"].to_numpy()) <= 0).all()
    assert rec.score("u0", top["item"].iloc[0])[0] == pytest.approx(top["score"].iloc[0],
                                                                     abs=1e-6)
    metrics = rec.evaluate(test, k=5, metrics=ALL_METRICS)
    assert list(metrics) == ALL_METRICS

    rec.save(str(tmp_path / "saved"))
    same = ncf_tf.Recommender.load(str(tmp_path / "saved"))
    np.testing.assert_array_equal(same.score(users, items), scores)
    pd.testing.assert_frame_equal(same.recommend(["u0", "u1"], k=5), top)
    assert same.evaluate(test, k=5, metrics=ALL_METRICS) == metrics
    assert same.evaluate(test, k=5, negatives="all") == rec.evaluate(test, k=5, negatives="all")
    assert same.record == json.loads(json.dumps(rec.record))
    assert repr(same) == repr(rec)
    with pytest.raises(ValueError, match="already holds a saved Recommender"):
        rec.save(str(tmp_path / "saved"))


def test_integer_ids_keep_their_type_and_numbers(fitted, toy_files, tmp_path):
    assert fitted.users.originals.dtype == np.int64
    np.testing.assert_array_equal(fitted.items.originals, np.arange(toy_files["num_items"]))
    fitted.save(str(tmp_path / "saved"))
    same = ncf_tf.Recommender.load(str(tmp_path / "saved"))
    assert same.items.originals.dtype == np.int64
    top = same.recommend(3, k=2)
    assert top["user"].tolist() == [3, 3] and isinstance(top["item"].iloc[0], (int, np.integer))


def test_evaluate(fitted, toy_files):
    train, test = toy_files["frames"]
    listed = fitted.evaluate(test, k=10, metrics=ALL_METRICS)
    assert listed["hr"] == fitted.record["best"]["hr"]
    assert listed["recall"] == listed["hr"]
    assert listed["precision"] == pytest.approx(listed["hr"] / 10)
    # without the column, a seeded sample: the same at every call (stream (seed, 3))
    sampled = fitted.evaluate(test.drop(columns="negatives"), negatives=20)
    assert sampled == fitted.evaluate(test, negatives=20)
    assert set(sampled) == {"hr", "ndcg"}
    with pytest.raises(ValueError, match="num_negatives 99: user 36 has only 40 of 60 items"):
        fitted.evaluate(test.drop(columns="negatives"))   # 99 by default
    # full ranking: every item but the training ones is a candidate, so no
    # better than against the sampled 20
    full = fitted.evaluate(test, k=10, metrics=["hr", "auc"], negatives="all")
    assert 0 <= full["hr"] <= 1 and 0 <= full["auc"] <= 1
    with pytest.raises(ValueError, match="unknown metric 'hit'"):
        fitted.evaluate(test, metrics=["hit"])


def test_no_held_out_data_trains_every_epoch_and_keeps_the_last(toy_files, tmp_path):
    train, test = toy_files["frames"]
    kept = ncf_tf.Recommender("GMF", num_factors=4).fit(train, epochs=2, log=None)
    assert kept.record["selection"] == "last" and kept.record["best_epoch"] == 1
    assert [e["hr"] for e in kept.record["epochs"]] == [None, None]
    # evaluation does not touch the training stream: same losses as a run with a test set
    tested = ncf_tf.Recommender("GMF", num_factors=4).fit(train, epochs=2, test_df=test,
                                                          log=None)
    assert [e["loss"] for e in kept.record["epochs"]] == [e["loss"] for e in
                                                         tested.record["epochs"]]
    assert kept.evaluate(test)["hr"] == tested.record["epochs"][1]["hr"]


def test_results_dir_writes_the_record_and_none_writes_nothing(toy_files, tmp_path,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, test = toy_files["frames"]
    ncf_tf.Recommender("GMF", num_factors=4).fit(train, epochs=1, log=None)
    assert os.listdir(tmp_path) == []
    rec = ncf_tf.Recommender("GMF", num_factors=4).fit(
        train, epochs=1, test_df=test, name="toy", results_dir=str(tmp_path / "runs"), log=None)
    assert sorted(os.listdir(tmp_path / "runs")) == ["checkpoints", "toy_GMF_4_e1_s0.json",
                                                     "toy_GMF_4_e1_s0.weights.h5"]
    assert os.listdir(tmp_path / "runs" / "checkpoints") == []   # removed once finished
    with open(tmp_path / "runs" / "toy_GMF_4_e1_s0.json") as f:
        record = json.load(f)
    assert record["status"] == "finished" and record["data"]["dataframe"]["rows"] == len(train)
    assert rec.run_name == "toy_GMF_4_e1_s0"


def test_fold_in(fitted, toy_files):
    train, _ = toy_files["frames"]
    items = train.loc[train["user"] == 0, "item"].tolist()
    top = fitted.fold_in(items, k=5)
    assert list(top.columns) == ["rank", "item", "score"] and len(top) == 5
    assert not set(top["item"]) & set(items)
    assert fitted.fold_in(items, k=5).equals(top)   # seeded
    with pytest.raises(ValueError, match="items: unknown item id 999"):
        fitted.fold_in([1, 999])
    with pytest.raises(ValueError, match="no item ids"):
        fitted.fold_in([])


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("change,message", [
    (lambda df: df.iloc[:0], "df: the DataFrame is empty"),
    (lambda df: df.drop(columns="item"), "df: no column 'item' \\(the item column\\)"),
    (lambda df: df.assign(user=df["user"].astype(float).where(df.index != 4)),
     "df: column 'user' has a missing user id \\(NaN\\) at row 4"),
    (lambda df: df.assign(item=df["item"].astype(object).where(df.index != 2, "x")),
     "column 'item': item ids of types that do not sort together \\(int, str\\)"),
    (lambda df: df["user"], "df: expected a pandas DataFrame, got Series"),
])
def test_bad_training_frames(toy_files, change, message):
    train, _ = toy_files["frames"]
    with pytest.raises(ValueError, match=message):
        ncf_tf.Recommender("GMF").fit(change(train), epochs=1, log=None)


def test_bad_arguments(fitted, toy_files):
    train, test = toy_files["frames"]
    with pytest.raises(ValueError, match="users: unknown user id 4000"):
        fitted.score([0, 4000], [1, 2])
    with pytest.raises(ValueError, match="items: unknown item id 'a'"):
        fitted.score([0], ["a"])
    with pytest.raises(ValueError, match="users: missing id \\(NaN\\) at position 1"):
        fitted.recommend([0, np.nan])
    with pytest.raises(ValueError, match="k must be an integer in 1..60"):
        fitted.recommend([0], k=61)
    with pytest.raises(ValueError, match="test_df: column 'user': unknown user id 77"):
        fitted.evaluate(test.assign(user=77))
    with pytest.raises(ValueError, match="test_df: no column 'item'"):
        fitted.evaluate(test.drop(columns="item"))
    with pytest.raises(ValueError, match="unknown setting 'learning_rate'"):
        ncf_tf.Recommender("GMF", learning_rate=0.1)
    with pytest.raises(ValueError, match="--lr must be a positive number"):
        ncf_tf.Recommender("GMF", lr=-1)
    with pytest.raises(ValueError, match="model must be one of"):
        ncf_tf.Recommender("SVD")
    with pytest.raises(ValueError, match="validation must be None, 'latest' or 'random'"):
        ncf_tf.Recommender("GMF").fit(train, validation="last", log=None)
    with pytest.raises(ValueError, match="score: the Recommender is not fitted"):
        ncf_tf.Recommender("GMF").score([0], [1])
    with pytest.raises(ValueError, match="test_df: column 'user': unknown user id 99"):
        ncf_tf.Recommender("GMF").fit(train, test_df=test.assign(user=99), log=None)
    with pytest.raises(ValueError, match="pretrain: the MLP has layers"):
        mlp = ncf_tf.Recommender("MLP", layers=[8]).fit(train, epochs=0, log=None)
        ncf_tf.Recommender("NeuMF", num_factors=8, layers=[16, 8],
                           pretrain=(ncf_tf.Recommender("GMF").fit(train, epochs=0, log=None),
                                     mlp)).fit(train, epochs=0, log=None)


# ------------------------------------------------------------- README


def readme_snippet() -> str | None:
    """The ```python block of README.md's "## In Python" section, or None."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    section = re.search(r"^## In Python\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not section:
        return None
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    return block.group(1) if block else None


def test_readme_in_python_runs(toy_files, tmp_path, monkeypatch):
    snippet = readme_snippet()
    if snippet is None:
        pytest.skip('README.md has no "## In Python" section with a ```python block yet')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NCF_TF_DATA", os.path.join(toy_files["folder"], toy_files["name"]))
    monkeypatch.setenv("NCF_TF_EPOCHS", "1")
    exec(compile(snippet, "README.md (In Python)", "exec"), {"__name__": "readme"})
