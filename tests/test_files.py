"""atomic_path: all or nothing under the final name, with a new file's permissions."""

import os
import stat

import pytest

from ncf_tf.core.files import atomic_path
from ncf_tf.core.records import write_json


def test_written_whole_with_the_umasks_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        path = tmp_path / "new" / "out.json"
        write_json(str(path), {"a": 1})
    finally:
        os.umask(old)
    assert path.read_text() == '{\n "a": 1\n}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o640   # not mkstemp's 0600
    assert os.listdir(path.parent) == ["out.json"]


def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("writer failed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_open_input_reads_plain_and_gzip_and_refuses_archives(tmp_path):
    import gzip
    import zipfile

    from ncf_tf.core.files import InputFileError, open_input

    (tmp_path / "a.txt").write_text("plain\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("zipped\n")
    (tmp_path / "c.txt").write_bytes((tmp_path / "b.txt.gz").read_bytes())  # gzip, no .gz
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        z.writestr("d.txt", "x\n")
    for name, text in (("a.txt", "plain\n"), ("b.txt.gz", "zipped\n"), ("c.txt", "zipped\n")):
        with open_input(str(tmp_path / name)) as f:
            assert f.read() == text
    with open_input(str(tmp_path / "a.txt"), binary=True) as f:
        assert f.read() == b"plain\n"
    with pytest.raises(InputFileError, match=r"d.zip: a zip file; only plain text or .gz is "
                                             r"read \(unpack it first\)"):
        open_input(str(tmp_path / "d.zip"))
    with pytest.raises(InputFileError, match=r"nope.txt: file not found"):
        open_input(str(tmp_path / "nope.txt"))


def test_staged_group_publishes_together_and_knows_a_killed_writers_half(tmp_path):
    from ncf_tf.core.files import OutputError, StagedGroup

    dest = tmp_path / "new" / "out"
    with StagedGroup(str(dest), "g") as group:
        for name in ("a", "sub/b"):
            with open(group.path(name), "w") as f:
                f.write(name)
            assert not (dest / name).exists()
        # The group is held: a second writer of it is refused while this one lives.
        with pytest.raises(OutputError, match=r"\.g\.staging: another process \(pid \d+\) is "
                                              r"writing these files now"):
            StagedGroup(str(dest), "g").__enter__()
        assert group.publish(["a", "sub/b"]) == [str(dest / "a"), str(dest / "sub/b")]
    assert sorted(os.listdir(dest)) == ["a", "sub"] and (dest / "sub" / "b").read_text() == "sub/b"
    # A writer killed after publishing "a" of ("a", "c"): its manifest and "c" stay.
    staging = dest / ".g.staging"
    (staging / "files").mkdir(parents=True)
    (staging / "files" / "c").write_text("c")
    (staging / "manifest").write_text("a\nc\n")
    assert StagedGroup.half_published_in(str(dest), "g") == [str(dest / "a")]
    with StagedGroup(str(dest), "g") as group:
        assert group.half_published == [str(dest / "a")]
        assert os.listdir(staging) == ["lock"]         # the killed writer's files are gone
    assert sorted(os.listdir(dest)) == ["a", "sub"]
    # An error inside the block leaves nothing, not even the folders it created.
    with pytest.raises(RuntimeError):
        with StagedGroup(str(tmp_path / "x" / "y"), "g") as group:
            open(group.path("a"), "w").close()
            raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["new"]
