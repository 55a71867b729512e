"""bin/benchmark: the speed figures of this machine, against their floor.

Prints, in one run:

* memory bandwidth (numpy copy of 256 MB, read + written bytes per second);
* negative sampling per ml-1m epoch (sample + shuffle);
* evaluation (one batched scoring pass) on ml-1m, and at pinterest-20's size
  on generated data (55,187 users x 100 items);
* per training step (batch 256, dense Adam) of GMF, MLP and NeuMF at
  F = 8..64, the ml-1m epoch it implies (19,417 steps), and the floor: the
  bytes a dense Adam step must move (parameters, gradient and both moments
  read; parameters and moments written: 7 x 4 bytes per parameter) over the
  measured bandwidth; with the ratio to it.

Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

STEPS = 640
BATCH = 256


def bandwidth(size_mb: int = 256, repeats: int = 5) -> float:
    a = np.ones(size_mb * (1 << 20) // 4, np.float32)
    b = np.empty_like(a)
    best = min(_timed(lambda: np.copyto(b, a)) for _ in range(repeats))
    return 2 * a.nbytes / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    from ncf_tf import gmf, mlp, neumf, training
    from ncf_tf.data import load_dataset
    from ncf_tf.evaluation import LeaveOneOutEvaluator
    from ncf_tf.optimizers import make_optimizer
    from ncf_tf.sampling import Instances, NegativeSampler
    import keras

    path = argv[1] if len(argv) > 1 else "Data/"
    ds = load_dataset(path, "ml-1m")
    rng = np.random.default_rng(0)
    bw = bandwidth()
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPU; keras {keras.__version__} ({keras.config.backend()})")
    print(f"memory bandwidth (copy): {bw / 1e9:.1f} GB/s")

    sampler = NegativeSampler(ds.train, 4)
    sample_s = min(_timed(lambda: sampler.sample(rng).shuffled(rng)) for _ in range(3))
    print(f"negative sampling, ml-1m epoch (4,970,845 instances): {sample_s:.3f} s  [target <= 0.3 s]")

    evaluator = LeaveOneOutEvaluator.for_dataset(ds)
    for factors in (8, 64):
        model = neumf.build(ds.num_users, ds.num_items, factors, [8 * factors, 4 * factors, 2 * factors, factors])
        score_fn = training.make_score_fn(model)
        evaluator.evaluate(score_fn)
        t = min(_timed(lambda: evaluator.evaluate(score_fn)) for _ in range(3))
        print(f"evaluation ml-1m, NeuMF-{factors} (604,000 pairs): {t:.3f} s  [target <= 0.5 s]")
    users, items = 55187, 9916
    big = LeaveOneOutEvaluator(np.arange(users), rng.integers(0, items, users),
                               rng.integers(0, items, (users, 99)))
    model = neumf.build(users, items, 8)
    score_fn = training.make_score_fn(model)
    big.evaluate(score_fn)
    t = min(_timed(lambda: big.evaluate(score_fn)) for _ in range(2))
    print(f"evaluation pinterest-20 size, NeuMF-8 (5,518,700 pairs): {t:.3f} s  [target <= 4 s]")

    instances = sampler.sample(rng).shuffled(rng)
    n = STEPS * BATCH
    part = Instances(instances.users[:n], instances.items[:n], instances.labels[:n])
    warm = Instances(part.users[:64 * BATCH], part.items[:64 * BATCH], part.labels[:64 * BATCH])
    steps_per_epoch = -(-len(instances) // BATCH)
    print(f"\ntraining, batch {BATCH}, Adam (dense), {STEPS} steps each; epoch = {steps_per_epoch} steps")
    print(f"{'model':<10}{'F':>4}{'params':>11}{'ms/step':>9}{'floor ms':>10}{'ratio':>7}{'s/epoch':>9}")
    builders = {
        "GMF": lambda f: gmf.build(ds.num_users, ds.num_items, f),
        "MLP": lambda f: mlp.build(ds.num_users, ds.num_items, [8 * f, 4 * f, 2 * f, f]),
        "NeuMF": lambda f: neumf.build(ds.num_users, ds.num_items, f, [8 * f, 4 * f, 2 * f, f]),
    }
    for name, build in builders.items():
        for factors in (8, 16, 32, 64):
            model = build(factors)
            training.compile_model(model, make_optimizer("adam", 0.001))
            training.fit_epoch(model, warm, BATCH)
            per_step = _timed(lambda: training.fit_epoch(model, part, BATCH)) / STEPS
            params = model.count_params()
            floor = 7 * 4 * params / bw
            print(f"{name:<10}{factors:>4}{params:>11,}{per_step * 1e3:>9.2f}{floor * 1e3:>10.3f}"
                  f"{per_step / floor:>7.1f}{per_step * steps_per_epoch:>9.1f}", flush=True)
    print(f"\nfull NeuMF-8 epoch target <= 15 s; sampling {sample_s:.2f} s + training + evaluation")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
