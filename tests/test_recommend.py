"""Top-K over the whole catalogue (ncf_tf.serve.recommend) and bin/recommend.

Top-K is checked against every pair scored one by one in numpy from
equations 9, 10 and 12; then exclusion of training items, ties,
id maps, output files and every bad input of the command line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import REPO, write_dataset
from ncf_tf.core import files
from ncf_tf.serve import recommend
from ncf_tf.cli import recommend as recommend_cli
from ncf_tf.models import trained
from ncf_tf.data.loader import load_dataset
from trained_models import (SPECS, brute_force_top_k, save_model, spread_model,
                            write_id_maps)


@pytest.fixture
def toy(tmp_path):
    info = write_dataset(tmp_path / "data")
    info["dataset"] = load_dataset(info["folder"], info["name"])
    return info


@pytest.mark.parametrize("kind", list(SPECS))
def test_top_k_matches_brute_force(toy, kind):
    data = toy["dataset"]
    model = spread_model(kind, data.num_users, data.num_items, seed=1)
    users = np.arange(data.num_users)
    items, scores, masked = brute_force_top_k(model, users, data.num_items, data.train, 5)
    # A small memory bound forces several chunks, the last one partial.
    got = recommend.top_k(model, users, data.num_items, data.train, 5, max_floats=8 * 60 * 16)
    # float32 and float64 may order near-ties differently (and an MLP whose
    # ReLUs are all off gives exact ties): compare the scores, and check each
    # returned item has the score it is returned with.
    np.testing.assert_allclose(got.scores, scores, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.take_along_axis(masked, got.items, axis=1), got.scores,
                               rtol=1e-5, atol=1e-4)
    clear = np.abs(np.diff(-np.sort(-masked, axis=1)[:, :6], axis=1)) > 1e-4
    unambiguous = clear[:, :5] & np.concatenate([np.ones((len(users), 1), bool), clear[:, :4]], 1)
    assert unambiguous.mean() > 0.8
    np.testing.assert_array_equal(got.items[unambiguous], items[unambiguous])
    assert got.users.tolist() == users.tolist()


def test_top_k_is_batch_independent_and_same_through_a_score_fn(toy):
    data = toy["dataset"]
    model = spread_model("NeuMF", data.num_users, data.num_items)
    everyone = recommend.top_k(model, np.arange(data.num_users), data.num_items, data.train, 4)
    alone = recommend.top_k(model, [17], data.num_items, data.train, 4)
    np.testing.assert_array_equal(alone.items[0], everyone.items[17])
    logits = trained.logits_model(model)

    def score_fn(users, items):
        return np.asarray(logits.predict_on_batch([users[:, None], items[:, None]]))[:, 0]

    pairs = recommend.top_k(score_fn, np.arange(data.num_users), data.num_items, data.train, 4,
                            max_floats=500)
    np.testing.assert_array_equal(pairs.items, everyone.items)
    np.testing.assert_allclose(pairs.scores, everyone.scores, rtol=1e-5, atol=1e-4)


def test_training_items_are_excluded_unless_asked(toy):
    data = toy["dataset"]
    model = spread_model("GMF", data.num_users, data.num_items)
    users = np.arange(data.num_users)
    excluded = recommend.top_k(model, users, data.num_items, data.train, 10)
    included = recommend.top_k(model, users, data.num_items, None, 10)
    seen = data.train.toarray() > 0
    assert not seen[users[:, None], excluded.items].any()
    # Without exclusion the best items are some user's training items (the
    # model is random, so about half of them for half-dense rows).
    assert seen[users[:, None], included.items].any()
    _, want, _ = brute_force_top_k(model, users, data.num_items, None, 10)
    np.testing.assert_allclose(included.scores, want, rtol=1e-5, atol=1e-4)


def test_ties_go_to_the_lower_item_and_exhausted_users_are_padded():
    model = spread_model("GMF", 3, 6)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])   # every score 0
    exclude = sp.csr_matrix(np.array([[0, 1, 0, 1, 0, 0],
                                      [1, 1, 1, 1, 1, 0],
                                      [1, 1, 1, 1, 1, 1]], np.float32))
    got = recommend.top_k(model, [0, 1, 2], 6, exclude, 3)
    assert got.items.tolist() == [[0, 2, 4], [5, -1, -1], [-1, -1, -1]]
    assert got.scores[0].tolist() == [0, 0, 0] and np.isneginf(got.scores[1, 1:]).all()
    assert got.counts().tolist() == [3, 1, 0]


def test_nan_scores_never_beat_real_ones():
    def score_fn(users, items):
        return np.where(items % 2 == 0, np.nan, items.astype(np.float32))

    got = recommend.top_k(score_fn, [0], 6, None, 4)
    assert got.items[0].tolist() == [5, 3, 1, 0]


@pytest.mark.parametrize("k", [0, 7, -1, 2.5, True])
def test_top_k_rejects_k_out_of_range(k):
    with pytest.raises(recommend.RecommendError, match=r"^k must be an integer in 1\.\.6"):
        recommend.top_k(spread_model("GMF", 2, 6), [0], 6, None, k)


def test_top_k_rejects_users_outside_the_training_matrix():
    with pytest.raises(recommend.RecommendError, match=r"user 5 is not in 0\.\.1"):
        recommend.top_k(spread_model("GMF", 2, 6), [0, 5], 6, sp.csr_matrix((2, 6)), 2)


# ----------------------------------------------------------------------------
# bin/recommend


def saved(toy, tmp_path, kind="NeuMF"):
    data = toy["dataset"]
    model = spread_model(kind, data.num_users, data.num_items, seed=2)
    weight_file, record_file = save_model(model, tmp_path / "runs", kind, toy)
    return model, weight_file, record_file


def run_main(argv, capsys):
    code = recommend_cli.main(["recommend", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv_output(text: str) -> pd.DataFrame:
    return pd.read_csv(__import__("io").StringIO(text), dtype={"user": str, "item": str})


def test_stdout_csv_from_a_run_record(toy, tmp_path, capsys):
    model, _, record = saved(toy, tmp_path)
    code, out, err = run_main(["--record", record, "--users", "3,0,17", "--topk", "4"], capsys)
    assert code == 0, err
    assert "Load data done" in err and "Top-4 of 60 items for 3 users" in err
    table = read_csv_output(out)
    assert table.columns.tolist() == ["user", "rank", "item", "score"]
    assert table["user"].tolist() == ["3"] * 4 + ["0"] * 4 + ["17"] * 4
    assert table["rank"].tolist() == [1, 2, 3, 4] * 3
    data = toy["dataset"]
    items, scores, _ = brute_force_top_k(model, [3, 0, 17], data.num_items, data.train, 4)
    assert table["item"].astype(int).tolist() == items.reshape(-1).tolist()
    np.testing.assert_allclose(table["score"], scores.reshape(-1), atol=2e-6 + 1e-5)


def test_weights_with_flags_all_users_to_json_and_csv(toy, tmp_path, capsys):
    model, weight_file, record = saved(toy, tmp_path, "MLP")
    base = ["--weights", weight_file, "--model", "MLP", "--layers", "16,8,4",
            "--path", toy["folder"], "--dataset", "toy", "--all_users", "--topk", "3"]
    out_json = tmp_path / "top.json"
    code, out, err = run_main([*base, "--output", str(out_json)], capsys)
    assert code == 0, err
    assert f"Wrote {40 * 3} recommendations to {out_json}" in out
    written = json.loads(out_json.read_text())
    assert written["k"] == 3 and written["seen_excluded"] is True
    assert written["model"] == {"model": "MLP", "layers": [16, 8, 4]}
    assert written["source"]["weights"] == weight_file
    data = toy["dataset"]
    items, _, _ = brute_force_top_k(model, np.arange(40), data.num_items, data.train, 3)
    assert [r["user"] for r in written["recommendations"]] == list(range(40))
    assert [r["items"] for r in written["recommendations"]] == items.tolist()
    # The same through the record, as CSV, training items included.
    out_csv = tmp_path / "top.csv"
    code, _, err = run_main(["--record", record, "--all_users", "--topk", "3", "--include_seen",
                             "--output", str(out_csv)], capsys)
    assert code == 0, err
    table = pd.read_csv(out_csv)
    items, _, _ = brute_force_top_k(model, np.arange(40), data.num_items, None, 3)
    assert table["item"].tolist() == items.reshape(-1).tolist()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]   # no temp file left


def test_original_ids_through_the_id_maps(toy, tmp_path, capsys):
    users, items = write_id_maps(toy["folder"], "toy", 40, 60)
    model, _, record = saved(toy, tmp_path)
    code, out, err = run_main(["--record", record, "--users", "u13,u7", "--topk", "2"], capsys)
    assert code == 0, err
    table = read_csv_output(out)
    # u13 is ncf user 2, u7 ncf user 0.
    data = toy["dataset"]
    want, _, _ = brute_force_top_k(model, [2, 0], data.num_items, data.train, 2)
    assert table["user"].tolist() == ["u13", "u13", "u7", "u7"]
    assert table["item"].tolist() == [items[i] for i in want.reshape(-1)]


@pytest.mark.parametrize("movies,sep", [("movies.dat", "::"), ("movies.csv", ",")])
def test_movielens_titles_beside_the_data(toy, tmp_path, capsys, movies, sep):
    _, items = write_id_maps(toy["folder"], "toy", 40, 60)
    lines = [f"{item}{sep}Film {item} (1999){sep}Drama\n" for item in items[:-1]]  # one untitled
    header = "movieId,title,genres\n" if sep == "," else ""
    with open(os.path.join(toy["folder"], movies), "w", encoding="latin-1") as f:
        f.write(header + "".join(lines))
    _, _, record = saved(toy, tmp_path)
    code, out, err = run_main(["--record", record, "--all_users", "--topk", "3"], capsys)
    assert code == 0, err
    table = read_csv_output(out).fillna("")
    assert table.columns.tolist() == ["user", "rank", "item", "score", "title"]
    want = [f"Film {item} (1999)" if item != items[-1] else "" for item in table["item"]]
    assert table["title"].tolist() == want


def test_keras_model_file(toy, tmp_path, capsys):
    model, _, record = saved(toy, tmp_path, "GMF")
    path = str(tmp_path / "gmf.keras")
    model.save(path)
    code, out, err = run_main(["--keras", path, "--path", toy["folder"], "--dataset", "toy",
                               "--users", "5", "--topk", "3"], capsys)
    assert code == 0, err
    code2, out2, _ = run_main(["--record", record, "--users", "5", "--topk", "3"], capsys)
    assert code2 == 0 and out == out2


def test_existing_output_is_refused_then_overwritten(toy, tmp_path, capsys):
    _, _, record = saved(toy, tmp_path, "GMF")
    target = tmp_path / "top.csv"
    target.write_text("keep me\n")
    code, _, err = run_main(["--record", record, "--users", "1", "--output", str(target)], capsys)
    assert code == 2 and "exists; refusing to replace it (--overwrite)" in err
    assert target.read_text() == "keep me\n"
    code, _, err = run_main(["--record", record, "--users", "1", "--output", str(target),
                             "--overwrite"], capsys)
    assert code == 0, err
    assert target.read_text().startswith("user,rank,item,score\n1,1,")


def bad_cases(toy, tmp_path):
    """(argv, message regex) for every bad input; argv without the program."""
    model, weight_file, record = saved(toy, tmp_path)
    other = spread_model("NeuMF", 41, 60)   # one user more than the data
    other_file, _ = save_model(other, tmp_path / "other", "NeuMF", toy)
    data = ["--path", toy["folder"], "--dataset", "toy"]
    flags = ["--model", "NeuMF", "--num_factors", "4", "--layers", "16,8,4"]
    return [
        (["--record", record, "--users", "40"], r"--users: '40' is not a user id: expected an "
         r"integer in 0\.\.39"),
        (["--record", record, "--users", "1,x"], r"--users: 'x' is not a user id"),
        (["--record", record, "--users", "1,,2"], r"--users '1,,2': expected comma-separated ids"),
        (["--record", record, "--users", "1", "--topk", "0"],
         r"--topk must be a positive integer, got 0"),
        (["--record", record, "--users", "1", "--topk", "61"],
         r"--topk must be at most the number of items, 60, got 61"),
        (["--weights", other_file, *flags, *data, "--users", "1"],
         r"other/NeuMF\.weights\.h5: the NeuMF was trained on 41 users x 60 items, but data "
         r"set toy in .* has 40 users x 60 items; weights of another data set\?"),
        (["--weights", weight_file, "--model", "NeuMF", "--layers", "16,8,4", *data,
          "--users", "1"],
         r"NeuMF\.weights\.h5: layer 'mf_embedding_user' has shapes \[\(40, 4\)\], the NeuMF "
         r"model expects \[\(40, 8\)\]"),
        (["--weights", weight_file, *data, "--users", "1"],
         r"--model \(GMF, MLP or NeuMF\) is required with --weights"),
        (["--record", record, "--model", "GMF", "--users", "1"],
         r"--model: the model and its sizes come from --record"),
        (["--record", str(tmp_path / "nope.json"), "--users", "1"],
         r"nope\.json: run record not found"),
        (["--users", "1"], r"no model given: pass --record"),
        (["--record", record], r"give either --users ID,ID,\.\.\. or --all_users"),
        (["--record", record, "--users", "1", "--all_users"], r"give either --users"),
        (["--record", record, "--users", "1", "--output", str(tmp_path / "top.txt")],
         r"--output .*top\.txt: expected a file name ending in \.csv or \.json"),
        (["--record", record, "--users", "1", "--output", str(tmp_path / "no" / "top.csv")],
         r"--output .*top\.csv: folder .*no does not exist"),
        (["--record", record, "--users", "1", "--dataset", "missing"],
         r"missing\.train\.rating: file not found"),
        (["--record", record, "--users", "1", "--topk", "x"], r"flag --topk=x"),
    ]


def test_bad_input_one_line_error_nothing_written(toy, tmp_path, capsys):
    for argv, message in bad_cases(toy, tmp_path):
        output = tmp_path / "out.csv"
        code, out, err = run_main([*argv, "--output", str(output)]
                                  if "--output" not in argv else argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("recommend: error: "), (argv, err)
        assert re.search(message, lines[0]), (message, lines[0])
        assert not output.exists() and "Wrote" not in out and "user,rank" not in out


def test_unknown_original_id(toy, tmp_path, capsys):
    write_id_maps(toy["folder"], "toy", 40, 60)
    _, _, record = saved(toy, tmp_path)
    code, _, err = run_main(["--record", record, "--users", "u7,u8"], capsys)
    assert code == 2
    assert re.fullmatch(r"recommend: error: --users: unknown user id 'u8': not in \S+toy\."
                        r"user_ids\.tsv \(40 ids, e\.g\. u7, u10, u13\)",
                        err.strip().splitlines()[-1]), err


def test_id_map_of_another_data_set(toy, tmp_path, capsys):
    write_id_maps(toy["folder"], "toy", 39, 60)
    _, _, record = saved(toy, tmp_path)
    code, _, err = run_main(["--record", record, "--users", "u7"], capsys)
    assert code == 2 and "toy.user_ids.tsv: 39 user ids, but the data has 40 users" in err


def test_script_help():
    done = subprocess.run([sys.executable, os.path.join(REPO, "bin", "recommend"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "--users" in done.stdout and "all_users" in done.stdout and "--record" in done.stdout


def test_a_saved_recommender_folder(toy, tmp_path, capsys):
    import ncf_tf
    train = pd.read_csv(os.path.join(toy["folder"], "toy.train.rating"), sep="\t",
                        names=["user", "item", "rating", "time"])
    frame = train.assign(user="u" + train["user"].astype(str))
    rec = ncf_tf.Recommender("GMF", num_factors=4, epochs=1).fit(frame, log=None)
    rec.save(str(tmp_path / "model"))
    code, out, err = run_main(["--saved", str(tmp_path / "model"), "--users", "u3,u0",
                               "--topk", "4"], capsys)
    assert code == 0, err
    table = read_csv_output(out)
    want = rec.recommend(["u3", "u0"], k=4)
    assert table["user"].tolist() == want["user"].tolist()
    assert table["item"].astype(int).tolist() == want["item"].tolist()
    code, _, err = run_main(["--saved", str(tmp_path / "model"), "--users", "u999"], capsys)
    assert code == 2 and "--users: unknown user id 'u999'" in err
    (tmp_path / "model" / "train.npz").write_bytes(b"")
    code, _, err = run_main(["--saved", str(tmp_path / "model"), "--users", "u3"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "train.npz is empty (an interrupted save?); save the Recommender again" in err


KILLED_WRITE = r"""
import os, signal, sys
from ncf_tf.serve import recommend
from ncf_tf.cli import recommend as cli
point = sys.argv[1]
if point == "before_rename":        # the temporary file complete, not yet renamed
    def replace(src, dst):
        os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
