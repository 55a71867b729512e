"""bin/prepare_data: raw interactions -> the authors' leave-one-out files.

The raw samples are generated here (not real MovieLens data). Invariants are
checked against the raw lines through the written id maps, so they test the
files a user gets, not the in-memory result.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest

from ncf_tf.cli import prepare as prepare_cli
from ncf_tf.core.arrays import ends_of_runs
from ncf_tf.data.loader import load_dataset
from ncf_tf.data.prepare import (Interactions, PrepareError, prepare, read_interactions,
                                 sample_test_negatives, split)

NUM_NEG = 99


def movielens_rows(seed: int = 0, num_users: int = 25, num_items: int = 160
                   ) -> list[tuple[int, int, int, int]]:
    """A ratings.dat-like sample: sorted by user, random order within a user,
    repeated (user, item) pairs, ties at the latest timestamp, a 1-rating user."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, num_users + 1):
        count = 1 if user == 7 else int(rng.integers(2, 40))
        items = rng.integers(1, num_items + 1, count)
        # Few distinct timestamps, so that many users have ties at the latest.
        stamps = 978300000 + rng.integers(0, 6, count) * 60
        ratings = rng.integers(1, 6, count)
        rows += [(user, int(i), int(r), int(t)) for i, r, t in zip(items, ratings, stamps)]
    return rows


def write_movielens(path, rows) -> str:
    with open(path, "w") as f:
        f.writelines(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows)
    return str(path)


def read_id_map(path) -> list[str]:
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    assert table.iloc[:, 0].tolist() == [str(k) for k in range(len(table))]
    return table.iloc[:, 1].tolist()


def read_lines(path) -> list[list[str]]:
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f]


def latest_by_hand(rows, tie_break: str) -> dict[str, str]:
    """user -> item of the latest line: max timestamp, ties by file order."""
    latest: dict[str, tuple] = {}
    for line, (user, item, _, stamp) in enumerate(rows):
        key = (stamp, -line if tie_break == "first" else line)
        if str(user) not in latest or key > latest[str(user)][0]:
            latest[str(user)] = (key, str(item))
    return {user: item for user, (_, item) in latest.items()}


@pytest.fixture
def prepared(tmp_path):
    rows = movielens_rows()
    source = write_movielens(tmp_path / "ratings.dat", rows)
    dest = tmp_path / "out"
    data = prepare(source, str(dest), "toy", np.random.default_rng(0))
    users = read_id_map(dest / "toy.user_ids.tsv")
    items = read_id_map(dest / "toy.item_ids.tsv")

    def original(lines):
        return [(users[int(u)], items[int(i)]) for u, i, *_ in lines]

    return {"rows": rows, "dest": dest, "data": data, "users": users, "items": items,
            "train": read_lines(dest / "toy.train.rating"),
            "test": read_lines(dest / "toy.test.rating"),
            "negatives": read_lines(dest / "toy.test.negative"), "original": original}


def test_output_loads_with_the_loader(prepared):
    ds = load_dataset(str(prepared["dest"]), "toy")
    assert ds.summary() == prepared["data"].summary()
    # User 7 has one rating: dropped, the other 24 remain.
    assert ds.num_users == 24 and ds.num_test == 24
    assert ds.test_negatives.shape == (24, NUM_NEG)
    assert prepared["data"].stats.users_dropped == 1


def test_train_plus_test_is_every_distinct_interaction(prepared):
    train = set(prepared["original"](prepared["train"]))
    test = set(prepared["original"](prepared["test"]))
    everything = {(str(u), str(i)) for u, i, _, _ in prepared["rows"] if u != 7}
    assert train | test == everything
    assert not train & test
    assert len(prepared["train"]) == len(train)  # duplicates were dropped


def test_one_test_line_per_user_and_it_is_the_latest(prepared):
    tested = prepared["original"](prepared["test"])
    assert [int(u) for u, *_ in prepared["test"]] == list(range(24))
    expected = latest_by_hand(prepared["rows"], "last")   # the default rule
    assert dict(tested) == {u: i for u, i in expected.items() if u != "7"}


def test_test_negatives_are_distinct_and_never_interacted(prepared):
    interacted = set(prepared["original"](prepared["train"] + prepared["test"]))
    for (head, *negatives), (user, item, *_) in zip(prepared["negatives"], prepared["test"]):
        assert head == f"({user},{item})"
        assert len(negatives) == NUM_NEG == len(set(negatives))
        assert all((prepared["users"][int(user)], prepared["items"][int(n)]) not in interacted
                   for n in negatives)


def test_ids_follow_first_appearance_and_round_trip(prepared):
    kept = {item for _, item in prepared["original"](prepared["train"] + prepared["test"])}
    users = list(dict.fromkeys(str(u) for u, *_ in prepared["rows"] if u != 7))
    items = [i for i in dict.fromkeys(str(i) for _, i, *_ in prepared["rows"]) if i in kept]
    assert prepared["users"] == users and prepared["items"] == items
    # MovieLens user k is user k - 1 while no user before k was dropped.
    assert prepared["users"][:6] == ["1", "2", "3", "4", "5", "6"]
    np.testing.assert_array_equal(prepared["data"].item_ids, items)


def test_train_lines_grouped_by_user_latest_first(prepared):
    lines = prepared["train"]
    users = [int(u) for u, *_ in lines]
    assert users == sorted(users)
    for a, b in zip(lines, lines[1:]):
        if a[0] == b[0]:
            assert int(a[3]) >= int(b[3])
    test_stamp = {u: int(t) for u, _, _, t in prepared["test"]}
    assert all(int(t) <= test_stamp[u] for u, _, _, t in lines)


