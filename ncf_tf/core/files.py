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
