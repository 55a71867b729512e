"""The loader: counts, gzip, and every kind of bad input it must refuse."""

import gzip
import os

import numpy as np
import pytest

from conftest import write_dataset
from ncf_tf.data.loader import DataError, load_dataset


def test_loads_counts_and_matrix(toy):
    ds = load_dataset(toy["folder"], "toy")
    assert ds.num_users == 40 and ds.num_items <= 60
    assert ds.num_train == len(toy["train"]) and ds.num_test == 40
    dense = ds.train.toarray()
    assert all(dense[u, i] == 1 for u, i in toy["train"])
    assert dense.sum() == len(toy["train"])
    np.testing.assert_array_equal(ds.test_negatives[3], toy["negatives"][3])
    assert ds.summary() == f"#user=40, #item={ds.num_items}, #train={ds.num_train}, #test=40"


def test_reads_gzip_and_zero_ratings(tmp_path):
    info = write_dataset(tmp_path)
    for suffix in ("train.rating", "test.negative"):
        path = tmp_path / f"toy.{suffix}"
        with open(path, "rb") as f, gzip.open(f"{path}.gz", "wb") as g:
            g.write(f.read())
        os.remove(path)
    # A rating of 0 is not an interaction (rating > 0 counts, as the authors'),
    # but its ids count towards #users and #items, as in the authors' loader.
    with gzip.open(tmp_path / "toy.train.rating.gz", "at") as g:
        g.write("40\t59\t0\t0\n")
    ds = load_dataset(str(tmp_path), "toy")
    assert ds.num_train == len(info["train"])
    assert (ds.num_users, ds.num_items) == (41, 60)
    assert ds.train[40].nnz == 0


def set_first_negative(text, line, item):
    lines = text.splitlines()
    fields = lines[line - 1].split("\t")
    lines[line - 1] = "\t".join([fields[0], str(item)] + fields[2:])
    return "\n".join(lines) + "\n"


def corrupt(tmp_path, suffix, transform):
    write_dataset(tmp_path)
    path = tmp_path / f"toy.{suffix}"
    path.write_text(transform(path.read_text()))
    return str(tmp_path)


@pytest.mark.parametrize("suffix,transform,message", [
    ("train.rating", lambda t: t.replace("0\t", "x\t", 1),
     r"toy.train.rating, line 1: user and item must be integers"),
    ("train.rating", lambda t: t + "3\t4\n",
     r"toy.train.rating, line \d+: expected user<TAB>item<TAB>rating"),
    ("train.rating", lambda t: t + "-1\t4\t1\t0\n", r"toy.train.rating, line \d+: ids must be non-negative"),
    ("train.rating", lambda t: "", r"toy.train.rating: file is empty"),
    ("train.rating", lambda t: t + "978300760\t5\t4\t1\n",
     r"toy.train.rating, line \d+: user id 978300760, but only 41 distinct users in the file; "
     r"expected 0-based ids 0..n-1"),
    ("test.rating", lambda t: t + t.splitlines()[9] + "\n",
     r"toy.test.rating, line 41: user 9 already has a test line; expected one held-out "
     r"interaction per user"),
    ("test.rating", lambda t: t.replace("0\t", "0.5\t", 1), r"toy.test.rating, line 1: user and item must be integers"),
    ("test.rating", lambda t: t + "99\t1\t5\t0\n", r"toy.test.rating, line 41: user 99 / item 1 outside"),
    ("test.negative", lambda t: "\n".join(t.splitlines()[:-1]) + "\n",
     r"toy.test.negative: 39 lines, expected one per line of .*toy.test.rating \(40\)"),
    ("test.negative", lambda t: t.replace("(1,", "(2,", 1), r"toy.test.negative, line 2: starts with \(2,"),
    ("test.negative", lambda t: t.replace("\n", "\t7\n", 2).replace("\t7\n", "\n", 1),
     r"toy.test.negative, line 2: 21 negatives, but line 1 has 20"),
    ("test.negative", lambda t: t.replace("(0,", "0,", 1), r"toy.test.negative, line 1: expected \(user,item\)"),
    ("test.negative", lambda t: t.replace("\t", "\tabc\t", 1), r"toy.test.negative, line 1: expected .* integer ids"),
    ("test.negative", lambda t: set_first_negative(t, line=2, item=999),
     r"toy.test.negative, line 2: negative item id >="),
])
def test_bad_files_name_file_and_line(tmp_path, suffix, transform, message):
    folder = corrupt(tmp_path, suffix, transform)
    with pytest.raises(DataError, match=message):
        load_dataset(folder, "toy")


def test_test_user_absent_from_training(tmp_path):
    folder = corrupt(tmp_path, "train.rating",
                     lambda t: "".join(l + "\n" for l in t.splitlines() if not l.startswith("5\t")))
    with pytest.raises(DataError, match=r"toy.test.rating, line 6: user 5 has no training interaction"):
        load_dataset(folder, "toy")


def test_truncated_gzip(tmp_path):
    write_dataset(tmp_path)
    raw = (tmp_path / "toy.train.rating").read_bytes()
    os.remove(tmp_path / "toy.train.rating")
    packed = gzip.compress(raw)
    (tmp_path / "toy.train.rating.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=r"toy.train.rating.gz: cannot read .*truncated or corrupt gzip"):
        load_dataset(str(tmp_path), "toy")


@pytest.mark.parametrize("suffix", ["train.rating", "test.negative"])
def test_non_utf8_file_is_one_data_error(tmp_path, suffix):
    write_dataset(tmp_path)
    path = tmp_path / f"toy.{suffix}"
    path.write_bytes(path.read_bytes() + b"7\t\xff\xfe\t1\t0\n")
    with pytest.raises(DataError, match=rf"toy.{suffix}: not UTF-8 text \("):
        load_dataset(str(tmp_path), "toy")


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"nope.train.rating: file not found .* bin/download_data --dataset nope"):
        load_dataset(str(tmp_path), "nope")


@pytest.mark.parametrize("tab,last", [("", "\n"), ("\t", "\n"), ("", "")])
def test_negatives_read_fast_and_line_by_line_alike(tmp_path, tab, last):
    from ncf_tf.data import loader
    path = tmp_path / "x.test.negative"
    path.write_text(f"(0,5)\t1\t2\t3{tab}\n(1,7)\t4\t5\t6{tab}{last}")
    fast = loader._read_negatives_fast(str(path))
    assert fast is not None
    for a, b in zip(fast, loader._read_negatives_lines(str(path))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast[2], [[1, 2, 3], [4, 5, 6]])
    path.write_text("(0,5)\t1\t2\t3\n(1,7)\t4\tx\t6\n")
    assert loader._read_negatives_fast(str(path)) is None
    with pytest.raises(loader.DataError, match="line 2: expected"):
        loader.read_negatives(str(path))
