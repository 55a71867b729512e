"""How every cost grows: the stages of a run at 1M, 5M, 20M and 100M interactions.

On generated data in the authors' format, each size in a fresh process (peak
memory does not carry over), each stage's wall time and peak RSS: ``load``,
``sampler``, ``epoch``; ``eval99`` and ``eval999``, leave-one-out evaluation of
MLPerf's NeuMF-64 (the 999 drawn in memory); ``full``, full ranking per 1,000
users; ``step`` and ``lazy``, one dense and one lazy Adam step at batch
:data:`STEP_BATCH`. Then per stage the exponent ``b`` of ``time ~ interactions^b``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

import keras
import numpy as np

from ncf_tf.bench.benchmark import matmul_rate, scoring_flops
from ncf_tf.core.arrays import distinct_sorted
from ncf_tf.core.records import cpu_model
from ncf_tf.data.loader import load_dataset
from ncf_tf.data.membership import membership
from ncf_tf.data.prepare.common import negative_chunks, rating_chunks
from ncf_tf.data.sampling import NegativeSampler
from ncf_tf.eval.full_ranking import FullRankingEvaluator
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.models import neumf
from ncf_tf.train import training
from ncf_tf.train.optimizers import make_optimizer


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    users: int
    items: int
    interactions: int


SHAPES = (
    Shape("1M", 6_040, 3_706, 1_000_209),             # ml-1m
    Shape("5M", 50_000, 12_000, 5_000_000),
    Shape("20M", 138_493, 26_744, 20_000_263),        # ml-20m
    Shape("100M", 1_000_000, 100_000, 100_000_000),
)
STAGES = ("load", "sampler", "epoch", "eval99", "eval999", "full", "step", "lazy")
LAYERS = [256, 256, 128, 64]
FACTORS = 64
STEP_BATCH = 1 << 20
FULL_USERS = 1_000
MIN_PER_USER = 20


def rss_bytes() -> int:
    """The process's resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class PeakRSS:
    """The largest RSS inside a ``with`` block, sampled every 5 ms from a thread."""

    def __enter__(self):
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def generate(shape: Shape, rng: np.random.Generator):
    """Interactions of ``shape``: at least :data:`MIN_PER_USER` per user, the rest
    log-normal over users; items Zipf-like (exponent 0.8). Returns ``(users,
    items)`` of the distinct pairs, sorted by user (repeated draws dropped)."""
    extra = rng.lognormal(0.0, 1.2, shape.users)
    extra = extra / extra.sum() * (shape.interactions - MIN_PER_USER * shape.users)
    extra = np.minimum(np.floor(extra).astype(np.int64), shape.items // 2)
    # MIN_PER_USER distinct items each (consecutive popularity ranks from a random
    # start), then the extra ones by popularity; a pair drawn twice counts once.
    first = (rng.integers(0, shape.items, (shape.users, 1))
             + np.arange(MIN_PER_USER)) % shape.items
    weights = 1.0 / np.arange(1, shape.items + 1) ** 0.8
    cdf = np.cumsum(weights / weights.sum())
    drawn = np.minimum(np.searchsorted(cdf, rng.random(int(extra.sum()))), shape.items - 1)
    users = np.concatenate([np.repeat(np.arange(shape.users, dtype=np.int64), MIN_PER_USER),
                            np.repeat(np.arange(shape.users, dtype=np.int64), extra)])
    items = np.concatenate([first.reshape(-1), drawn])
    # Item ids by popularity rank would make id 0 the most popular: shuffle them.
    items = rng.permutation(shape.items)[items]
    keys = distinct_sorted(users * shape.items + items)
    return (keys // shape.items).astype(np.int32), (keys % shape.items).astype(np.int32)


def write_files(folder: str, name: str, shape: Shape, seed: int = 0) -> None:
    """``<name>.train.rating``, ``.test.rating`` and ``.test.negative`` (99 each)
    in the authors' format: the latest interaction of each user held out."""
    rng = np.random.default_rng(seed)
    users, items = generate(shape, rng)
    # The held-out (latest) interaction of a user is that with their most popular
    # item, so that every test item also occurs in the training file (the loader
    # sizes the item table from it); a user whose items all occur once has none.
    count = np.bincount(items, minlength=shape.items)
    order = np.lexsort((count[items], users))
    last = order[np.flatnonzero(np.r_[users[order][1:] != users[order][:-1], True])]
    last = last[count[items[last]] > 1]
    held = np.zeros(len(users), dtype=bool)
    held[last] = True
    times = 978_300_000 + np.arange(len(users), dtype=np.int64) + held * 10**9
    os.makedirs(folder, exist_ok=True)
    for part, split, rating in ((~held, "train", "1"), (held, "test", "5")):
        with open(os.path.join(folder, f"{name}.{split}.rating"), "wb") as f:
            codes = np.zeros(int(part.sum()), np.int64)   # every line's rating: ``rating``
            f.writelines(rating_chunks(users[part], items[part], (codes, [rating]), times[part]))
    negatives = draw_negatives(users, items, users[held], 99, shape.items, rng)
    with open(os.path.join(folder, f"{name}.test.negative"), "wb") as f:
        f.writelines(negative_chunks(users[held], items[held], negatives))


def draw_negatives(users, items, test_users, n, num_items, rng) -> np.ndarray:
    """``(len(test_users), n)`` items uniformly drawn from those the user has
    no interaction with (redrawn on a hit; repeats within a row allowed, as the
    evaluator counts a repeated negative once)."""
    seen = membership(users, items, int(users.max()) + 1, num_items)
    out = np.empty((len(test_users), n), dtype=np.int32)
    block = max(1, (1 << 22) // n)   # users at a time: bounded temporaries
    for lo in range(0, len(test_users), block):
        rows = np.repeat(test_users[lo:lo + block].astype(np.int32), n)
        drawn = rng.integers(0, num_items, len(rows), dtype=np.int32)
        redraw = np.flatnonzero(seen.contains(rows, drawn))
        while len(redraw):
            drawn[redraw] = rng.integers(0, num_items, len(redraw), dtype=np.int32)
            redraw = redraw[seen.contains(rows[redraw], drawn[redraw])]
        out[lo:lo + block] = drawn.reshape(-1, n)
    return out


def measure(shape: Shape, folder: str) -> dict:
    """Every stage at ``shape`` in this process: ``{stage: {"s", "rss", ...}}`` plus notes."""
    name = f"scale{shape.name}"
    if not os.path.exists(os.path.join(folder, f"{name}.test.negative")):
        write_files(folder, name, shape)
    out, rng = {}, np.random.default_rng(0)

    def stage(label, fn, repeat=1):
        with PeakRSS() as peak:
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(repeat):
                result = fn()
            seconds = (time.perf_counter() - start) / repeat
            cpu = (time.process_time() - cpu) / repeat
        out[label] = {"s": seconds, "cpu_s": cpu, "rss": peak.peak, "load": os.getloadavg()[0]}
        print(f"  {shape.name:>5} {label:<8}{seconds:9.2f} s (CPU {cpu:.2f} s) "
              f"{peak.peak / 2**30:7.2f} GiB (load average {out[label]['load']:.1f})",
              file=sys.stderr, flush=True)
        return result

    ds = stage("load", lambda: load_dataset(folder, name))
    out["train_interactions"] = int(ds.train.nnz)
    sampler = stage("sampler", lambda: NegativeSampler(ds.train, 4))
    out["membership"] = type(sampler.positives).__name__
    stage("epoch", lambda: sampler.epoch(rng))
    model = neumf.build(ds.num_users, ds.num_items, FACTORS, LAYERS)
    score_fn = training.make_score_fn(model)
    small = LeaveOneOutEvaluator(ds.test_users[:64], ds.test_items[:64],
                                 ds.test_negatives[:64])
    small.evaluate(score_fn)   # compiles the scorer outside the timed stages
    out["matmul_flops"] = matmul_rate()
    out["eval_floor_s"] = {str(n): scoring_flops(model, len(ds.test_users) * (1 + n))
                           / out["matmul_flops"] for n in (99, 999)}
    stage("eval99", lambda: LeaveOneOutEvaluator.for_dataset(ds).evaluate(score_fn))
    train_coo = ds.train.tocoo()
    negatives = draw_negatives(train_coo.row, train_coo.col, ds.test_users, 999,
                               ds.num_items, rng)
    del train_coo
    # Built outside the timed stage, so that the drawn negatives can go before it runs
    # (at the 100M shape they are 4 GB, and the evaluator holds its own copy).
    big = LeaveOneOutEvaluator(ds.test_users, ds.test_items, negatives)
    del negatives
    stage("eval999", lambda: big.evaluate(score_fn))
    del big
    picked = np.sort(rng.choice(len(ds.test_users), min(FULL_USERS, len(ds.test_users)),
                                replace=False))
    full = FullRankingEvaluator.from_pairs(ds.test_users[picked], ds.test_items[picked],
                                           ds.train.shape, exclude=ds.train)
    stage("full", lambda: full.evaluate(score_fn))
    out["full"]["s"] *= 1_000 / len(picked)   # per 1,000 users
    # One batch as an epoch's would be (1 positive : 4 negatives, shuffled), drawn on
    # its own: a whole epoch at the 100M shape is 22 GB.
    size = min(STEP_BATCH, 5 * len(sampler.pos_users))
    picked = rng.choice(len(sampler.pos_users), size // 5, replace=False)
    neg_users = np.repeat(sampler.pos_users[picked], 4)
    users = np.concatenate([sampler.pos_users[picked], neg_users])
    items = np.concatenate([sampler.pos_items[picked], sampler.negatives(neg_users, rng)])
    labels = np.r_[np.ones(len(picked), np.float32), np.zeros(len(neg_users), np.float32)]
    order = rng.permutation(len(users))
    x = {"user_input": users[order, None], "item_input": items[order, None]}
    y = labels[order, None]
    del sampler, full
    for label, lazy in (("step", False), ("lazy", True)):
        model = neumf.build(ds.num_users, ds.num_items, FACTORS, LAYERS)
        training.compile_model(model, make_optimizer("adam", 0.0045, lazy=lazy))
        model.train_on_batch(x, y)   # traces and compiles
        stage(label, lambda: model.train_on_batch(x, y), repeat=3)
        del model
    out.update(step_batch=len(order), keras_backend=keras.config.backend())
    return out


def exponents(results: dict) -> dict:
    """Per stage, the least-squares slope of log(time) on log(interactions)."""
    fitted = {}
    for stage in STAGES:
        points = [(r["train_interactions"], r[stage]["s"]) for r in results.values()
                  if stage in r and r[stage]["s"] > 0]
        if len(points) >= 2:
            fitted[stage] = float(np.polyfit(*np.log(points).T, 1)[0])
    return fitted


def run(shapes=SHAPES, folder: str = "/tmp/ncf_tf_scale", cache: str | None = None) -> dict:
    """Measures each shape in its own process, prints the table and returns
    ``{shape name: stages}``; shapes found in the JSON file ``cache`` are not re-measured."""
    results = {}
    if cache and os.path.exists(cache):
        with open(cache) as f:
            results = json.load(f)
    for shape in shapes:
        if shape.name in results:
            continue
        done = subprocess.run([sys.executable, "-m", "ncf_tf.bench.scale", shape.name, folder],
                              stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            results[shape.name] = {"error": f"exit code {done.returncode}"}
            continue
        results[shape.name] = json.loads(done.stdout.strip().splitlines()[-1])
        if cache:
            with open(cache, "w") as f:
                json.dump(results, f, indent=1)
    print(f"scale: NeuMF-{FACTORS} {LAYERS}, generated data in the authors' format; "
          f"{cpu_model() or 'CPU'}, {os.cpu_count()} CPU; load average "
          + "%.1f %.1f %.1f" % os.getloadavg())
    print(f"{'stage':<10}" + "".join(f"{s.name + ' s':>10}{'GiB':>7}" for s in shapes)
          + f"{'exponent':>10}")
    fitted = exponents({k: v for k, v in results.items() if "error" not in v})
    rows = {stage: [f"{stage:<10}", f"{stage:<10}"] for stage in STAGES}   # seconds, CPU
    for stage in STAGES:
        for shape in shapes:
            r = results.get(shape.name, {})
            rows[stage][0] += (f"{r[stage]['s']:>10.2f}{r[stage]['rss'] / 2**30:>7.2f}"
                               if stage in r else f"{r.get('error', '-'):>17}")
            rows[stage][1] += f"{r[stage]['cpu_s']:>10.2f}{'':>7}" if stage in r else f"{'-':>17}"
        print(rows[stage][0] + (f"{fitted[stage]:>10.2f}" if stage in fitted else f"{'-':>10}"))
    print("CPU seconds (the process's, all threads; less sensitive to other load):")
    print("\n".join(rows[stage][1] for stage in STAGES))
    for shape in shapes:
        r = results.get(shape.name, {})
        if "error" not in r and r:
            floor = r["eval_floor_s"]
            loads = [v["load"] for v in r.values() if isinstance(v, dict) and "load" in v]
            print(f"  {shape.name}: {shape.users:,} users x {shape.items:,} items, "
                  f"{r['train_interactions']:,} training interactions; membership "
                  f"{r['membership']}; step batch {r['step_batch']:,}; float32 products "
                  f"{r['matmul_flops'] / 1e9:.0f} GFLOP/s, so evaluation's compute floor "
                  f"{floor['99']:.1f} s (99) and {floor['999']:.1f} s (999); load average "
                  f"during the stages {min(loads):.1f}-{max(loads):.1f}; "
                  f"backend {r['keras_backend']}")
    return results


if __name__ == "__main__":
    chosen = next(s for s in SHAPES if s.name == sys.argv[1])
    print(json.dumps(measure(chosen, sys.argv[2])))
