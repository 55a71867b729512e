"""The accelerator's figures, on whatever device Keras sees (``.ci/gpu_check``):
``--preset mlperf``'s NeuMF-64 at ml-20m's table sizes, batch 2^20, samples per
second and evaluation with 999 negatives; with ml-1m's files in ``path``,
NeuMF-8 and NeuMF-64 evaluation and NeuMF-8 steps at batch 256.
"""

from __future__ import annotations

import os
import platform
import sys

import keras
import numpy as np

from ncf_tf.bench.benchmark import load_ml1m, timed
from ncf_tf.data.sampling import Instances
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.models import neumf
from ncf_tf.train import training
from ncf_tf.train.config import PRESETS, tower
from ncf_tf.train.optimizers import make_optimizer

USERS, ITEMS = 138_493, 26_744
BATCH = 1 << 20
STEPS = 20


def run(path: str = "Data/", batch: int = BATCH, steps: int = STEPS, users: int = USERS,
        items: int = ITEMS) -> None:
    """Prints the figures of the module docstring (smaller sizes: a smoke test)."""
    preset = PRESETS["mlperf"]
    backend = keras.config.backend()
    devices = ""
    if backend == "jax":
        import jax   # the JAX backend's only
        devices = ", ".join(str(d) for d in jax.devices())
    print(f"machine: {platform.node()}, {os.cpu_count()} CPU; keras {keras.__version__} "
          f"({backend}); devices: {devices or 'as the backend places them'}", flush=True)
    rng = np.random.default_rng(0)
    model = neumf.build(users, items, preset["num_factors"], preset["layers"])
    training.compile_model(model, make_optimizer("adam", preset["lr"],
                                                 betas=tuple(preset["adam_betas"])))
    x = [rng.integers(0, users, (batch, 1), dtype=np.int32),
         rng.integers(0, items, (batch, 1), dtype=np.int32)]
    y = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    compile_s = timed(lambda: model.train_on_batch(x, y))
    seconds = timed(lambda: [model.train_on_batch(x, y) for _ in range(steps)])
    print(f"NeuMF-64 {preset['layers']}, {users:,} x {items:,} tables, batch {batch:,}, Adam: "
          f"{steps * batch / seconds / 1e6:.1f} M samples/s ({seconds / steps * 1e3:.1f} ms a "
          f"step; the first, compiling, {compile_s:.1f} s)  [target >= 20 M samples/s on one "
          "H100]", flush=True)
    score_fn = training.make_score_fn(model)
    evaluator = LeaveOneOutEvaluator(np.arange(users), rng.integers(0, items, users),
                                     rng.integers(0, items, (users, 999)))
    evaluator.evaluate(score_fn)
    t = timed(lambda: evaluator.evaluate(score_fn))
    print(f"evaluation, {users:,} users, 999 negatives, NeuMF-64 ({evaluator.num_pairs:,} pairs): "
          f"{t:.2f} s", flush=True)
    if os.path.exists(os.path.join(path, "ml-1m.train.rating")):
        ds, sampler, ml1m = load_ml1m(path)
        for f in (8, 64):
            m = neumf.build(ds.num_users, ds.num_items, f, tower(f))
            fn = training.make_score_fn(m)
            ml1m.evaluate(fn)
            print(f"evaluation ml-1m, NeuMF-{f} ({ml1m.num_pairs:,} pairs): "
                  f"{np.median([timed(lambda: ml1m.evaluate(fn)) for _ in range(3)]):.3f} s",
                  flush=True)
        instances = sampler.epoch(rng)
        n = 320 * 256
        part = Instances(instances.users[:n], instances.items[:n], instances.labels[:n])
        m = neumf.build(ds.num_users, ds.num_items, 8)
        training.compile_model(m, make_optimizer("adam", 0.001))
        training.fit_epoch(m, part, 256)
        t = np.median([timed(lambda: training.fit_epoch(m, part, 256)) for _ in range(3)])
        print(f"training NeuMF-8, ml-1m, batch 256: {t / 320 * 1e3:.2f} ms a step, "
              f"{t / n * len(instances):.1f} s an epoch", flush=True)
    else:
        print(f"(no ml-1m files in {path}: its rows are left out)")


if __name__ == "__main__":
    # python -m ncf_tf.bench.gpu [DATA_PATH] [smoke]: "smoke" runs small sizes (on a CPU).
    args = sys.argv[1:]
    smoke = dict(batch=1 << 12, steps=2, users=2_000, items=500) if "smoke" in args else {}
    run(next((a for a in args if a != "smoke"), "Data/"), **smoke)
