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
    with pytest.raises(ValueError, match="^lr must be a positive finite number"):
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


# ------------------------------------------------- arguments, when given


@pytest.mark.parametrize("arguments,error,message", [
    ({"epochs": "2"}, TypeError, "epochs must be an integer, got '2'"),
    ({"epochs": 1.5}, TypeError, "epochs must be an integer, got 1.5"),
    ({"lr": "0.01"}, TypeError, "lr must be a number, got '0.01'"),
    ({"lr": float("inf")}, ValueError, "lr must be a finite number, got inf"),
    ({"lr": 0.0}, ValueError, "^lr must be a positive finite number, got 0.0"),
    ({"seed": -1}, ValueError, "seed must be an integer >= 0, got -1"),
    ({"seed": 1.0}, TypeError, "seed must be an integer, got 1.0"),
    ({"layers": [63, 32]}, ValueError, "^layers\\[0\\] must be even, got 63"),
    ({"layers": "64,32"}, TypeError, "layers must be a list of integers, got '64,32'"),
    ({"device": "cuda"}, ValueError, "device must be auto, cpu or gpu:N, got 'cuda'"),
    ({"num_neg": True}, TypeError, "num_neg must be an integer, got True"),
    ({"reg_layers": [0, "x"]}, TypeError, "reg_layers\\[1\\] must be a number, got 'x'"),
    ({"learner": "adamw"}, ValueError, "learner must be one of"),
    ({"model": "SVD"}, ValueError, "model must be one of GMF, MLP, NeuMF, got 'SVD'"),
])
def test_constructor_arguments_are_checked_when_given(arguments, error, message):
    with pytest.raises(error, match=message):
        ncf_tf.Recommender(**{"model": "NeuMF", **arguments})


def test_names_in_any_case():
    rec = ncf_tf.Recommender("neumf", learner="Adam")
    assert rec.config.model == "NeuMF" and rec.config.learner == "adam"
    assert ncf_tf.Recommender("gmf", epochs=3).config.epochs == 3


def test_fit_arguments_are_checked_before_training(toy_files, tmp_path):
    train, test = toy_files["frames"]
    lines = []
    rec = ncf_tf.Recommender("GMF", num_factors=4)
    (tmp_path / "file").write_text("mine\n")
    cases = [
        (dict(epochs="2"), TypeError, "epochs must be an integer, got '2'"),
        (dict(epochs=-1), ValueError, "epochs must be an integer >= 0, got -1"),
        (dict(progress="yes"), TypeError, "progress must be True or False"),
        (dict(item_col="user"), ValueError, "user_col and item_col are both 'user'"),
        (dict(results_dir=str(tmp_path / "file")), ValueError,
         f"results_dir {tmp_path / 'file'} is a file, not a folder"),
        (dict(results_dir=str(tmp_path / "file" / "runs")), ValueError,
         "results_dir .* is inside .*file, which is a file"),
        (dict(timestamp_col="nope"), ValueError, "df: no column 'nope' \\(timestamp_col\\)"),
        (dict(warm_start=True), ValueError, "fit\\(warm_start=True\\): the Recommender is "
                                            "not fitted"),
    ]
    for arguments, error, message in cases:
        with pytest.raises(error, match=message):
            rec.fit(train, test_df=test, log=lines.append, **arguments)
    with pytest.raises(ValueError, match="model_dir .*file is a file"):
        ncf_tf.Recommender("GMF", model_dir=str(tmp_path / "file")).fit(
            train, results_dir=str(tmp_path / "runs"), log=lines.append)
    assert lines == [] and rec.model is None
    assert (tmp_path / "file").read_text() == "mine\n" and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("change,message", [
    (lambda df: df.assign(user=df["user"].astype(object).where(df.index != 3, None)),
     "df: column 'user' has a missing user id \\(NaN\\) at row 3"),
    (lambda df: df.assign(item=[[i] if n == 5 else i for n, i in enumerate(df["item"])]),
     "df: column 'item' holds a list at row 5; each item id must be one value"),
])
def test_missing_and_list_valued_ids_are_refused(toy_files, change, message):
    train, _ = toy_files["frames"]
    with pytest.raises(ValueError, match=message):
        ncf_tf.Recommender("GMF").fit(change(train), epochs=1, log=None)


