"""bin/download_data's copy path: verified files, and nothing left behind on failure."""

import os
import re
import zipfile

import numpy as np
import pytest

from ncf_tf.cli import download as download_cli
from ncf_tf.data import download
from ncf_tf.data.download import DownloadError, digests, fetch
from ncf_tf.data.loader import load_dataset


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "toy.train.rating").write_text("0\t1\t1\t0\n")
    return folder


def test_copies_verifies_and_skips_a_verified_copy(tmp_path, source):
    expected = digests(str(source / "toy.train.rating"))
    dest = tmp_path / "new" / "Data"
    assert fetch("toy.train.rating", str(dest), str(source), expected) == "copied"
    assert (dest / "toy.train.rating").read_text() == "0\t1\t1\t0\n"
    assert fetch("toy.train.rating", str(dest), str(source), expected) == "present"
    # A known-good SHA-256 alone is enough (the authors' blob id may differ).
    assert fetch("toy.train.rating", str(tmp_path / "d2"), str(source), ("-", expected[1])) == "copied"
    assert os.listdir(dest) == ["toy.train.rating"]


def test_a_file_that_does_not_verify_leaves_nothing(tmp_path, source):
    dest = tmp_path / "new" / "Data"
    with pytest.raises(DownloadError, match=r"toy.train.rating: git blob id \w+ / SHA-256 \w+ "
                                            r"match neither the authors' blob id abc"):
        fetch("toy.train.rating", str(dest), str(source), ("abc", "-"))
    assert not (tmp_path / "new").exists()


def test_missing_source_creates_no_folder(tmp_path):
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match=r"nope/toy.train.rating: not found$"):
        fetch("toy.train.rating", str(dest), str(tmp_path / "nope"), ("-", "-"))
    assert not dest.exists()


def test_unwritable_dest_is_a_one_line_error(tmp_path, source, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    (source / "ml-1m.train.rating").write_text("x")
    code = download_cli.main(["download_data", "--dataset", "ml-1m", "--from", str(source),
                          "--dest", str(blocker / "sub")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("download_data: error: --dest ") and "a_file/sub is inside " in err[0]
    assert blocker.read_text() == ""


# MovieLens-20M/25M: GroupLens's zip, MD5-checked, converted; and derived data sets.


def movielens_zip(folder, dataset="ml-20m"):
    """A small zip laid out like GroupLens's (``ml-20m/ratings.csv`` and others);
    returns its MD5. 40 users, 1,100 movies, so 999 negatives fit."""
    from test_prepare import ratings_csv_rows

    rows = ratings_csv_rows(seed=2, num_users=40, num_items=1100, low=20, high=60, cover=True)
    text = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{m},{r},{t}\n"
                                                         for u, m, r, t in rows)
    folder.mkdir(exist_ok=True)
    with zipfile.ZipFile(folder / f"{dataset}.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{dataset}/README.txt", "generated\n")
        z.writestr(f"{dataset}/ratings.csv", text)
    return download.md5(str(folder / f"{dataset}.zip"))


def test_ml_20m_from_a_local_zip_is_checked_and_converted(tmp_path, monkeypatch, capsys):
    checksum = movielens_zip(tmp_path / "zips")
    monkeypatch.setitem(download.MOVIELENS_ZIPS, "ml-20m", ("https://example.invalid/ml-20m.zip",
                                                            checksum))
    dest = tmp_path / "Data"
    argv = ["download_data", "--dataset", "ml-20m", "--from", str(tmp_path / "zips"),
            "--dest", str(dest)]
    assert download_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "MLPerf protocol" in out and "Dropped 2 users with fewer than 20 interactions" in out
    ds = load_dataset(str(dest), "ml-20m")
    assert ds.num_users == 38 and ds.test_negatives.shape == (38, 999)
    assert sorted(os.listdir(dest)) == sorted(f"ml-20m.{s}" for s in (
        "train.rating", "test.rating", "test.negative", "user_ids.tsv", "item_ids.tsv"))
    assert download_cli.main(argv) == 0 and "ml-20m.*: present" in capsys.readouterr().out


def test_ml_20m_zip_with_another_md5_writes_nothing(tmp_path, monkeypatch, capsys):
    movielens_zip(tmp_path / "zips")
    monkeypatch.setitem(download.MOVIELENS_ZIPS, "ml-20m", ("https://example.invalid/ml-20m.zip",
                                                            "0" * 32))
    code = download_cli.main(["download_data", "--dataset", "ml-20m", "--from",
                              str(tmp_path / "zips"), "--dest", str(tmp_path / "Data")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert re.search(r"ml-20m.zip: MD5 [0-9a-f]{32}, expected 0{32} \(GroupLens's published "
                     r"checksum\)", err)
    assert not (tmp_path / "Data").exists()
    code = download_cli.main(["download_data", "--dataset", "ml-25m", "--from",
                              str(tmp_path / "zips"), "--dest", str(tmp_path / "Data")])
    assert code == 2 and "ml-25m.zip: not found\n" in capsys.readouterr().err


def test_published_checksums_are_pinned():
    assert download.MOVIELENS_ZIPS["ml-20m"] == (
        "https://files.grouplens.org/datasets/movielens/ml-20m.zip",
        "cd245b17a1ae2cc31bb14903e1204af3")
    assert download.MOVIELENS_ZIPS["ml-25m"][1] == "6b51fb2759a8657d3bfcbfc42b592ada"


def test_ml_1m_neg999_is_derived_from_verified_ml_1m(tmp_path, monkeypatch, capsys):
    # A stand-in ml-1m (1,100 items), accepted by checksums made for it.
    from test_prepare import ratings_csv_rows, write_ratings_csv
    from ncf_tf.data.prepare import prepare

    rows = ratings_csv_rows(seed=2, num_users=40, num_items=1100, low=20, high=60, cover=True)
    source = tmp_path / "source"
    prepare(write_ratings_csv(tmp_path / "ratings.csv", rows), str(source), "ml-1m",
            np.random.default_rng(0), fmt="movielens-csv")
    table = {f"ml-1m.{s}": digests(str(source / f"ml-1m.{s}"))
             for s in ("train.rating", "test.rating", "test.negative")}
    monkeypatch.setattr(download, "read_checksums", lambda: table)
    dest = tmp_path / "Data"
    argv = ["download_data", "--dataset", "ml-1m-neg999", "--from", str(source),
            "--dest", str(dest)]
    assert download_cli.main(argv) == 0
    assert "ml-1m-neg999.*: prepared" in capsys.readouterr().out
    for suffix in ("train.rating", "test.rating"):
        assert (dest / f"ml-1m-neg999.{suffix}").read_bytes() == \
            (source / f"ml-1m.{suffix}").read_bytes()
    ds = load_dataset(str(dest), "ml-1m-neg999")
    assert ds.test_negatives.shape == (ds.num_test, 999)
    first = (dest / "ml-1m-neg999.test.negative").read_bytes()
    assert download_cli.main(argv) == 0 and "ml-1m-neg999.*: present" in capsys.readouterr().out
    # Seed 0, so a fresh folder gets the same negatives.
    assert download_cli.main(argv[:-1] + [str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "ml-1m-neg999.test.negative").read_bytes() == first
