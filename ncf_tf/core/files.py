"""Writing an output file atomically: beside its destination, then renamed.

A crash or an error never leaves a half-written file under the final name,
and the file gets the permissions any new file of the user would (the
temporary file's private 0600 is not kept). Standard library only, so that
light commands can use it without importing Keras.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator


def current_umask() -> int:
    """The process's umask (reading it means setting it; it is set back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ".tmp") -> Iterator[str]:
    """Yields a fresh temporary file name beside ``path`` (its folder is
    created); when the block ends normally the file is renamed to ``path``,
    otherwise it is removed.

    ``suffix`` is for writers that choose the format by extension (Keras's
    ``.weights.h5``, ``.png``).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class OutputError(ValueError):
    """An output folder or file that cannot be created or written."""


def check_output_dir(path: str, flag: str) -> None:
    """Fails early, with one line naming ``flag``, if ``path`` cannot become a
    writable folder; leaves nothing behind either way.

    The test is real, not ``os.access`` (which says yes to root everywhere, /proc
    included): a temporary folder is made and removed in ``path`` or, if it does
    not exist yet, in its nearest existing ancestor.

    Raises:
        OutputError: ``path`` or an ancestor is a file, or the folder where
            it would be made refuses a new entry.
    """
    if not path:
        raise OutputError(f"--{flag} is empty; expected a folder")
    _check_writable(os.path.abspath(path), path, flag)


def check_output_parent(path: str, flag: str) -> None:
    """:func:`check_output_dir` for the folder that will hold the file or folder ``path``."""
    if not path:
        raise OutputError(f"--{flag} is empty; expected a path")
    _check_writable(os.path.dirname(os.path.abspath(path)), path, flag)


def _check_writable(folder: str, path: str, flag: str) -> None:
    """Raises OutputError unless ``folder`` (which ``path`` names or holds) exists as
    a writable folder or can be created as one."""
    probe = folder
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        what = "is" if probe == os.path.abspath(path) else f"is inside {probe}, which is"
        raise OutputError(f"--{flag} {path} {what} a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".ncf_tf_write_check."))
    except OSError as e:
        what = "is not writable" if probe == os.path.abspath(path) else \
            f"cannot be created in {probe}"
        raise OutputError(f"--{flag} {path} {what}: {e.strerror or e}") from None


def hash_file(path: str, *hashes) -> list[str]:
    """Feeds the file to each ``hashlib`` object (in one read, 1 MiB at a time)
    and returns their hex digests, in order."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for digest in hashes:
                digest.update(block)
    return [digest.hexdigest() for digest in hashes]
