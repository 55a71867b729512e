"""Files in and out: one opener for plain or gzipped input; outputs written
atomically, one file or a group of files (:class:`StagedGroup`).

A crash or an error never leaves a half-written file under the final name,
and a file gets the permissions any new file of the user would (not a
temporary file's 0600). Standard library only: light commands use it
without importing Keras.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import os
import re
import shutil
import tempfile
from typing import IO, Iterator

GZIP_MAGIC = b"\x1f\x8b"
# First bytes of the archives and compressions that are not read.
OTHER_MAGIC = {b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ": "xz",
               b"\x28\xb5\x2f\xfd": "zstd", b"7z\xbc\xaf": "7z"}


class InputFileError(ValueError):
    """An input file that cannot be read: missing, or compressed in a way not read."""


def open_input(path: str, binary: bool = False) -> IO:
    """Opens a plain or gzipped (``.gz`` or gzip's magic bytes) file for
    reading: text (UTF-8) or, with ``binary``, bytes.

    Raises:
        InputFileError: the file does not exist, is a folder, or is another
            archive or compression (zip, ...).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a folder, not a file") from None
    for magic, kind in OTHER_MAGIC.items():
        if head.startswith(magic):
            raise InputFileError(f"{path}: a {kind} file; only plain text or .gz is read "
                                 f"(unpack it first)")
    if path.endswith(".gz") or head.startswith(GZIP_MAGIC):
        return gzip.open(path, "rb") if binary else gzip.open(path, "rt", encoding="utf-8")
    return open(path, "rb") if binary else open(path, "rt", encoding="utf-8")


def current_umask() -> int:
    """The process's umask (reading it means setting it; it is set back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_name(path: str, pid: int | None = None, suffix: str = ".tmp") -> str:
    """Where ``path`` is written before its rename: beside it, hidden, with the pid."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid() if pid is None else pid}{suffix}")


def remove_stale_temporaries(path: str, suffix: str = ".tmp") -> list[str]:
    """Removes (and returns) the temporaries of ``path`` left by dead writers."""
    folder, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+){re.escape(suffix)}")
    removed = []
    for entry in os.listdir(folder) if os.path.isdir(folder) else []:
        match = pattern.fullmatch(entry)
        if match and not _alive(int(match.group(1))):
            stale = os.path.join(folder, entry)
            if os.path.isdir(stale) and not os.path.islink(stale):
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(stale)
            removed.append(stale)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False   # our own leftover (a pid reused after a crash)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, another user's
        pass
    return True


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ".tmp") -> Iterator[str]:
    """Yields a :func:`temporary_name` beside ``path`` (folder created, stale
    temporaries removed), renamed to ``path`` if the block ends normally, else
    removed. ``suffix``: for writers that choose the format by extension."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    remove_stale_temporaries(path, suffix)
    tmp = temporary_name(path, suffix=suffix)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def first_line(path: str) -> str:
    """The first non-blank line of a plain or gzipped file, without its line end;
    "" when there is none."""
    with open_input(path) as f:
        return next((line.rstrip("\r\n") for line in f if line.strip()), "")


class OutputError(ValueError):
    """An output folder or file that cannot be created or written."""


def check_output_dir(path: str, flag: str) -> None:
    """Fails early, with one line naming ``flag``, if ``path`` cannot become a
    writable folder; leaves nothing behind.

    The test is real, not ``os.access`` (which says yes to root everywhere,
    /proc included): a folder is made and removed in ``path`` or its nearest
    existing ancestor.

    Raises:
        OutputError: ``path`` is empty, or it or an ancestor is a file, or the
            folder where it would be made refuses a new entry.
    """
    _check_writable(path, flag, is_folder=True)


def check_output_parent(path: str, flag: str) -> None:
    """:func:`check_output_dir` for the folder that will hold the file or folder ``path``."""
    _check_writable(path, flag, is_folder=False)


def _check_writable(path: str, flag: str, is_folder: bool) -> None:
    if not path:
        raise OutputError(f"--{flag} is empty; expected {'a folder' if is_folder else 'a path'}")
    target = os.path.abspath(path)
    probe = target if is_folder else os.path.dirname(target)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        what = "is" if probe == target else f"is inside {probe}, which is"
        raise OutputError(f"--{flag} {path} {what} a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".ncf_tf_write_check."))
    except OSError as e:
        what = "is not writable" if probe == target else f"cannot be created in {probe}"
        raise OutputError(f"--{flag} {path} {what}: {e.strerror or e}") from None


def hash_file(path: str, *hashes) -> list[str]:
    """The hex digests of the file by each ``hashlib`` object, read once."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for digest in hashes:
                digest.update(block)
    return [digest.hexdigest() for digest in hashes]


