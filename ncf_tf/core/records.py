"""Run records: one JSON file per run, written by the program, atomically.

A record holds everything needed to trust or rerun a number: the full
configuration, the seed, library versions, the git commit, the data files'
SHA-256, every epoch's loss / HR / NDCG / seconds, the best epoch, the device
and the machine. Tables and plots in results/ are generated from these files.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time

import numpy as np

from ncf_tf.core.files import atomic_path


def write_json(path: str, payload: dict) -> None:
    """Writes ``payload`` to ``path`` atomically (temp file, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(payload, f, indent=1, default=_jsonable)
        f.write("\n")


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def is_finished(path: str) -> bool:
    """Whether ``path`` is a run record of a finished run."""
    if not os.path.exists(path):
        return False
    try:
        return read_json(path).get("status") == "finished"
    except (OSError, ValueError):
        return False


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def intra_op_threads() -> int:
    """The threads TensorFlow's ops use: ``TF_NUM_INTRAOP_THREADS`` (set per
    run by bin/reproduce: cores / runs at a time), else all the cores."""
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
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf
        versions["tensorflow"] = tf.__version__
    elif keras.config.backend() == "jax":
        import jax
        versions["jax"] = jax.__version__
    return {"versions": versions,
            "machine": {"hostname": socket.gethostname(), "platform": platform.platform(),
                        "processor": platform.processor() or platform.machine(),
                        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                        "intra_op_threads": intra_op_threads()},
            "git": git_commit(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
