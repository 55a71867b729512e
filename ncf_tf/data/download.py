"""Fetch the authors' data files, verified, or copy them.

The files come from the authors' repository at a pinned commit. Each file is
accepted when its git blob id (``git hash-object``) is the authors', or its
SHA-256 is a known-good one (``Data/CHECKSUMS``): the ml-1m train file
distributed with ncf_tf's CI is a faithful rebuild of the authors' (same
training pairs, placeholder ratings and timestamps), identified by SHA-256.
A file is written under its final name only after it verified.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request

from ncf_tf.core.files import atomic_path

AUTHORS_COMMIT = "4aab159e81c44b062c091bdaed0ab54ac632371f"
BASE_URL = ("https://raw.githubusercontent.com/hexiangnan/neural_collaborative_filtering/"
            f"{AUTHORS_COMMIT}/")
CHECKSUMS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "Data", "CHECKSUMS")
GROUPS = {
    "ml-1m": ["ml-1m.train.rating", "ml-1m.test.rating", "ml-1m.test.negative"],
    "pinterest-20": ["pinterest-20.train.rating", "pinterest-20.test.rating",
                     "pinterest-20.test.negative"],
    "ml-1m-pretrain": ["authors_pretrain/ml-1m_GMF_8_1501651698.h5",
                       "authors_pretrain/ml-1m_MLP_[64,32,16,8]_1501652038.h5"],
}


class DownloadError(ValueError):
    """A file could not be fetched, or did not verify."""


def read_checksums(path: str = CHECKSUMS) -> dict[str, tuple[str, str]]:
    """file -> (authors' git blob id, known-good SHA-256 or "-")."""
    table = {}
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, blob, digest = line.rstrip("\n").split("\t")
                table[name] = (blob, digest)
    return table


def digests(path: str) -> tuple[str, str]:
    """(git blob id, SHA-256) of a file."""
    size = os.path.getsize(path)
    blob = hashlib.sha1(f"blob {size}\0".encode())
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            blob.update(block)
            sha.update(block)
    return blob.hexdigest(), sha.hexdigest()


def verified(path: str, expected: tuple[str, str]) -> bool:
    blob, sha = digests(path)
    return blob == expected[0] or sha == expected[1]


def remote_path(name: str) -> str:
    """Where a file lives in the authors' repository."""
    if name.startswith("authors_pretrain/"):
        return "Pretrain/" + name.split("/", 1)[1]
    return "Data/" + name


def fetch(name: str, dest: str, source: str | None, expected: tuple[str, str],
          log=print) -> str:
    """Puts a verified copy of ``name`` at ``dest/name``; returns what it did.

    On failure nothing is left behind: no partial file, no folder it created.
    """
    target = os.path.join(dest, name)
    if os.path.isfile(target) and verified(target, expected):
        return "present"
    origin = os.path.join(source, name) if source else BASE_URL + urllib.request.quote(
        remote_path(name))
    if source and not os.path.isfile(origin):
        raise DownloadError(f"{origin}: not found (--from {source})")
    folder = os.path.dirname(os.path.abspath(target))
    first_new = None   # the outermost folder this call creates, removed on failure
    while not os.path.exists(folder):
        first_new, folder = folder, os.path.dirname(folder)
    try:
        with atomic_path(target, suffix=".part") as tmp:
            if source:
                shutil.copyfile(origin, tmp)
            else:
                log(f"Downloading {origin}")
                try:
                    with urllib.request.urlopen(origin, timeout=60) as response, \
                            open(tmp, "wb") as out:
                        shutil.copyfileobj(response, out)
                except OSError as e:
                    raise DownloadError(f"{origin}: download failed ({e}); without network, "
                                        "copy the files from a local folder with --from DIR") from None
            if not verified(tmp, expected):
                blob, sha = digests(tmp)
                raise DownloadError(f"{origin}: git blob id {blob} / SHA-256 {sha} match neither "
                                    f"the authors' blob id {expected[0]} nor a known-good SHA-256")
    except BaseException as e:
        if first_new:
            shutil.rmtree(first_new, ignore_errors=True)
        if isinstance(e, OSError):
            raise DownloadError(f"--dest {dest}: cannot write {target} ({e.strerror or e})") from None
        raise
    return "copied" if source else "downloaded"


def download(groups: list[str], dest: str, source: str | None = None, log=print) -> None:
    """Fetches every file of ``groups`` into ``dest`` (see module docstring)."""
    table = read_checksums()
    for group in groups:
        for name in GROUPS[group]:
            status = fetch(name, dest, source, table[name], log)
            log(f"{os.path.join(dest, name)}: {status}, verified")