class LockHeld(Exception):
    """A lock file another living process holds; ``owner`` is its pid ('' if not written yet)."""

    def __init__(self, path: str, owner: str):
        super().__init__(f"{path}: held by process {owner or '?'}")
        self.path, self.owner = path, owner


def hold_lock(path: str) -> IO:
    """Takes an exclusive ``flock`` on ``path`` (created if need be), writes
    this process's pid in it and returns the open file: the lock lasts until
    it is closed or the process ends (``kill -9`` included). A lock file
    removed meanwhile is taken anew, so an owner may remove it to release it.

    Raises:
        LockHeld: another process holds it.
    """
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip()
            handle.close()
            raise LockHeld(path, owner) from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            return handle
        handle.close()   # its owner released it under us: lock the new file


class StagedGroup:
    """Files published in ``folder`` together, after all of them were written.

    ``with StagedGroup(folder, tag) as group:`` holds the group's lock (a
    second live process is refused) and clears what a killed process left in
    ``<folder>/.<tag>.staging``. Files written at :meth:`path` are published
    by :meth:`publish`: a manifest of their names, then one rename each; from
    a killed process's manifest the next learns :attr:`half_published`. On an
    exception inside the block nothing stays, not even a ``folder`` it created.

    Raises:
        OutputError: the folders cannot be created, or a live process holds the group.
    """

    MANIFEST = "manifest"
    LOCK = "lock"

    def __init__(self, folder: str, tag: str):
        self.folder, self.tag = folder, tag
        self.staging = os.path.join(folder, f".{tag}.staging")
        self.half_published: list[str] = []
        self._lock = self._created = None

    def __enter__(self) -> "StagedGroup":
        probe = os.path.abspath(self.folder)
        while not os.path.exists(probe):
            self._created, probe = probe, os.path.dirname(probe)
        try:
            os.makedirs(self.staging, exist_ok=True)
            self._lock = hold_lock(os.path.join(self.staging, self.LOCK))
        except LockHeld as e:
            raise OutputError(f"{self.staging}: another process (pid {e.owner or '?'}) is "
                              "writing these files now") from None
        except OSError as e:
            self.__exit__(OSError, None, None)
            raise OutputError(f"{self.folder}: cannot write ({e.strerror or e})") from None
        self.half_published = self.half_published_in(self.folder, self.tag)
        # what a killed process left, but the lock
        shutil.rmtree(os.path.join(self.staging, "files"), ignore_errors=True)
        for name in (self.MANIFEST, self.MANIFEST + ".new"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.staging, name))
        return self

    @classmethod
    def half_published_in(cls, folder: str, tag: str) -> list[str]:
        """The files of group ``tag`` that a killed process published in ``folder``
        before it could publish the rest (read without taking the lock)."""
        staging = os.path.join(folder, f".{tag}.staging")
        try:
            with open(os.path.join(staging, cls.MANIFEST), encoding="utf-8") as f:
                names = f.read().splitlines()
        except OSError:
            return []
        return [os.path.join(folder, n) for n in names
                if not os.path.exists(os.path.join(staging, "files", n))
                and os.path.exists(os.path.join(folder, n))]

    def path(self, name: str) -> str:
        """Where to write the group's file ``name`` (a path relative to ``folder``)."""
        path = os.path.join(self.staging, "files", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def publish(self, names: list[str]) -> list[str]:
        """Renames the written files ``names`` into ``folder``; returns their final paths."""
        manifest = os.path.join(self.staging, self.MANIFEST)
        with open(manifest + ".new", "w", encoding="utf-8") as f:
            f.writelines(f"{n}\n" for n in names)
        os.replace(manifest + ".new", manifest)
        mask = current_umask()
        targets = []
        for name in names:
            target = os.path.join(self.folder, name)
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            staged = os.path.join(self.staging, "files", name)
            os.chmod(staged, 0o666 & ~mask)
            os.replace(staged, target)
            targets.append(target)
        os.remove(manifest)
        self._created = None   # published: the folder is the user's now
        return targets

    def __exit__(self, kind, value, traceback) -> None:
        # An error during publish keeps the manifest (and the staging folder)
        # for the next process of the group to read.
        if not os.path.exists(os.path.join(self.staging, self.MANIFEST)):
            shutil.rmtree(self.staging, ignore_errors=True)
        if self._lock:
            self._lock.close()
        if kind is not None and self._created:
            shutil.rmtree(self._created, ignore_errors=True)