def test_same_seed_same_files_other_seed_other_negatives(tmp_path):
    source = write_movielens(tmp_path / "ratings.dat", movielens_rows())
    for folder, seed in (("a", 3), ("b", 3), ("c", 4)):
        prepare(source, str(tmp_path / folder), "toy", np.random.default_rng(seed))

    def content(folder, suffix):
        return (tmp_path / folder / f"toy.{suffix}").read_text()

    for suffix in ("train.rating", "test.rating", "test.negative", "user_ids.tsv"):
        assert content("a", suffix) == content("b", suffix)
    assert content("a", "train.rating") == content("c", "train.rating")
    assert content("a", "test.negative") != content("c", "test.negative")


def test_min_interactions_drops_small_users(tmp_path):
    rows = movielens_rows()
    counts = pd.DataFrame(rows).drop_duplicates([0, 1]).groupby(0).size()
    raw = read_interactions(write_movielens(tmp_path / "ratings.dat", rows))
    data = split(raw, np.random.default_rng(0), min_interactions=20)
    assert sorted(data.user_ids.tolist(), key=int) == [str(u) for u in counts.index[counts >= 20]]
    assert data.stats.users_dropped == (counts < 20).sum()
    assert data.stats.user_lines_dropped == counts[counts < 20].sum()
    assert "fewer than 20 interactions" in "\n".join(data.stats.describe())


def test_tie_rule_duplicates_and_rating_zero_by_hand(tmp_path):
    rows = [(1, 10, 4, 100), (1, 20, 5, 300), (1, 30, 3, 300), (1, 40, 2, 200),
            (2, 10, 5, 100), (2, 20, 1, 50), (2, 10, 2, 400), (2, 70, 0, 500),
            (3, 60, 2, 2), (3, 50, 1, 1)]
    source = write_movielens(tmp_path / "ratings.dat", rows)
    # Items by first line: 10 20 30 40 (70: rating 0, dropped) 60 50 -> 0 1 2 3 4 5.
    expected = {
        # user 1 ties at 300: "first" holds out item 20, "last" item 30.
        "first": ("0\t1\t5\t300\n1\t0\t2\t400\n2\t4\t2\t2\n",
                  "0\t2\t3\t300\n0\t3\t2\t200\n0\t0\t4\t100\n1\t1\t1\t50\n2\t5\t1\t1\n"),
        "last": ("0\t2\t3\t300\n1\t0\t2\t400\n2\t4\t2\t2\n",
                 "0\t1\t5\t300\n0\t3\t2\t200\n0\t0\t4\t100\n1\t1\t1\t50\n2\t5\t1\t1\n"),
    }
    for rule, (test, train) in expected.items():
        data = prepare(source, str(tmp_path / rule), "toy", np.random.default_rng(0),
                       tie_break=rule, num_test_neg=1)
        assert (tmp_path / rule / "toy.test.rating").read_text() == test
        assert (tmp_path / rule / "toy.train.rating").read_text() == train
        # User 2's (10, ts 100) line is an older duplicate of (10, ts 400).
        assert data.stats.duplicates == 1 and data.stats.nonpositive == 1


def test_csv_with_custom_columns(tmp_path):
    source = tmp_path / "clicks.tsv"
    source.write_text("when\tpin\textra\tuid\tscore\n"
                      "5\tp1\tx\tbob\t1.5\n"
                      "9\tp2\tx\tbob\t2\n"
                      "\n"
                      "7\tp1\tx\tann\t1\n"
                      "3\tp3\tx\tann\t1\n")
    dest = tmp_path / "out"
    data = prepare(str(source), str(dest), "pins", np.random.default_rng(0), fmt="csv",
                   sep="\t", user_col="uid", item_col="pin", rating_col="score",
                   timestamp_col="when", num_test_neg=1)
    assert data.summary() == "#user=2, #item=3, #train=2, #test=2"
    assert (dest / "pins.test.rating").read_text() == "0\t1\t2.0\t9\n1\t0\t1.0\t7\n"
    assert (dest / "pins.train.rating").read_text() == "0\t0\t1.5\t5\n1\t2\t1.0\t3\n"
    assert (dest / "pins.user_ids.tsv").read_text() == "ncf_user_id\tuid\n0\tbob\n1\tann\n"
    assert read_id_map(dest / "pins.item_ids.tsv") == ["p1", "p2", "p3"]
    assert load_dataset(str(dest), "pins").num_test == 2


def test_csv_without_rating_and_timestamp_uses_file_order(tmp_path):
    source = tmp_path / "plain.csv"
    source.write_text("user,item\na,x\na,y\nb,y\na,x\nb,z\nc,w\nc,y\n")
    data = split(read_interactions(str(source), "csv"), np.random.default_rng(0),
                 num_test_neg=1)
    # Last line of a user is the latest; a repeated pair keeps its last line.
    assert list(zip(*data.test[:2])) == [(0, 0), (1, 2), (2, 1)]
    assert list(zip(*data.train[:2])) == [(0, 1), (1, 1), (2, 3)]
    assert set(data.rating_values[data.train[2]]) == {1.0} and data.train[3] is None
    prepare(str(source), str(tmp_path / "out"), "plain", np.random.default_rng(0), fmt="csv",
            num_test_neg=1)
    assert (tmp_path / "out" / "plain.train.rating").read_text() == \
        "0\t1\t1\t0\n1\t1\t1\t0\n2\t3\t1\t0\n"


def test_drop_cold_items_that_leaves_no_user_is_a_clear_error():
    """Regression: with drop_cold_items, a data set that loses every user (none
    reaches the threshold, or dropping cold items drops them all) gets the
    one-line error, not an IndexError from the cold-item loop."""
    for users, items in (([0, 1], [0, 1]), ([0, 0], [0, 1])):
        with pytest.raises(PrepareError, match="no user has 2 or more interactions"):
            split(Interactions.from_arrays(users, items), np.random.default_rng(0),
                  num_test_neg=1, drop_cold_items=True)


