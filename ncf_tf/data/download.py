"""Fetch the authors' data files, verified, or copy them; MovieLens-20M/25M; derived sets.

An authors' file (from their repository at a pinned commit) is accepted when
its git blob id is theirs or its SHA-256 a known-good one (``Data/CHECKSUMS``:
CI's ml-1m train file is a faithful rebuild). ``ml-20m`` and ``ml-25m`` are
GroupLens's zips, MD5-checked, kept in ``dest`` and converted with the MLPerf
protocol (seed 0); ``ml-1m-neg999`` is ml-1m with 999 test negatives per user
(seed 0). A data set's files are staged in ``dest`` and published together
once verified; the next run removes what a killed run staged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import zipfile

import numpy as np

from ncf_tf.core.files import OutputError, StagedGroup, hash_file
from ncf_tf.data.prepare import PROTOCOLS, PrepareError, output_paths, prepare, resample_negatives
from ncf_tf.data.prepare.negatives import NEGATIVE_SUFFIXES

AUTHORS_COMMIT = "4aab159e81c44b062c091bdaed0ab54ac632371f"
BASE_URL = ("https://raw.githubusercontent.com/hexiangnan/neural_collaborative_filtering/"
            f"{AUTHORS_COMMIT}/")
CHECKSUMS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "Data", "CHECKSUMS")
GROUPS = {name: [f"{name}.{suffix}" for suffix in NEGATIVE_SUFFIXES]
          for name in ("ml-1m", "pinterest-20")}
GROUPS["ml-1m-pretrain"] = ["authors_pretrain/ml-1m_GMF_8_1501651698.h5",
                            "authors_pretrain/ml-1m_MLP_[64,32,16,8]_1501652038.h5"]


# GroupLens's MovieLens zips: URL and the MD5 published beside each (<url>.md5),
# as pinned in github.com/eli-osherovich/papers_with_code (datasets/movielens).
MOVIELENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
MOVIELENS_ZIPS = {
    "ml-20m": (MOVIELENS_BASE_URL + "ml-20m.zip", "cd245b17a1ae2cc31bb14903e1204af3"),
    "ml-25m": (MOVIELENS_BASE_URL + "ml-25m.zip", "6b51fb2759a8657d3bfcbfc42b592ada"),
}
# Derived data sets: name -> (data set it is drawn from, test negatives, seed).
DERIVED = {"ml-1m-neg999": ("ml-1m", 999, 0)}
DATASETS = sorted(set(GROUPS) | set(MOVIELENS_ZIPS) | set(DERIVED))
SEED = 0   # of the MovieLens-20M/25M test negatives


class DownloadError(PrepareError):
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
    blob = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    return tuple(hash_file(path, blob, hashlib.sha256()))


def verified(path: str, expected: tuple[str, str]) -> bool:
    blob, sha = digests(path)
    return blob == expected[0] or sha == expected[1]


def remote_path(name: str) -> str:
    """Where a file lives in the authors' repository."""
    return "Data/" + name if "/" not in name else "Pretrain/" + name.split("/", 1)[1]


