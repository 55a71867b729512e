"""Run records: one JSON file per run, written by the program, atomically.

A record holds everything needed to trust or rerun a number: the full
configuration, the seed, library versions, the git commit, the data files'
SHA-256, every epoch's loss / HR / NDCG / seconds, the best epoch, the device
and the machine. Tables and plots in results/ are generated from these files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import platform
import socket
import subprocess
import time

import numpy as np

from ncf_tf.core.files import LockHeld, atomic_path, hold_lock


SELECTIONS = ("test", "validation", "last")
"""What picked the kept model: the test HR (the authors' protocol), a
validation split held out of training, or nothing (the last epoch)."""
OLD_SELECTIONS = {"none": "test", "test HR of the users not held out": "test"}
"""Older records' values, read as their :data:`SELECTIONS` name."""


class RecordError(ValueError):
    """A run record that cannot be read (empty, truncated, not a record)."""


@dataclasses.dataclass
class RunRecord:
    """One run's record, written by every producer, read by every table of results/.

    ``kind`` is ``train`` (GMF, MLP, NeuMF), ``baseline``, ``fold_in_train`` or
    ``fold_in``. Fields a kind does not have stay None and are not written;
    anything else a producer records goes in ``extra``, written at the top
    level beside the fields. ``path`` is where the record was read from or
    written to (not part of the file).
    """

    kind: str
    model: str | None = None
    dataset: str | None = None
    stage: str | None = None
    beyond_paper: bool | None = None
    params: dict | None = None
    config: dict = dataclasses.field(default_factory=dict)
    learner: str | None = None
    optimizer: str | None = None
    seed: int | None = None
    training_stream: list | None = None
    selection: str | None = None
    mode: str | None = None
    fast_mode: list | None = None
    beyond_authors: list | None = None
    device: str | None = None
    start_from: dict | None = None
    held_out_users: list | None = None
    num_train: int | None = None
    fold_in: dict | None = None
    folded_in: dict | None = None
    trained_with: dict | None = None
    untouched_rows: dict | None = None
    records: dict | None = None
    fit_without_s: float | None = None
    data: dict | None = None
    num_params: int | None = None
    versions: dict | None = None
    machine: dict | None = None
    git: dict | None = None
    started: str | None = None
    load_average: list | None = None
    status: str = "running"
    fit_s: float | None = None
    eval_s: float | None = None
    epochs: list | None = None
    resumed: list | None = None
    init: dict | None = None
    best_epoch: int | None = None
    best: dict | None = None
    best_validation: dict | None = None
    test_picked: dict | None = None
    held_out_at_best: dict | None = None
    full_ranking: dict | None = None
    diverged: dict | None = None
    wall_s: float | None = None
    weights_file: str | None = None
    not_finite: list | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    path: str = dataclasses.field(default="", compare=False)

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def name(self) -> str:
        """The run's name: the record file's name without ``.json``."""
        return os.path.splitext(os.path.basename(self.path))[0]

    def to_dict(self) -> dict:
        """The fields in order (None left out, except ``best`` of a run that kept
        its last epoch), then ``extra``; values as they are (strict: :meth:`write`)."""
        out = {}
        for field in dataclasses.fields(self):
            if field.name in ("extra", "path"):
                continue
            value = getattr(self, field.name)
            if value is not None or (field.name == "best" and self.selection == "last"):
                out[field.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, values: dict, path: str = "") -> "RunRecord":
        """A record from its dict (an old one's ``selection`` mapped to :data:`SELECTIONS`)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "path"}
        known = {k: v for k, v in values.items() if k in names}
        extra = {k: v for k, v in values.items() if k not in names}
        if "kind" not in known:
            raise RecordError(f"{path or 'record'}: not a run record (no 'kind')")
        selection = known.get("selection")
        if selection is None and known["kind"] == "train":
            selection = "test"    # records before the field was written
        known["selection"] = OLD_SELECTIONS.get(selection, selection)
        return cls(**known, extra=extra, path=path)

    def write(self, path: str | None = None) -> None:
        """Writes the record to ``path`` (default: :attr:`path`) atomically, as
        strict JSON: a value that is not a finite number is written as null and
        where it was is listed in ``not_finite``."""
        self.path = path or self.path
        found = []
        values = _jsonable_tree(self.to_dict(), found)
        if missing := sorted(set(found) - set(self.not_finite or [])):
            self.not_finite = (self.not_finite or []) + missing
            values = _jsonable_tree(self.to_dict(), [])
        write_json(self.path, values)

    @classmethod
    def load(cls, path: str) -> "RunRecord":
        """Reads the record at ``path`` (RecordError if empty, truncated or no record)."""
        return cls.from_dict(read_json(path), path)


def write_json(path: str, payload: dict) -> None:
    """Writes ``payload`` to ``path`` atomically (temp file, then rename), as strict JSON."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(payload, f, indent=1, default=_jsonable, allow_nan=False)
        f.write("\n")


def read_json(path: str) -> dict:
    """The JSON object in ``path`` (RecordError if empty, truncated or not an object)."""
    with open(path) as f:
        text = f.read()
    try:
        values = json.loads(text)
    except ValueError as e:
        raise RecordError(f"{path}: {'empty' if not text.strip() else 'damaged'} JSON file "
                          f"({e}); remove it (a run starts again without it)") from None
    if not isinstance(values, dict):
        raise RecordError(f"{path}: not a run record (a JSON {type(values).__name__}); "
                          "remove it")
    return values


def load_json(path: str, error: type[Exception]):
    """The JSON value in the run record ``path``; ``error`` if missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise error(f"{path}: run record not found") from None
    except (OSError, ValueError) as e:
        raise error(f"{path}: not a readable JSON run record ({e})") from None


def is_finished(path: str) -> bool:
    """Whether ``path`` is a record of a finished (or diverged) run, never replaced."""
    try:
        return read_json(path).get("status") in ("finished", "diverged")
    except (OSError, ValueError):
        return False


class RunBusyError(ValueError):
    """A run name another living process is writing."""


@dataclasses.dataclass
class RunOwner:
    """This process's :func:`~ncf_tf.core.files.hold_lock` on a run name's lock file."""

    name: str
    lock_path: str
    handle: object

    def release(self) -> None:
        """Gives the name up and removes the lock file."""
        if self.handle is None:
            return
        # Removed while still held: a process that opened the old file meanwhile
        # sees it is gone once it holds it, and tries again (own_run).
        if os.path.exists(self.lock_path):
            os.remove(self.lock_path)
        self.handle.close()
        self.handle = None


def _owner(folder: str, name: str, suffix: str) -> RunOwner:
    """This process's hold on run ``name`` (RunBusyError naming the owner's pid)."""
    path = os.path.join(folder, f"{name}{suffix}.lock")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        return RunOwner(name, path, hold_lock(path))
    except LockHeld as e:
        raise RunBusyError(f"run {name} is being written by process {e.owner or 'unknown'} "
                           f"(lock {path}); wait for it to end or choose another "
                           "run_name") from None


def own_run(folder: str, name: str, suffix: str = "") -> RunOwner:
    """Takes run ``name`` in ``folder`` for this process until :meth:`RunOwner.release`.

    A finished (or diverged) record is never replaced: when ``<name>.json`` is
    one, the run takes ``<name>_<time stamp>`` instead. ``suffix`` names a
    part of a run (a worker's checkpoint) owned apart from its record.

    Raises:
        RunBusyError: another living process owns the name (naming its pid).
    """
    owner = _owner(folder, name, suffix)
    record = os.path.join(folder, f"{name}.json")
    try:
        done = os.path.exists(record) and RunRecord.load(record).status in ("finished",
                                                                            "diverged")
    except (RecordError, TypeError):
        owner.release()
        raise RecordError(f"{record}: damaged run record; remove it (a run of this name "
                          "then starts again, or resumes from its checkpoint)") from None
    if done:
        owner.release()
        name = f"{name}_{time.strftime('%Y%m%d-%H%M%S')}"
        owner = _owner(folder, name, suffix)
    return owner


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _jsonable_tree(value, found: list, where: str = ""):
    """``value`` with numpy scalars and arrays as Python values, tuples as lists
    and floats that are not finite as None, each place (``epochs[3].loss``) of
    those listed in ``found``."""
    if isinstance(value, dict):
        return {k: _jsonable_tree(v, found, f"{where}.{k}" if where else str(k))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable_tree(v, found, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (np.generic, np.ndarray)):
        return _jsonable_tree(_jsonable(value), found, where)
    if isinstance(value, float) and not math.isfinite(value):
        found.append(f"{where}: {value} (not a finite number: written as null)")
        return None
    return value


def git_commit() -> dict:
    """The commit of the ncf_tf checkout and whether it had local changes."""
    here = os.path.dirname(os.path.abspath(__file__))

    def git(*args):
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD") or None,
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (None where there is none)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def intra_op_threads() -> int:
    """``TF_NUM_INTRAOP_THREADS`` (set by bin/reproduce), else all the cores."""
    value = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else os.cpu_count()


def environment() -> dict:
    """Library versions and the machine, for the record."""
    import keras
    import pandas
    import scipy
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "scipy": scipy.__version__, "pandas": pandas.__version__,
                "keras": keras.__version__, "backend": keras.config.backend()}
    if keras.config.backend() in ("tensorflow", "jax"):
        versions[keras.config.backend()] = importlib.import_module(
            keras.config.backend()).__version__
    return {"versions": versions,
            "machine": {"hostname": socket.gethostname(), "platform": platform.platform(),
                        "processor": platform.processor() or platform.machine(),
                        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                        "intra_op_threads": intra_op_threads()},
            "git": git_commit(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
