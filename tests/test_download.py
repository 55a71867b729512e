"""bin/download_data's copy path: verified files, and nothing left behind on failure."""

import os

import pytest

from ncf_tf.cli import download as download_cli
from ncf_tf.data import download
from ncf_tf.data.download import DownloadError, digests, fetch


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
    with pytest.raises(DownloadError, match=r"nope/toy.train.rating: not found \(--from .*nope\)"):
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
