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