def _copy_or_download(origin: str, path: str, local: bool, log) -> None:
    if local:
        shutil.copyfile(origin, path)
        return
    log(f"Downloading {origin}")
    try:
        with urllib.request.urlopen(origin, timeout=60) as response, open(path, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as e:
        raise DownloadError(f"{origin}: download failed ({e}); without network, copy the "
                            "files from a local folder", suggest={"source": "DIR"}) from None


def fetch_group(names: list[str], dest: str, source: str | None,
                table: dict[str, tuple[str, str]], tag: str, log=print) -> dict[str, str]:
    """Puts verified copies of ``names`` (paths relative to ``dest``) in ``dest``,
    published together, or nothing on failure; returns what it did to each
    ("present", "copied", "downloaded")."""
    status = {name: "present" for name in names
              if os.path.isfile(os.path.join(dest, name))
              and verified(os.path.join(dest, name), table[name])}
    wanted = [name for name in names if name not in status]
    origins = {name: os.path.join(source, name) if source else
               BASE_URL + urllib.request.quote(remote_path(name)) for name in wanted}
    for name in wanted:
        if source and not os.path.isfile(origins[name]):
            raise DownloadError(f"{origins[name]}: not found")
    if not wanted:
        return status
    try:
        with StagedGroup(dest, f"{tag}.download") as group:
            for name in wanted:
                path = group.path(name)
                _copy_or_download(origins[name], path, bool(source), log)
                if not verified(path, table[name]):
                    blob, sha = digests(path)
                    raise DownloadError(
                        f"{origins[name]}: git blob id {blob} / SHA-256 {sha} match neither "
                        f"the authors' blob id {table[name][0]} nor a known-good SHA-256")
                status[name] = "copied" if source else "downloaded"
            group.publish(wanted)
    except (OSError, OutputError) as e:
        raise DownloadError(f"{dest}: cannot write ({getattr(e, 'strerror', None) or e})") \
            from None
    return status


def fetch(name: str, dest: str, source: str | None, expected: tuple[str, str],
          log=print) -> str:
    """:func:`fetch_group` of one file; returns what it did."""
    return fetch_group([name], dest, source, {name: expected}, name, log)[name]


def md5(path: str) -> str:
    return hash_file(path, hashlib.md5())[0]


def _fetch_zip(dataset: str, dest: str, source: str | None, url: str, expected_md5: str,
               group: StagedGroup, log) -> str:
    """The path of a verified ``<dataset>.zip``: in ``source``, or in ``dest``,
    downloaded (staged in ``group``) unless a verified copy is there."""
    name = f"{dataset}.zip"
    path = origin = os.path.join(source or dest, name)
    if source and not os.path.isfile(path):
        raise DownloadError(f"{path}: not found")
    if not source:
        if os.path.isfile(path) and md5(path) == expected_md5:
            return path
        path, origin = group.path(name), url
        _copy_or_download(url, path, False, log)
    found = md5(path)
    if found != expected_md5:
        raise DownloadError(f"{origin}: MD5 {found}, expected {expected_md5} (GroupLens's "
                            "published checksum)")
    return path if source else group.publish([name])[0]


def movielens(dataset: str, dest: str, source: str | None = None, log=print) -> str:
    """Fetches (or takes from ``source``) GroupLens's zip, checks its MD5 and
    converts its ``ratings.csv`` into ``dest`` with the MLPerf protocol;
    returns "present" (all five files there already) or "prepared"."""
    url, expected = MOVIELENS_ZIPS[dataset]
    if all(os.path.isfile(p) for p in output_paths(dest, dataset)):
        return "present"
    try:
        with StagedGroup(dest, f"{dataset}.download") as group:
            archive = _fetch_zip(dataset, dest, source, url, expected, group, log)
            with zipfile.ZipFile(archive) as z:
                members = [m for m in z.namelist() if m.rsplit("/", 1)[-1] == "ratings.csv"]
                if len(members) != 1:
                    raise DownloadError(f"{archive}: expected one ratings.csv in the zip, "
                                        f"found {len(members)}")
                csv = group.path("ratings.csv")
                with z.open(members[0]) as f, open(csv, "wb") as out:
                    shutil.copyfileobj(f, out, 1 << 20)
            log(f"Converting {archive}:{members[0]} (MLPerf protocol: users with >= "
                f"{PROTOCOLS['mlperf']['min_interactions']} ratings, "
                f"{PROTOCOLS['mlperf']['num_test_neg']} test negatives, seed {SEED})")
            data = prepare(csv, dest, dataset, np.random.default_rng(SEED), fmt="movielens-csv",
                           overwrite=True, **PROTOCOLS["mlperf"])
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{archive}: cannot unzip ({e})") from None
    except (OSError, OutputError) as e:
        raise DownloadError(f"{dest}: cannot write ({getattr(e, 'strerror', None) or e})") \
            from None
    for line in data.stats.describe():
        log(line)
    log(data.summary())
    return "prepared"


def derived(dataset: str, dest: str, source: str | None = None, log=print) -> str:
    """Makes a :data:`DERIVED` data set in ``dest`` from its parent (fetched
    first); returns "present" (its three files are there) or "prepared"."""
    parent, num_test_neg, seed = DERIVED[dataset]
    download([parent], dest, source, log)
    if all(os.path.isfile(p) for p in output_paths(dest, dataset, NEGATIVE_SUFFIXES)):
        return "present"
    resample_negatives(os.path.join(dest, parent), dest, dataset, num_test_neg,
                       np.random.default_rng(seed), overwrite=True)
    return "prepared"


def download(groups: list[str], dest: str, source: str | None = None, log=print) -> None:
    """Fetches every file of ``groups`` into ``dest`` (see module docstring)."""
    table = read_checksums()
    for group in groups:
        if group in MOVIELENS_ZIPS:
            log(f"{os.path.join(dest, group)}.*: {movielens(group, dest, source, log)}")
        elif group in DERIVED:
            status = derived(group, dest, source, log)
            parent, count, seed = DERIVED[group]
            log(f"{os.path.join(dest, group)}.*: {status} ({count} test negatives drawn "
                f"for {parent}'s test lines, seed {seed})")
        else:
            for name, status in fetch_group(GROUPS[group], dest, source, table, group,
                                            log).items():
                log(f"{os.path.join(dest, name)}: {status}, verified")