def test_ends_of_runs_marks_each_runs_last_element():
    assert ends_of_runs(np.array([3, 3, 5, 7, 7, 7])).tolist() == \
        [False, True, True, False, False, True]
    assert ends_of_runs(np.array([], int)).tolist() == []


def test_cold_items_kept_like_the_authors_unless_they_break_the_format(tmp_path):
    # Item 99 occurs only as user 3's latest line: a cold item with the
    # largest id, which the format (#items from the train file) cannot hold.
    rows = [(1, 10, 5, 1), (1, 20, 5, 2), (1, 30, 5, 3),
            (2, 30, 5, 1), (2, 40, 5, 2), (2, 50, 5, 3), (2, 10, 5, 4),
            (3, 20, 5, 1), (3, 40, 5, 2), (3, 99, 5, 3)]
    source = write_movielens(tmp_path / "ratings.dat", rows)
    with pytest.raises(PrepareError, match=r"item '99' \(id 5\) occurs only in held-out test "
                       r"lines.*drop_cold_items"):
        prepare(source, str(tmp_path / "a"), "toy", np.random.default_rng(0), num_test_neg=1)
    assert not (tmp_path / "a").exists()
    data = prepare(source, str(tmp_path / "b"), "toy", np.random.default_rng(0),
                   num_test_neg=1, drop_cold_items=True)
    assert data.stats.cold_items == 1 and data.stats.cold_lines == 1
    assert "99" not in data.item_ids.tolist()
    assert load_dataset(str(tmp_path / "b"), "toy").num_items == 5
    # Cold items with a smaller id stay, as in the authors' ml-1m (items 1805, 3569).
    data = prepare(write_movielens(tmp_path / "r2.dat", rows + [(3, 60, 5, 0)]),
                   str(tmp_path / "c"), "toy", np.random.default_rng(0), num_test_neg=1)
    assert data.item_ids.tolist()[5] == "99" and data.test[1].tolist()[2] == 5
    assert load_dataset(str(tmp_path / "c"), "toy").num_items == 7


def test_negatives_are_uniform_over_unseen_items():
    users = np.repeat(np.arange(3000), 2)
    items = np.tile([0, 3], 3000)
    negatives = sample_test_negatives(users, items, 3000, 8, 3, np.random.default_rng(0))
    counts = np.bincount(negatives.ravel(), minlength=8)
    assert counts[0] == counts[3] == 0
    # Each of the 6 unseen items: 3000 * 3 / 6 = 1500 expected, sd ~ 32.
    assert np.all(np.abs(counts[[1, 2, 4, 5, 6, 7]] - 1500) < 150)
    assert all(len(set(row)) == 3 for row in negatives)


# Bad input: one clear line, exit code 2 from the CLI, nothing written.