elif point == "while_writing":      # half the text written
    real_open = open
    class Half:
        def __init__(self, f): self.f = f
        def write(self, text):
            self.f.write(text[:len(text) // 2]); self.f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        def __getattr__(self, name): return getattr(self.f, name)
        def __enter__(self): return self
        def __exit__(self, *a): return self.f.__exit__(*a)
    recommend.open = lambda *a, **k: Half(real_open(*a, **k))   # shadows the builtin
sys.exit(cli.main(["recommend", *sys.argv[2:]]))
"""


@pytest.mark.parametrize("point", ["while_writing", "before_rename"])
def test_output_is_all_or_nothing_when_killed(toy, tmp_path, point):
    _, _, record = saved(toy, tmp_path, "GMF")
    target = tmp_path / "out" / "top.csv"
    target.parent.mkdir()
    argv = ["--record", record, "--all_users", "--topk", "5", "--output", str(target)]
    env = {**os.environ, "PYTHONPATH": REPO}
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, point, *argv],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr[-2000:]
    left = os.listdir(target.parent)
    assert len(left) == 1 and left[0].startswith(".top.csv.") and left[0].endswith(".tmp")
    assert not target.exists()
    again = subprocess.run([sys.executable, os.path.join(REPO, "bin", "recommend"), *argv],
                           capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert os.listdir(target.parent) == ["top.csv"]   # the killed run's temporary file is gone
    whole = subprocess.run([sys.executable, os.path.join(REPO, "bin", "recommend"),
                            *argv[:-1], str(tmp_path / "whole.csv")],
                           capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert target.read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    target = tmp_path / "top.csv"
    live = files.temporary_name(str(target), os.getppid())
    open(live, "w").close()
    dead = files.temporary_name(str(target), 2 ** 22 + 12345)
    open(dead, "w").close()
    recommend.write_text(str(target), "x\n")
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(live), "top.csv"])