def test_date_strings_in_timestamp_col_are_times(wide_files):
    train, test = wide_files["frames"]
    base = pd.Timestamp("2020-01-01")
    dated = train.assign(time=(base + pd.to_timedelta(train["time"], unit="s")))
    as_text = dated.assign(time=dated["time"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    fits = [ncf_tf.Recommender("GMF", num_factors=4).fit(
        frame, epochs=1, timestamp_col="time", validation="latest", log=None).record
        for frame in (train, dated, as_text)]
    assert per_epoch(fits[0]) == per_epoch(fits[1]) == per_epoch(fits[2])
    # the latest by time, not the first row: shuffled rows split the same
    shuffled = as_text.sample(frac=1, random_state=0)
    again = ncf_tf.Recommender("GMF", num_factors=4).fit(
        shuffled, epochs=1, timestamp_col="time", validation="latest", log=None).record
    assert again["epochs"][0]["hr"] == fits[0]["epochs"][0]["hr"]
    bad = as_text.assign(time=as_text["time"].where(as_text.index != 7, "soon"))
    with pytest.raises(ValueError, match="column 'time' \\(timestamp_col\\): 'soon' at row 7 "
                                         "is neither a number nor a date"):
        ncf_tf.Recommender("GMF").fit(bad, timestamp_col="time", validation="latest", log=None)


def test_no_tensorflow_start_up_lines():
    code = ("import ncf_tf, pandas as pd\n"
            "df = pd.DataFrame({'user': [0, 0, 1, 1], 'item': [0, 1, 1, 2]})\n"
            "for seed in (0, 1):   # a second model traces its functions again\n"
            "    rec = ncf_tf.Recommender('GMF', num_factors=2, num_neg=1, seed=seed)\n"
            "    rec.fit(df, epochs=1, log=None).recommend([0, 1], k=1)\n")
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == "" and out.stdout == ""


# ------------------------------------------------------- the methods


@pytest.fixture(scope="module")
def string_ids(wide_files):
    """The wide frames with string ids, split by leave_latest_out, and a NeuMF on them."""
    train, _ = wide_files["frames"]
    frame = train.assign(user="u" + train["user"].astype(str),
                         item="i" + train["item"].astype(str))
    fit_on, test = ncf_tf.leave_latest_out(frame, "user", "item", "time", num_negatives=50,
                                           seed=0)
    rec = ncf_tf.Recommender("NeuMF", num_factors=4, layers=[8, 4], epochs=2, seed=0)
    rec.fit(fit_on, test_df=test, log=None)
    return {"frame": frame, "train": fit_on, "test": test, "rec": rec}


def test_leave_latest_out_holds_out_each_users_latest(string_ids):
    frame, train, test = string_ids["frame"], string_ids["train"], string_ids["test"]
    latest = frame.loc[frame.groupby("user")["time"].idxmax()]
    assert sorted(test["user"]) == sorted(frame["user"].unique()) == test["user"].tolist()
    # ties are broken by the earlier row; the generated times have none at the top
    assert (test.set_index("user")["time"] == latest.set_index("user")["time"]).all()
    assert len(train) + len(test) == len(frame)
    assert not set(zip(train["user"], train["item"])) & set(zip(test["user"], test["item"]))
    seen = frame.groupby("user")["item"].apply(set)
    for user, negatives in zip(test["user"], test["negatives"]):
        assert len(set(negatives)) == 50 and not set(negatives) & seen[user]
    again = ncf_tf.leave_latest_out(frame, "user", "item", "time", num_negatives=50, seed=0)
    pd.testing.assert_frame_equal(again[1], test)
    random_train, random_test = ncf_tf.leave_random_out(frame, "user", "item",
                                                         num_negatives=50, seed=1)
    assert len(random_test) == len(test) and len(random_train) == len(train)
    assert random_test["item"].tolist() != test["item"].tolist()
    with pytest.raises(ValueError, match="num_negatives=500: user 'u.*' has only"):
        ncf_tf.leave_latest_out(frame, "user", "item", "time", num_negatives=500)
    with pytest.raises(TypeError, match="seed must be an integer, got '0'"):
        ncf_tf.leave_random_out(frame, "user", "item", seed="0")


def test_history_one_row_per_epoch(string_ids, wide_files):
    rec = string_ids["rec"]
    history = rec.history
    assert list(history.columns) == ["loss", "test_hr", "test_ndcg", "seconds"]
    assert history.index.tolist() == [0, 1] and history.index.name == "epoch"
    assert history["test_hr"].tolist() == [e["hr"] for e in rec.record["epochs"]]
    assert (history["seconds"] > 0).all()
    train, test = wide_files["frames"]
    picked = ncf_tf.Recommender("GMF", num_factors=4).fit(
        train, epochs=2, timestamp_col="time", validation="latest", test_df=test, log=None)
    assert list(picked.history.columns) == ["loss", "validation_hr", "validation_ndcg",
                                            "test_hr", "test_ndcg", "seconds"]
    alone = ncf_tf.Recommender("GMF", num_factors=4).fit(train, epochs=2, progress=True,
                                                          log=None)
    assert alone.record["config"]["progress"] is True
    assert list(alone.history.columns) == ["loss", "seconds"]
    assert alone.history["loss"].tolist() == [e["loss"] for e in alone.record["epochs"]]


def test_factors_by_raw_id(string_ids):
    rec = string_ids["rec"]
    users, items = rec.user_factors, rec.item_factors
    assert users.index.name == "user" and items.index.name == "item"
    assert list(users.columns) == ["gmf_0", "gmf_1", "gmf_2", "gmf_3",
                                   "mlp_0", "mlp_1", "mlp_2", "mlp_3"]
    assert users.index.tolist() == sorted(string_ids["train"]["user"].unique())
    gmf = rec.model.get_layer("mf_embedding_item").get_weights()[0]
    row = rec.items.encode(["i7"], "items")[0]
    np.testing.assert_array_equal(items.loc["i7", ["gmf_0", "gmf_1", "gmf_2", "gmf_3"]],
                                  gmf[row])


def test_similar_items_and_users_are_cosine_without_the_query(string_ids):
    rec = string_ids["rec"]
    items = rec.item_factors
    similar = rec.similar_items(["i3", "i7"], k=4)
    assert list(similar.columns) == ["item", "rank", "similar_item", "similarity"]
    assert similar["item"].tolist() == ["i3"] * 4 + ["i7"] * 4
    vectors = items.to_numpy(np.float64)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = pd.Series(unit @ unit[items.index.get_loc("i3")], index=items.index).drop("i3")
    best = cosine.sort_values(ascending=False, kind="stable")[:4]
    first = similar[similar["item"] == "i3"]
    assert first["similar_item"].tolist() == best.index.tolist()
    np.testing.assert_allclose(first["similarity"], best, atol=1e-6)
    assert "i7" not in similar.loc[similar["item"] == "i7", "similar_item"].tolist()
    users = rec.similar_users("u0", k=3)
    assert list(users.columns) == ["user", "rank", "similar_user", "similarity"]
    assert "u0" not in users["similar_user"].tolist() and len(users) == 3
    with pytest.raises(ValueError, match="k must be an integer in 1..39 \\(the number of "
                                         "other users\\), got 40"):
        rec.similar_users("u0", k=40)
    with pytest.raises(ValueError, match="items: unknown item id 'nope'"):
        rec.similar_items(["nope"])


def test_recommend_among_candidates_and_probabilities(string_ids):
    rec, train = string_ids["rec"], string_ids["train"]
    seen = set(train.loc[train["user"] == "u0", "item"])
    candidates = ["i1", "i2", "i3", "i4", "i5", "i6"]
    top = rec.recommend(["u0", "u1"], k=3, items=candidates)
    assert set(top["item"]) <= set(candidates)
    assert not set(top.loc[top["user"] == "u0", "item"]) & seen
    allowed = [i for i in candidates if i not in seen]
    scores = rec.score("u0", allowed)
    want = [allowed[n] for n in np.argsort(-scores, kind="stable")[:3]]
    assert top.loc[top["user"] == "u0", "item"].tolist() == want
    everything = rec.recommend("u0", k=6, items=candidates, exclude_seen=False)
    assert sorted(everything["item"]) == sorted(candidates)
    logits = rec.score(["u0", "u1"], ["i1", "i2"])
    np.testing.assert_allclose(rec.score(["u0", "u1"], ["i1", "i2"], probability=True),
                               1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-6)


def test_warm_start_continues_from_the_current_weights(string_ids):
    train = string_ids["train"]
    pairs = (["u0", "u1", "u2"], ["i1", "i2", "i3"])
    # nothing held out: the trained epoch is kept (not the initial weights)
    rec = ncf_tf.Recommender("GMF", num_factors=4, epochs=1).fit(train, log=None)
    before, first = rec.score(*pairs), rec.run_name
    rec.fit(train, warm_start=True, epochs=0, log=None)   # nothing trained: the same model
    np.testing.assert_array_equal(rec.score(*pairs), before)
    assert rec.record["start_from"]["warm_start"] == first
    assert rec.record["config"]["weights"] == f"warm start from {first}"
    fresh = ncf_tf.Recommender("GMF", num_factors=4, epochs=0).fit(train, log=None)
    assert not np.array_equal(fresh.score(*pairs), before)
    # the same seed and stream from other weights: another loss
    again = ncf_tf.Recommender("GMF", num_factors=4, epochs=1).fit(train, log=None)
    rec.fit(train, warm_start=True, log=None)
    assert rec.record["epochs"][0]["loss"] != again.record["epochs"][0]["loss"]
    with pytest.raises(ValueError, match="warm_start: df .* has 39 users"):
        rec.fit(train[train["user"] != "u0"], warm_start=True, log=None)


RELOAD_EXPORT = r"""
import json, sys
import numpy as np
import tensorflow as tf
served = tf.saved_model.load(sys.argv[1] + "/saved_model")
users = json.loads(sys.argv[2])
kind = tf.string if isinstance(users[0], str) else tf.int64
top = served.signatures["top_k"](user=tf.constant(users, kind))
out = {"items": [[v.decode() if isinstance(v, bytes) else int(v) for v in row]
                 for row in top["items"].numpy().tolist()],
       "scores": top["scores"].numpy().tolist()}
if kind == tf.int64:
    out["int32"] = served.top_k(tf.constant(users, tf.int32))["items"].numpy().tolist()
    out["numpy"] = served.top_k(np.array(users))["items"].numpy().tolist()
try:
    served.top_k(tf.constant(["nobody"] if kind == tf.string else [10 ** 12], kind))
except tf.errors.InvalidArgumentError as e:
    out["unknown"] = e.message
assert not any(m.startswith("ncf_tf") for m in sys.modules), "ncf_tf was imported"
print(json.dumps(out))
"""


def reload_export(folder, users) -> dict:
    done = subprocess.run([sys.executable, "-c", RELOAD_EXPORT, str(folder), json.dumps(users)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_export_answers_raw_ids_in_plain_tensorflow(string_ids, fitted, tmp_path):
    rec = string_ids["rec"]
    config = rec.export(tmp_path / "strings", k=4)
    assert config["ids"]["user"] == "raw user ids: strings"
    assert sorted(os.listdir(tmp_path / "strings")) == ["config.json", "model.keras",
                                                        "saved_model"]
    got = reload_export(tmp_path / "strings", ["u3", "u0"])
    want = rec.recommend(["u3", "u0"], k=4)
    assert [i for row in got["items"] for i in row] == want["item"].tolist()
    np.testing.assert_allclose(np.ravel(got["scores"]), want["score"], atol=1e-5)
    assert "unknown user id(s)" in got["unknown"] and "nobody" in got["unknown"]
    # integer ids: int64 in the signature, int32 and numpy through the function
    fitted.export(tmp_path / "integers", k=3)
    got = reload_export(tmp_path / "integers", [5, 0])
    want = fitted.recommend([5, 0], k=3)
    assert [i for row in got["items"] for i in row] == want["item"].tolist()
    assert got["int32"] == got["numpy"] == got["items"]
    assert "1000000000000" in got["unknown"]
    with pytest.raises(ValueError, match="exists; refusing to replace it"):
        fitted.export(tmp_path / "integers")


def test_export_error_names_the_path_argument(fitted, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"^path .*file: exists and is not a folder$"):
        fitted.export(tmp_path / "file")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match=r"^path .*folder: exists; refusing to replace it "
                                         r"\(overwrite=True\)$"):
        fitted.export(str(tmp_path / "folder"))


def test_damaged_saved_folder_names_the_file(fitted, tmp_path):
    folder = tmp_path / "saved"
    fitted.save(str(folder))
    for name, damage, message in [
        ("model.weights.h5", b"", "model.weights.h5 is empty \\(an interrupted save\\?\\); "
                                  "save the Recommender again, or remove"),
        ("train.npz", b"PK\x03\x04 truncated", "train.npz is damaged \\(.*\\); save the "
                                               "Recommender again"),
        ("record.json", b'{"kind": ', "record.json is damaged"),
        ("recommender.json", b'{"kind": "ncf_tf.Recommender", "format": 1}',
         "recommender.json is damaged"),
    ]:
        fitted.save(str(folder), overwrite=True)
        (folder / name).write_bytes(damage)
        with pytest.raises(ValueError, match=f"^load: .*{message}") as caught:
            ncf_tf.Recommender.load(str(folder))
        assert "\n" not in str(caught.value) and "allow_pickle" not in str(caught.value)
    fitted.save(str(folder), overwrite=True)
    os.remove(folder / "train.npz")
    with pytest.raises(ValueError, match="train.npz is missing; the folder .* is incomplete"):
        ncf_tf.Recommender.load(str(folder))


def test_load_trained_reads_a_saved_folder_and_names_its_arguments(fitted, tmp_path):
    from ncf_tf.api.recommender import load_trained
    folder = str(tmp_path / "saved")
    fitted.save(folder)
    found = load_trained(saved=folder, log=lambda line: None)
    assert found.source == {"saved": folder, "run_name": fitted.run_name}
    assert found.spec.model == fitted.config.model
    np.testing.assert_array_equal(found.user_ids, fitted.users.originals)
    for arguments, message in [
        ({"saved": folder, "path": "Data/"}, "saved='.*' holds the model, its sizes and its "
                                             "data; drop `path`"),
        ({}, "no model given: pass record='RUN.json', weights_file="),
        ({"weights_file": "x.weights.h5"}, "model \\(GMF, MLP or NeuMF\\) is required with "
                                           "`weights_file` when no `record` is given"),
        ({"keras_file": "x.keras", "layers": [8, 4]}, "keras_file carries its own "
                                                      "architecture and weights; drop `layers`")]:
        with pytest.raises(ValueError, match=f"^{message}"):
            load_trained(**arguments)