def run_cli(argv, capsys):
    code = prepare_cli.main(["prepare_data"] + argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_happy_path(tmp_path, capsys):
    source = write_movielens(tmp_path / "ratings.dat", movielens_rows())
    dest = tmp_path / "out"
    code, out, err = run_cli(["--input", source, "--dest", str(dest), "--name", "toy",
                              "--seed", "5"], capsys)
    assert code == 0 and err == ""
    assert out.splitlines()[-1] == load_dataset(str(dest), "toy").summary()
    assert "Dropped 1 users with fewer than 2 interactions" in out


def test_cli_csv_tab_separator(tmp_path, capsys):
    source = tmp_path / "x.tsv"
    source.write_text("u\ti\n" + "".join(f"{u}\t{i}\n" for u in range(3)
                                    for i in range(u + 2, u - 1, -1)))
    code, out, _ = run_cli(["--input", str(source), "--format", "csv", "--sep", "\\t",
                            "--user_col", "u", "--item_col", "i", "--dest",
                            str(tmp_path / "out"), "--name", "x", "--num_test_neg", "2"], capsys)
    assert code == 0 and out.splitlines()[-1] == "#user=3, #item=5, #train=6, #test=3"


@pytest.mark.parametrize("content, argv, message", [
    ("", [], r"ratings.dat: file is empty"),
    ("1::10::5::100\n1::20::five::200\n", [],
     r"ratings.dat, line 2: rating is 'five', not a number"),
    ("1::10::5::100\n1::20::5\n", [], r"ratings.dat, line 2: timestamp is empty"),
    ("1::10::5::100\n1::20::5::9::x\n", [], r"ratings.dat, line 2: 5 fields, expected 4"),
    ("1::10::5::100\n\n1::a::5::9\n", [], r"ratings.dat, line 3: item id is 'a', not an integer"),
    ("user,movie\n1,2\n", ["--format", "csv"],
     r"column 'item' not found; the header has 'user', 'movie' \(separator ','\)"),
    ("user,item,r\n1,2,3\n1,3,x\n", ["--format", "csv", "--rating_col", "r"],
     r"ratings.dat, line 3: column 'r' is 'x', not a number"),
    ("user,item\n", ["--format", "csv"], r"no data lines after the header"),
    ("1::1::5::1\n1::2::5::2\n2::3::5::1\n2::1::5::2\n", [],
     r"user 0 \('1' in the input\) interacted with 2 of the 3 items, leaving 1 for 99 test "
     r"negatives"),
])
def test_bad_input_one_line_error_nothing_written(tmp_path, capsys, content, argv, message):
    source = tmp_path / "ratings.dat"
    source.write_text(content)
    dest = tmp_path / "out"
    code, out, err = run_cli(["--input", str(source), "--dest", str(dest), "--name", "toy"]
                             + argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("prepare_data: error: ") and err.count("\n") == 1
    assert pytest.raises(PrepareError, prepare, str(source), str(dest), "toy",
                         np.random.default_rng(0), fmt=argv[1] if argv else "movielens",
                         rating_col="r" if "--rating_col" in argv else None).match(message)
    assert not dest.exists()


def test_missing_input_and_flags(tmp_path, capsys):
    code, _, err = run_cli(["--input", str(tmp_path / "nope.dat"), "--name", "toy",
                            "--dest", str(tmp_path / "out")], capsys)
    assert code == 2 and "nope.dat: file not found" in err
    code, _, err = run_cli(["--input", "x"], capsys)
    assert code == 2 and err == "prepare_data: error: --name is required\n"
    code, _, err = run_cli(["--input", "x", "--name", "t", "--num_test_neg", "0"], capsys)
    assert code == 2 and "num_test_neg" in err
    code, _, err = run_cli(["--input", "x", "--name", "t", "--user_col", "uid"], capsys)
    assert code == 2 and err.endswith("--user_col: only with --format csv (ratings.dat has "
                                      "fixed columns)\n")


def test_refuses_existing_output_unless_overwrite(tmp_path, capsys):
    source = write_movielens(tmp_path / "ratings.dat", movielens_rows())
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "toy.test.negative").write_text("mine\n")
    argv = ["--input", source, "--dest", str(dest), "--name", "toy"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "toy.test.negative: exists; refusing to replace it" in err
    assert os.listdir(dest) == ["toy.test.negative"]
    assert (dest / "toy.test.negative").read_text() == "mine\n"
    code, _, _ = run_cli(argv + ["--overwrite"], capsys)
    assert code == 0 and (dest / "toy.test.negative").read_text() != "mine\n"
    assert sorted(os.listdir(dest)) == sorted(f"toy.{s}" for s in (
        "train.rating", "test.rating", "test.negative", "user_ids.tsv", "item_ids.tsv"))


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    source = write_movielens(tmp_path / "ratings.dat", movielens_rows())

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(PrepareError, match=r"writing failed \(disk full\); nothing written"):
        prepare(source, str(tmp_path / "out"), "toy", np.random.default_rng(0))
    assert not (tmp_path / "out").exists()


# MovieLens-20M/25M ratings.csv (--format movielens-csv), read in chunks.


def ratings_csv_rows(seed: int = 0, num_users: int = 24, num_items: int = 120,
                     low: int = 20, high: int = 30, small_users=(3, 8), cover: bool = False
                     ) -> list[tuple[int, int, float, int]]:
    """Lines of a ratings.csv like ml-20m's: sorted by userId, then movieId; half-star
    ratings; few distinct timestamps (ties at the latest); users in ``small_users``
    have 19 and 5 ratings (fewer than 20). Movie ids are sparse (1, 8, 15, ...).
    ``cover``: users take their movies in turn from a shuffled list, so that
    every movie is rated once before any is rated twice."""
    rng = np.random.default_rng(seed)
    movies = 1 + 7 * rng.permutation(num_items)
    pool = np.tile(movies, 2 + num_users * high // num_items)
    taken = 0
    rows = []
    for user in range(1, num_users + 1):
        count = {small_users[0]: 19, small_users[1]: 5}.get(user, int(rng.integers(low, high)))
        if cover:
            chosen = np.sort(pool[taken:taken + count])
            taken += count
        else:
            chosen = np.sort(rng.choice(movies, count, replace=False))
        stamps = 1112486000 + rng.integers(0, 4, count) * 100
        halves = rng.integers(1, 11, count)
        rows += [(user, int(m), int(h) / 2, int(t)) for m, h, t in zip(chosen, halves, stamps)]
    return rows


def write_ratings_csv(path, rows) -> str:
    with open(path, "w") as f:
        f.write("userId,movieId,rating,timestamp\n")
        f.writelines(f"{u},{m},{r},{t}\n" for u, m, r, t in rows)
    return str(path)


def test_movielens_csv_mlperf_protocol_by_hand(tmp_path):
    rows = ratings_csv_rows()
    source = write_ratings_csv(tmp_path / "ratings.csv", rows)
    dest = tmp_path / "out"
    data = prepare(source, str(dest), "ml", np.random.default_rng(0), fmt="movielens-csv",
                   min_interactions=20, num_test_neg=50, chunk_lines=64)
    users = read_id_map(dest / "ml.user_ids.tsv")
    items = read_id_map(dest / "ml.item_ids.tsv")
    # Users 3 (19 ratings) and 8 (5) are dropped; the others keep their order.
    assert users == [str(u) for u in range(1, 25) if u not in (3, 8)]
    assert data.stats.users_dropped == 2 and data.stats.user_lines_dropped == 24
    train, test = read_lines(dest / "ml.train.rating"), read_lines(dest / "ml.test.rating")
    kept = [r for r in rows if r[0] not in (3, 8)]
    # The test line: the latest timestamp, of tied lines the last in the file.
    expected = latest_by_hand([(u, m, r, t) for u, m, r, t in kept], "last")
    assert {users[int(u)]: items[int(i)] for u, i, *_ in test} == expected
    assert [int(u) for u, *_ in test] == list(range(22))
    # Lines keep their rating (half stars as written) and timestamp.
    written = {(users[int(u)], items[int(i)]): (r, t) for u, i, r, t in train + test}
    assert written == {(str(u), str(m)): (repr(r), str(t)) for u, m, r, t in kept}
    assert len(train) + len(test) == len(kept)
    negatives = read_lines(dest / "ml.test.negative")
    interacted = {(str(u), str(m)) for u, m, _, _ in kept}
    for (head, *negs), (user, item, *_) in zip(negatives, test):
        assert head == f"({user},{item})" and len(set(negs)) == len(negs) == 50
        assert not any((users[int(user)], items[int(n)]) in interacted for n in negs)
    ds = load_dataset(str(dest), "ml")
    assert ds.summary() == data.summary() == "#user=22, #item=120, #train=%d, #test=22" % (
        len(kept) - 22)


def test_movielens_csv_equals_the_general_reader_byte_for_byte(tmp_path):
    # Duplicates, ties, users below the threshold: the MovieLens-CSV reader and
    # the general CSV reader, each in chunks, give the same files (the id maps'
    # header aside).
    rows = ratings_csv_rows(seed=4, num_users=30, low=2, high=40)
    fifth = next(r for r in rows if r[0] == 5)
    last = rows[-1]
    rows += [(5, fifth[1], 4.5, fifth[3] + 1), (last[0], last[1], 0.5, 1)]  # repeated pairs
    source = write_ratings_csv(tmp_path / "ratings.csv", rows)
    for rule in ("last", "first"):
        general = prepare(source, str(tmp_path / f"a{rule}"), "x", np.random.default_rng(7),
                          fmt="csv", user_col="userId", item_col="movieId", rating_col="rating",
                          timestamp_col="timestamp", min_interactions=10, num_test_neg=20,
                          tie_break=rule, chunk_lines=40)
        chunked = prepare(source, str(tmp_path / f"b{rule}"), "x", np.random.default_rng(7),
                          fmt="movielens-csv", min_interactions=10, num_test_neg=20,
                          tie_break=rule, chunk_lines=50)
        assert general.stats == chunked.stats and chunked.stats.duplicates == 2
        for suffix in ("train.rating", "test.rating", "test.negative"):
            assert (tmp_path / f"a{rule}" / f"x.{suffix}").read_text() == \
                (tmp_path / f"b{rule}" / f"x.{suffix}").read_text(), (rule, suffix)
        for suffix in ("user_ids.tsv", "item_ids.tsv"):
            assert read_id_map(tmp_path / f"a{rule}" / f"x.{suffix}") == \
                read_id_map(tmp_path / f"b{rule}" / f"x.{suffix}")


def test_cli_protocol_mlperf_writes_999_negatives(tmp_path, capsys):
    # 1,100 movies, so that every user has 999 unrated ones.
    rows = ratings_csv_rows(seed=2, num_users=40, num_items=1100, low=20, high=60,
                            cover=True)
    source = write_ratings_csv(tmp_path / "ratings.csv", rows)
    dest = tmp_path / "out"
    code, out, err = run_cli(["--input", source, "--format", "movielens-csv", "--protocol",
                              "mlperf", "--dest", str(dest), "--name", "ml-20m"], capsys)
    assert code == 0 and err == ""
    assert "Dropped 2 users with fewer than 20 interactions" in out
    ds = load_dataset(str(dest), "ml-20m")
    assert out.splitlines()[-1] == ds.summary() and ds.num_users == 38
    negatives = ds.test_negatives
    assert negatives.shape == (38, 999)
    assert all(len(set(row)) == 999 for row in negatives.tolist())
    seen = ds.train.toarray().astype(bool)
    seen[ds.test_users, ds.test_items] = True
    assert not np.take_along_axis(seen, negatives, axis=1).any()
    # A flag given explicitly wins over the protocol's.
    code, out, _ = run_cli(["--input", source, "--format", "movielens-csv", "--protocol",
                            "mlperf", "--num_test_neg", "7", "--dest", str(tmp_path / "b"),
                            "--name", "x"], capsys)
    assert code == 0 and load_dataset(str(tmp_path / "b"), "x").test_negatives.shape == (38, 7)


@pytest.mark.parametrize("content, message", [
    ("user,item,rating,timestamp\n1,2,3,4\n",
     r"ratings.csv, line 1: header is 'user,item,rating,timestamp', expected "
     r"userId,movieId,rating,timestamp"),
    ("", r"ratings.csv: file is empty"),
    ("userId,movieId,rating,timestamp\n", r"no data lines after the header"),
    ("userId,movieId,rating,timestamp\n" + "1,2,3.5,9\n" * 70 + "1,x,3,4\n",
     r"ratings.csv, line 72: movieId is 'x', not an integer"),
    ("userId,movieId,rating,timestamp\n1,2,3.5,9\n1,3,3.7,9\n",
     r"ratings.csv, line 3: rating is '3.7', not a multiple of 0.5"),
    ("userId,movieId,rating,timestamp\n1,2,3.5,9\n1,3,3.5\n",
     r"ratings.csv, line 3: timestamp is empty \(expected an integer\)"),
    ("userId,movieId,rating,timestamp\n1,2,3.5,9\n1,3,3.5,9,9\n",
     r"ratings.csv, line 3: 5 fields, expected 4"),
])
def test_movielens_csv_bad_input_names_the_line(tmp_path, capsys, content, message):
    source = tmp_path / "ratings.csv"
    source.write_text(content)
    with pytest.raises(PrepareError, match=message):
        prepare(str(source), str(tmp_path / "out"), "x", np.random.default_rng(0),
                fmt="movielens-csv", chunk_lines=32)
    code, out, err = run_cli(["--input", str(source), "--format", "movielens-csv",
                              "--dest", str(tmp_path / "out"), "--name", "x"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_movielens_csv_has_fixed_columns(tmp_path, capsys):
    code, _, err = run_cli(["--input", "x", "--format", "movielens-csv", "--name", "t",
                            "--item_col", "m"], capsys)
    assert code == 2 and err.endswith("--item_col: only with --format csv (ratings.csv has "
                                      "fixed columns)\n")


# Test negatives: exact draws, and re-drawing them for existing files.


def test_rejection_draws_are_uniform_in_every_slot():
    # 20 items, 10 negatives, no positives: about a fifth of the first
    # draws repeat within a row, so the rejection passes run many rounds.
    num_users, num_items, k = 20000, 20, 10
    negatives = sample_test_negatives(np.zeros(0, np.int64), np.zeros(0, np.int64), num_users,
                                      num_items, k, np.random.default_rng(1))
    assert all(len(set(row)) == k for row in negatives.tolist())
    # Every slot, first and last included, is uniform over the items (a
    # precedence bias would show here): 20000 / 20 = 1000 expected, sd ~31.
    for slot in range(k):
        counts = np.bincount(negatives[:, slot], minlength=num_items)
        assert np.all(np.abs(counts - 1000) < 160), (slot, counts)
    # Unordered pairs of slots 0 and 1 are uniform too: 20000 / 380 ordered pairs.
    pairs = np.bincount(negatives[:, 0] * num_items + negatives[:, 1],
                        minlength=num_items ** 2).reshape(num_items, num_items)
    assert np.diag(pairs).sum() == 0 and abs(pairs.sum() / 380 - 52.6) < 0.1
    assert pairs[~np.eye(num_items, dtype=bool)].max() < 100


def test_heavy_users_draw_from_their_complement():
    # User 0 has 14 of 20 items: 6 left for 5 negatives (the direct path);
    # user 1 none (rejection). Both exact and distinct, the same for a seed.
    users = np.zeros(14, np.int64)
    items = np.arange(3, 17)
    draw = [sample_test_negatives(users, items, 2, 20, 5, np.random.default_rng(s))
            for s in (3, 3, 4)]
    np.testing.assert_array_equal(draw[0], draw[1])
    assert not np.array_equal(draw[0], draw[2])
    assert set(draw[0][0]) <= {0, 1, 2, 17, 18, 19} and len(set(draw[0][0])) == 5
    assert len(set(draw[0][1])) == 5


def test_resample_negatives_keeps_train_and_test(tmp_path, capsys):
    source = write_movielens(tmp_path / "ratings.dat", movielens_rows(num_items=400))
    prepare(source, str(tmp_path), "toy", np.random.default_rng(0))
    code, out, err = run_cli(["--resample_negatives", str(tmp_path / "toy"), "--num_test_neg",
                              "200", "--name", "toy-neg200", "--dest", str(tmp_path / "new"),
                              "--seed", "2"], capsys)
    assert code == 0 and err == "", err
    for suffix in ("train.rating", "test.rating"):
        assert (tmp_path / "new" / f"toy-neg200.{suffix}").read_bytes() == \
            (tmp_path / f"toy.{suffix}").read_bytes()
    old, new = load_dataset(str(tmp_path), "toy"), load_dataset(str(tmp_path / "new"),
                                                                "toy-neg200")
    assert out.splitlines()[-1] == old.summary()
    assert new.test_negatives.shape == (old.num_test, 200)
    seen = new.train.toarray().astype(bool)
    seen[new.test_users, new.test_items] = True
    assert not np.take_along_axis(seen, new.test_negatives, axis=1).any()
    assert all(len(set(row)) == 200 for row in new.test_negatives.tolist())
    code, _, err = run_cli(["--resample_negatives", str(tmp_path / "toy"), "--input", source,
                            "--name", "y", "--dest", str(tmp_path / "y")], capsys)
    assert code == 2 and "--input: not with --resample_negatives" in err
    code, _, err = run_cli(["--resample_negatives", str(tmp_path / "nope"), "--name", "y",
                            "--dest", str(tmp_path / "y")], capsys)
    assert code == 2 and "nope.train.rating: file not found" in err
    assert not (tmp_path / "y").exists()


# Headerless files, suggested formats, values that cannot be represented.


def test_headerless_file_with_columns_equals_the_same_file_with_a_header(tmp_path, capsys):
    rows = movielens_rows()
    lines = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)
    (tmp_path / "plain.tsv").write_text(lines)
    (tmp_path / "header.tsv").write_text("user\titem\trating\ttime\n" + lines)
    options = ["--format", "csv", "--sep", "\\t", "--rating_col", "rating", "--timestamp_col",
               "time", "--name", "x"]
    for name, extra in (("plain", ["--columns", "user,item,rating,time"]), ("header", [])):
        code, _, err = run_cli(["--input", str(tmp_path / f"{name}.tsv"), "--dest",
                                str(tmp_path / name)] + options + extra, capsys)
        assert code == 0, err
    for suffix in ("train.rating", "test.rating", "test.negative", "item_ids.tsv"):
        assert (tmp_path / "plain" / f"x.{suffix}").read_bytes() == \
            (tmp_path / "header" / f"x.{suffix}").read_bytes()
    # The same lines as ratings.dat: the same split.
    source = write_movielens(tmp_path / "ratings.dat", rows)
    assert run_cli(["--input", source, "--dest", str(tmp_path / "dat"), "--name", "x"],
                   capsys)[0] == 0
    assert (tmp_path / "plain" / "x.train.rating").read_bytes() == \
        (tmp_path / "dat" / "x.train.rating").read_bytes()


@pytest.mark.parametrize("name, content, argv, message", [
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,9\n", [],
     r"ratings.csv, line 1: 1 fields, expected user::item::rating::timestamp; try --format "
     r"movielens-csv$"),
    ("u.data", "1\t2\t3\t9\n1\t3\t3\t10\n", ["--format", "csv"],
     r"u.data: columns 'user', 'item' not found; the header has '1\\t2\\t3\\t9' \(separator "
     r"','\); try --sep '\\t' --columns user,item,rating,timestamp --rating_col rating "
     r"--timestamp_col timestamp$"),
    ("ratings.dat", "1::2::3::9\n", ["--format", "movielens-csv"],
     r"header is '1::2::3::9', expected userId,movieId,rating,timestamp \(MovieLens-20M/25M "
     r"ratings.csv\); try --format movielens$"),
    ("x.csv", "u,i,r\n1,2,3\n", ["--format", "csv", "--columns", "user,item,rating",
                                 "--rating_col", "rating"],
     r"x.csv, line 1: column 'rating' is 'r', not a number \(a header line\?\); try without "
     r"--columns$"),
])
def test_first_line_of_another_format_suggests_it(tmp_path, capsys, name, content, argv,
                                                  message):
    (tmp_path / name).write_text(content)
    code, out, err = run_cli(["--input", str(tmp_path / name), "--dest", str(tmp_path / "out"),
                              "--name", "x"] + argv, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert re.search(message, err.rstrip("\n")), err
    assert not (tmp_path / "out").exists()
    # The library says the same in its parameters' names.
    if name == "ratings.csv":
        with pytest.raises(PrepareError, match=r"; try fmt='movielens-csv'$"):
            prepare(str(tmp_path / name), str(tmp_path / "out"), "x", np.random.default_rng(0))


@pytest.mark.parametrize("name, content, argv, message", [
    ("ratings.dat", "1::2::3::9\n1::3::3::99999999999999999999\n", [],
     r"ratings.dat, line 2: timestamp is '99999999999999999999', beyond the integers that fit "
     r"in 64 bits"),
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,9\n1,3,3.5,9223372036854775808\n",
     ["--format", "movielens-csv"],
     r"ratings.csv, line 3: timestamp is '9223372036854775808', beyond the integers that fit"),
    ("t.csv", "user,item,t\na,b,1\na,c,-1e30\n", ["--format", "csv", "--timestamp_col", "t"],
     r"t.csv, line 3: column 't' is '-1e30', beyond the integers that fit in 64 bits"),
    ("t.csv", "user,item,t\na,b,1\na,c,nan\n", ["--format", "csv", "--timestamp_col", "t"],
     r"t.csv, line 3: column 't' is 'nan', not a number"),
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,3000000000,3.5,9\n",
     ["--format", "movielens-csv"], r"line 2: movieId is '3000000000', not an id in 0..2\^31-1"),
])
def test_values_beyond_their_type_are_refused(tmp_path, capsys, name, content, argv, message):
    (tmp_path / name).write_text(content)
    code, out, err = run_cli(["--input", str(tmp_path / name), "--dest", str(tmp_path / "out"),
                              "--name", "x"] + argv, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_zip_input_is_refused_in_one_line(tmp_path, capsys):
    import zipfile

    with zipfile.ZipFile(tmp_path / "ratings.zip", "w") as z:
        z.writestr("ratings.dat", "1::2::3::4\n")
    for fmt in ("movielens", "movielens-csv", "csv"):
        code, _, err = run_cli(["--input", str(tmp_path / "ratings.zip"), "--format", fmt,
                                "--dest", str(tmp_path / "out"), "--name", "x"], capsys)
        assert code == 2 and err == (f"prepare_data: error: {tmp_path / 'ratings.zip'}: a zip "
                                     "file; only plain text or .gz is read (unpack it first)\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("users, message", [
    ([1, float("nan"), 2], r"row 1: users is empty \(expected an id\)"),
    (["a", None, "b"], r"row 1: users is empty"),
    ([1, [2, 3], 4], r"row 1: users is \[2, 3\], not an id \(a string or an integer\)"),
])
def test_missing_or_list_ids_in_memory_are_refused(users, message):
    with pytest.raises(PrepareError, match=message):
        Interactions.from_arrays(users, [5, 6, 7])
    with pytest.raises(PrepareError, match=r"row 2: timestamps is '18446744073709551616', "
                                           r"beyond the integers that fit in 64 bits"):
        Interactions.from_arrays([1, 2, 3], [5, 6, 7], timestamps=[1, 2, 2 ** 64])
    with pytest.raises(PrepareError, match=r"one entry per interaction expected, got lengths "
                                           r"users 3, items 3, ratings 2"):
        Interactions.from_arrays([1, 2, 3], [5, 6, 7], ratings=[1, 2])


def test_arrays_in_memory_split_as_their_file_does(tmp_path):
    rows = movielens_rows()
    users, items, ratings, stamps = (list(column) for column in zip(*rows))
    from_file = split(read_interactions(write_movielens(tmp_path / "ratings.dat", rows)),
                      np.random.default_rng(0))
    in_memory = split(Interactions.from_arrays([str(u) for u in users], [str(i) for i in items],
                                               ratings, stamps), np.random.default_rng(0))
    for a, b in zip(from_file.train + from_file.test, in_memory.train + in_memory.test):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(from_file.test_negatives, in_memory.test_negatives)


# All or nothing on disk: bin/prepare_data killed (SIGKILL) at several points.

KILLER = """
import importlib, os, signal, sys
command, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
owner = importlib.import_module(target.rpartition(".")[0])
real, calls = getattr(owner, target.rpartition(".")[2]), [0]
def hook(*args, **kwargs):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(owner, target.rpartition(".")[2], hook)
sys.exit(importlib.import_module(f"ncf_tf.cli.{command}").main([command] + sys.argv[4:]))
"""
OUTPUTS = ["toy." + s for s in ("train.rating", "test.rating", "test.negative", "user_ids.tsv",
                                "item_ids.tsv")]


def kill(command: str, target: str, n: int, argv: list[str]) -> int:
    """Runs ``ncf_tf.cli.<command>`` in a new process that SIGKILLs itself at
    the n-th call of ``target``; returns its exit status."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", KILLER, command, target, str(n), *argv],
                          capture_output=True, env={**os.environ, "PYTHONPATH": os.getcwd()}
                          ).returncode


@pytest.mark.parametrize("target, n, published", [
    ("ncf_tf.data.prepare.pipeline.sample_test_negatives", 1, (0, 0)),   # before any write
    ("ncf_tf.data.prepare.common.join_fields", 2, (0, 0)),    # writing the second staged file
    ("os.replace", 1, (0, 0)),                                # all staged, the manifest not yet
    ("os.replace", 4, (2, 2)),                                # two of five published
    ("os.replace", 6, (4, 4)),                                # four of five published
    ("os.remove", 3, (5, 5)),                   # all published, the manifest left (2 at start)
])
def test_killed_then_rerun_equals_an_uninterrupted_run(tmp_path, capsys, target, n, published):
    source = write_movielens(tmp_path / "ratings.dat", movielens_rows())
    argv = ["--input", source, "--name", "toy", "--seed", "3"]
    assert run_cli(argv + ["--dest", str(tmp_path / "whole")], capsys)[0] == 0
    dest = tmp_path / "out"
    assert kill("prepare", target, n, argv + ["--dest", str(dest)]) == -9
    finals = [f for f in OUTPUTS if (dest / f).exists()]
    assert published[0] <= len(finals) <= published[1]
    for name in finals:   # what is under a final name is complete
        assert (dest / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    code, _, err = run_cli(argv + ["--dest", str(dest)], capsys)   # the same command again
    assert code == 0, err
    assert sorted(os.listdir(dest)) == sorted(OUTPUTS)              # no staging folder left
    for name in OUTPUTS:
        assert (dest / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_download_killed_between_its_files_then_rerun(tmp_path, capsys):
    from ncf_tf.cli import download as download_cli

    names = [f"ml-1m.{s}" for s in ("train.rating", "test.rating", "test.negative")]
    if not all(os.path.isfile(os.path.join("Data", n)) for n in names):
        pytest.skip("the authors' ml-1m files are not in Data/")
    argv = ["--dataset", "ml-1m", "--from", "Data", "--dest", str(tmp_path / "d")]
    assert kill("download", "os.replace", 3, argv) == -9    # one of three published
    assert [n for n in names if (tmp_path / "d" / n).exists()] == names[:1]
    assert download_cli.main(["download_data"] + argv) == 0
    assert sorted(os.listdir(tmp_path / "d")) == sorted(names)
    for name in names:
        assert (tmp_path / "d" / name).read_bytes() == open(f"Data/{name}", "rb").read()


def test_suggestions_read_as_parameters_in_python_and_as_flags_on_the_command_line():
    error = PrepareError("bad", suggest={"fmt": "csv", "sep": "\t", "columns": ("u", "i"),
                                         "drop_cold_items": True, "source": "DIR"})
    assert str(error) == ("bad; try fmt='csv', sep='\\t', columns=('u', 'i'), "
                          "drop_cold_items=True, source='DIR'")
    with pytest.raises(PrepareError) as raised:
        with prepare_cli.as_flags():
            raise error
    assert str(raised.value) == ("bad; try --format csv --sep '\\t' --columns u,i "
                                 "--drop_cold_items --from DIR")


def test_one_column_for_two_roles_is_refused(tmp_path):
    source = tmp_path / "x.csv"
    source.write_text("user,item\na,b\n")
    with pytest.raises(PrepareError, match=r"user_col, item_col, rating_col and timestamp_col "
                                           r"must name different columns, got 'user', 'user'"):
        prepare(str(source), str(tmp_path / "out"), "x", np.random.default_rng(0), fmt="csv",
                item_col="user")
    assert not (tmp_path / "out").exists()


def test_gzipped_input_by_name_or_by_content_equals_plain(tmp_path):
    import gzip

    source = write_movielens(tmp_path / "ratings.dat", movielens_rows())
    data = open(source, "rb").read()
    for name in ("ratings.dat.gz", "ratings.dat.packed"):
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(data)
    for name in ("ratings.dat", "ratings.dat.gz", "ratings.dat.packed"):
        prepare(str(tmp_path / name), str(tmp_path / name.replace(".", "-")), "x",
                np.random.default_rng(0), chunk_lines=100)
    for suffix in ("train.rating", "test.rating", "test.negative", "user_ids.tsv"):
        plain = (tmp_path / "ratings-dat" / f"x.{suffix}").read_bytes()
        assert (tmp_path / "ratings-dat-gz" / f"x.{suffix}").read_bytes() == plain
        assert (tmp_path / "ratings-dat-packed" / f"x.{suffix}").read_bytes() == plain


def test_a_failure_while_publishing_is_completed_by_the_next_run(tmp_path, monkeypatch):
    source = write_movielens(tmp_path / "ratings.dat", movielens_rows())
    dest = tmp_path / "out"
    dest.mkdir()
    real, calls = os.replace, []

    def failing(src, dst):   # the manifest, two files, then the disk fails
        calls.append(dst)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(PrepareError, match=r"out: writing failed \(No space left on device\); "
                                           r"2 of the 5 files published, the same command run "
                                           r"again completes them"):
        prepare(source, str(dest), "toy", np.random.default_rng(0))
    monkeypatch.setattr(os, "replace", real)
    prepare(source, str(dest), "toy", np.random.default_rng(0))
    prepare(source, str(tmp_path / "whole"), "toy", np.random.default_rng(0))
    assert sorted(os.listdir(dest)) == sorted(os.listdir(tmp_path / "whole"))
    for name in os.listdir(dest):
        assert (dest / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
