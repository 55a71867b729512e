"""--distribute multiworker for real: two worker processes on 127.0.0.1, each
with its own TF_CONFIG, train NeuMF through bin/train_neumf (collective
all-reduce over gRPC on loopback, CPU only) and end with the weights of one
process trained on the same global batches.

MultiWorkerMirroredStrategy splits each global batch of B instances into one
half per worker and sums the two halves' gradients, each the mean over B/2
instances scaled by 1/2: the gradient of the whole batch's mean, as long as
every batch splits evenly (B even, and the epoch's remainder batch even).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from conftest import REPO, tensorflow_only, write_dataset

pytestmark = tensorflow_only

TIMEOUT_S = 180
"""For the whole job (both workers and the one-process run, started together);
it takes 33-56 s on 2 shared CPU cores (load 4-8). A worker whose peer died waits in
its next collective, so a broken job ends here, its processes killed."""

BATCH, NUM_NEG, EPOCHS = 128, 2, 2
FLAGS = ["--dataset", "toy", "--epochs", str(EPOCHS), "--num_factors", "4",
         "--layers", "[16,8,4]", "--reg_layers", "[0,0,0]", "--batch_size", str(BATCH),
         "--num_neg", str(NUM_NEG), "--lr", "0.01", "--seed", "0"]
# lr 0.01: HR rises from epoch 0 to epoch 1 on this data, so the best epoch, whose
# weights are saved, is the last one and the weights compared are the final ones.

RTOL, ATOL = 1e-4, 1e-5
"""The distributed step is the same sum in another float32 order (two means
over 64, halved and all-reduced, against one mean over 128): about one ulp per
gradient, which Adam enlarges where a weight's gradient is near zero (it steps
by lr * m / sqrt(v), about lr whatever the gradient's size). Measured here
over the 26 steps: at most 1.9e-6 (weights up to 0.9), 0.07 of this tolerance.
A real mismatch is far larger: an odd batch of 123, split 62/61 with each half
weighted 1/2 instead of by its size, ends 0.10 apart (1e4 times the tolerance)."""


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (all bound at once, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def run_together(commands: dict, root) -> dict:
    """Starts every ``name: (argv, extra_env)`` at once and waits for all, up to
    TIMEOUT_S in total; kills every one still running on timeout or failure.
    Returns ``name: (exit code or None if killed, output)``."""
    base = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    # CPU only, as CI runs: the one-process run and the workers then use the same kernels.
    base.update(CUDA_VISIBLE_DEVICES="", NCF_TF_TRACEBACK="1")
    procs, logs = {}, {}
    try:
        for name, (argv, extra) in commands.items():
            logs[name] = open(root / f"{name}.log", "w+")
            procs[name] = subprocess.Popen([sys.executable, *argv], cwd=REPO,
                                           env={**base, **extra}, stdout=logs[name],
                                           stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT_S
        codes = {}
        # Until all have ended, one has failed (the others would wait on its
        # collectives) or the time is up.
        while time.monotonic() < deadline:
            codes = {name: proc.poll() for name, proc in procs.items()}
            if all(c == 0 for c in codes.values()) or any(c not in (None, 0)
                                                           for c in codes.values()):
                break
            time.sleep(0.2)
    finally:
        # SIGKILL: a worker waiting for its peers does not end on SIGTERM.
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out = {}
    for name, log in logs.items():
        log.seek(0)
        out[name] = (codes.get(name), log.read())
        log.close()
    return out


def failure(results: dict) -> str:
    return "\n".join(f"--- {name}: exit {code} ---\n{text[-3000:]}"
                     for name, (code, text) in results.items() if code != 0)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Two workers (each with its own folders, as on two machines) and the
    one-process run of the same flags, from one generated data set."""
    root = tmp_path_factory.mktemp("multiworker")
    data = write_dataset(root / "data")
    instances = len(data["train"]) * (1 + NUM_NEG)
    assert BATCH % 2 == 0 and instances % BATCH % 2 == 0, \
        "every batch must split evenly over the two workers for the updates to be equal"
    out = {name: {"models": root / name / "models", "results": root / name / "results"}
           for name in ("single", "worker0", "worker1")}

    def argv(name, *more):
        return ["bin/train_neumf", "--path", data["folder"], *FLAGS, *more,
                "--model_dir", str(out[name]["models"]),
                "--results_dir", str(out[name]["results"])]

    for attempt in range(2):
        ports = free_ports(2)
        commands = {"single": (argv("single"), {})}
        for i in (0, 1):
            commands[f"worker{i}"] = (argv(f"worker{i}", "--distribute", "multiworker"),
                                      {"TF_CONFIG": tf_config(ports, i)})
        results = run_together(commands, root)
        if all(code == 0 for code, _ in results.values()):
            break
        # A port taken between free_ports and the gRPC server's bind: once more.
        if attempt == 0 and "already in use" in failure(results).lower():
            continue
        pytest.fail("the multi-worker job failed:\n" + failure(results))
    return out


def record(folder) -> dict:
    (path,) = [p for p in folder.iterdir() if p.suffix == ".json"]
    return json.loads(path.read_text())


def files_under(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, names in os.walk(folder) for f in names)


@pytest.mark.slow
def test_two_workers_end_with_the_one_process_weights(job):
    from ncf_tf.models.weights import read_named_weights

    single, chief = record(job["single"]["results"]), record(job["worker0"]["results"])
    assert chief["device"] == "multiworker: 2 replicas"
    assert chief["config"]["distribute"] == "multiworker"
    assert single["best_epoch"] == chief["best_epoch"] == EPOCHS - 1, \
        "the saved (best-epoch) weights must be the final ones for this comparison"
    for a, b in zip(single["epochs"], chief["epochs"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=RTOL)
        assert (b["hr"], b["ndcg"]) == pytest.approx((a["hr"], a["ndcg"]), abs=1e-6)
    want = read_named_weights(single["weights_file"])
    got = read_named_weights(chief["weights_file"])
    assert sorted(got) == sorted(want)
    for layer, arrays in want.items():
        assert len(got[layer]) == len(arrays)
        for g, w in zip(got[layer], arrays):
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=layer)


@pytest.mark.slow
def test_only_the_chief_writes(job):
    assert files_under(job["worker0"]["results"]) and files_under(job["worker0"]["models"])
    assert files_under(job["worker1"]["results"]) == []
    assert files_under(job["worker1"]["models"]) == []


def test_is_chief_by_task():
    import tensorflow as tf
    from ncf_tf.train.device import is_chief

    def strategy(cluster, task_type=None, task_id=None):
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
        return types.SimpleNamespace(cluster_resolver=resolver)

    two = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    with_chief = {"chief": ["127.0.0.1:3"], **two}
    assert is_chief(None) and is_chief(strategy({}))
    assert is_chief(strategy(two, "worker", 0)) and not is_chief(strategy(two, "worker", 1))
    assert is_chief(strategy(with_chief, "chief", 0))
    assert not is_chief(strategy(with_chief, "worker", 0))
