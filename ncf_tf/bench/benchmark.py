"""The speed figures of this machine, against their floor (:func:`run`).

Memory bandwidth; negative sampling; evaluation (factored scoring beside the
forward pass) against its compute floor; training steps of GMF, MLP and NeuMF
against the floor of a dense Adam step (7 x 4 bytes per parameter: parameters,
gradient and both moments read, parameters and moments written); fast mode;
whole NeuMF-8 epochs. :func:`tables` times Adam's variants at larger tables.
Wall-clock medians, the variants taking turns so that other load falls on all alike.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

from ncf_tf.core.records import RunRecord, cpu_model, git_commit, intra_op_threads
from ncf_tf.data.loader import load_dataset
from ncf_tf.data.sampling import Instances, NegativeSampler
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.models import gmf, mlp, neumf, scoring
from ncf_tf.train import optimizers, training
from ncf_tf.train.config import TrainConfig, tower
from ncf_tf.train.optimizers import EPSILON, make_optimizer

BATCH = 256
STEPS = 320        # timed steps per run: five compiled calls of 64
RUNS = 3           # timed runs per model size
AB_RUNS = 7        # turns of the Keras-Adam / fused-Adam comparison
LARGE_BATCH = 2048  # fast mode's large batch
FULL_EPOCHS = 2    # whole NeuMF-8 epochs timed at the end
GEMM = (16384, 256, 128)  # the largest per-pair product of NeuMF-64's scoring


def bandwidth(size_mb: int = 256, repeats: int = 5) -> float:
    a = np.ones(size_mb * (1 << 20) // 4, np.float32)
    b = np.empty_like(a)
    best = min(timed(lambda: np.copyto(b, a)) for _ in range(repeats))
    return 2 * a.nbytes / best


def matmul_rate(repeats: int = 5) -> float:
    """Float32 matrix-product FLOP/s of the Keras backend, at a scoring chunk's shape."""
    m, k, n = GEMM
    a = keras.ops.ones((m, k))
    b = keras.ops.ones((k, n))
    np.asarray(keras.ops.matmul(a, b))
    best = min(timed(lambda: np.asarray(keras.ops.matmul(a, b))) for _ in range(repeats))
    return 2 * m * k * n / best


def scoring_flops(model, pairs: int) -> int:
    """FLOPs of factored scoring (``ncf_tf.models.scoring``): the user and item
    halves of the first tower layer once per user and item; the rest of the
    tower, the GMF product and the output layer once per pair."""
    f = scoring.factored(model)
    dense = scoring.tower(model)
    # (users + items) x (d/2 x n1) multiply-adds, 2 FLOPs each
    flops = (2 * (f.mlp_user.shape[0] + f.mlp_item.shape[0]) * (dense[0].kernel.shape[0] // 2)
             * dense[0].units if dense else 0)
    per_pair = (sum(2 * layer.kernel.shape[0] * layer.units for layer in dense[1:])
                + (2 * f.gmf_user.shape[1] if f.gmf_user is not None else 0)
                + 2 * (f.h.shape[0] if f.h is not None else 1))
    return flops + pairs * per_pair


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _load() -> str:
    return "load average %.1f %.1f %.1f" % os.getloadavg()


def _cpu() -> str:
    return cpu_model() or platform.machine()


def _epoch_s(e) -> float:
    return e.sample_s + e.train_s + e.eval_s


def _turns(fns: dict, runs: int, cpu: dict | None = None, warm: bool = False,
           measure=timed) -> dict:
    """Each function's ``measure`` (its seconds) over ``runs`` turns (``warm``: after an
    untimed call each); ``cpu`` receives their CPU times too."""
    for fn in fns.values() if warm else ():
        fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.process_time()
            times[name].append(measure(fn))
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - start)
    return times


def load_ml1m(path: str):
    """ml-1m's data set, its 4-negative sampler and its evaluator."""
    ds = load_dataset(path, "ml-1m")
    return ds, NegativeSampler(ds.train, 4), LeaveOneOutEvaluator.for_dataset(ds)


def _train_neumf8(ds, sampler, evaluator, adam: str = "dense", epochs: int = FULL_EPOCHS,
                  model=None):
    """``epochs`` of a fresh NeuMF-8 ([64, 32, 16, 8]; or ``model``) from seed 0's
    sample stream; returns the model and its epochs."""
    model = model or neumf.build(ds.num_users, ds.num_items, 8, tower(8))
    training.compile_model(model, make_optimizer("adam", 0.001, adam=adam))
    state = training.train(model, sampler, evaluator, epochs=epochs, batch_size=BATCH,
                           rng=np.random.default_rng(0), log=lambda line: None)
    return model, state.epochs


def print_script_epochs(path: str, turns: int = 2) -> None:
    """Seconds per epoch (the tracing epoch 0 included) of ``bin/train_neumf`` as a
    fresh process (its record's times) beside the same epochs in this process."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "bin", "train_neumf")
    ds, sampler, evaluator = load_ml1m(path)
    times = {"script": [], "in-process": []}
    for _ in range(turns):
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run([sys.executable, script, "--path", path, "--epochs", str(FULL_EPOCHS),
                            "--model_dir", folder, "--results_dir", folder, "--out", "0"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            record = next(f for f in os.listdir(folder) if f.endswith(".json"))
            times["script"] += [e["sample_s"] + e["train_s"] + e["eval_s"]
                                for e in RunRecord.load(os.path.join(folder, record)).epochs]
        times["in-process"] += map(_epoch_s, _train_neumf8(ds, sampler, evaluator)[1])
    script, loop = np.median(times["script"]), np.median(times["in-process"])
    print(f"\nthe user's command: bin/train_neumf --epochs {FULL_EPOCHS} (NeuMF-8, the authors' "
          f"defaults) as a subprocess, beside the same epochs in this process, turn about; "
          f"{_cpu()}, {os.cpu_count()} CPU; {_load()}")
    for name, values in times.items():
        print(f"  {name:<11} epochs " + ", ".join(f"{v:.1f}" for v in values)
              + f" s; median {np.median(values):.1f} s")
    print(f"  script / in-process: x{script / loop:.2f}  [target <= 1.2]")


def run(path: str = "Data/") -> int:
    """Prints the module docstring's figures but :func:`tables`' (the ml-1m files in
    ``path``), then ``bin/train_neumf`` beside the same epochs in this process."""
    ds, sampler, evaluator = load_ml1m(path)
    rng = np.random.default_rng(0)
    bw = bandwidth()
    machine = cpu_model() or platform.processor() or platform.machine()
    print(f"machine: {platform.node()} {machine}, {os.cpu_count()} CPU; "
          f"keras {keras.__version__} ({keras.config.backend()}); {_load()}")
    print(f"memory bandwidth (copy): {bw / 1e9:.1f} GB/s")

    ordered = sampler.sample(rng)

    def permute_and_gather():
        order = rng.permutation(len(ordered))
        return Instances(ordered.users[order], ordered.items[order], ordered.labels[order])

    cpu = {}
    times = _turns({"epoch": lambda: sampler.epoch(rng),
                    "separate": lambda: sampler.sample(rng).shuffled(rng),
                    "sample": lambda: sampler.sample(rng),
                    "shuffle": lambda: ordered.shuffled(rng),
                    "before": permute_and_gather}, 7, cpu)
    med = {name: np.median(t) for name, t in times.items()}
    print(f"negative sampling, ml-1m epoch (4,970,845 instances): {med['epoch']:.3f} s "
          f"(best {min(times['epoch']):.3f}, CPU {np.median(cpu['epoch']):.3f})  [target <= 0.3 s]")
    print(f"  sample, then pack and shuffle (before): {med['separate']:.3f} s (best "
          f"{min(times['separate']):.3f}), of which sample {med['sample']:.3f} s, pack and "
          f"shuffle {med['shuffle']:.3f} s; shuffle by one permutation + three gathers "
          f"(first): {med['before']:.3f} s (CPU {np.median(cpu['before']):.3f})")

    rate = matmul_rate()
    print(f"matrix products (float32, {GEMM[0]}x{GEMM[1]} @ {GEMM[1]}x{GEMM[2]}): "
          f"{rate / 1e9:.0f} GFLOP/s")
    for factors in (8, 64):
        model = neumf.build(ds.num_users, ds.num_items, factors, tower(factors))
        fns = {"now": functools.partial(evaluator.evaluate, training.make_score_fn(model)),
               "before": functools.partial(evaluator.evaluate, training.keras_score_fn(model))}
        times = _turns(fns, 3, warm=True)
        floor = scoring_flops(model, evaluator.num_pairs) / rate
        print(f"evaluation ml-1m, NeuMF-{factors} (604,000 pairs): "
              f"{np.median(times['now']):.3f} s (forward pass, before: "
              f"{np.median(times['before']):.3f} s; compute floor "
              f"{floor:.3f} s)  [target <= 0.5 s]")
        if factors == 64:
            times = _turns({f"2^{k}": functools.partial(evaluator.evaluate, scoring.PairScorer(
                model, max_floats=1 << k)) for k in range(18, 23)}, 3)
            print(f"  NeuMF-64 by chunk size (largest intermediate, floats; now "
                  f"2^{scoring.PAIR_CHUNK_FLOATS.bit_length() - 1}): " + ", ".join(
                      f"{name} {np.median(t):.3f} s" for name, t in times.items()))
    users, items = 55187, 9916
    big = LeaveOneOutEvaluator(np.arange(users), rng.integers(0, items, users),
                               rng.integers(0, items, (users, 99)))
    score_fn = training.make_score_fn(neumf.build(users, items, 8))
    t = np.median(_turns({"big": functools.partial(big.evaluate, score_fn)}, 3, warm=True)["big"])
    print(f"evaluation pinterest-20 size, NeuMF-8 (5,518,700 pairs): {t:.3f} s  [target <= 4 s]")

    instances = sampler.sample(rng).shuffled(rng)
    n = STEPS * BATCH
    part = Instances(instances.users[:n], instances.items[:n], instances.labels[:n])
    warm = Instances(part.users[:64 * BATCH], part.items[:64 * BATCH], part.labels[:64 * BATCH])
    steps_per_epoch = -(-len(instances) // BATCH)

    def compiled(build, factors, optimizer, batch=BATCH):
        model = build(factors)
        training.compile_model(model, optimizer)
        training.fit_epoch(model, warm, batch)   # traces and compiles
        return model

    def epoch_part(model, batch=BATCH):
        return functools.partial(training.fit_epoch, model, part, batch)

    builders = {
        "GMF": lambda f: gmf.build(ds.num_users, ds.num_items, f),
        "MLP": lambda f: mlp.build(ds.num_users, ds.num_items, tower(f)),
        "NeuMF": lambda f: neumf.build(ds.num_users, ds.num_items, f, tower(f)),
    }
    print(f"\ntraining, batch {BATCH}, steps_per_execution 64, fused dense Adam, "
          f"{RUNS} runs of {STEPS} steps each; epoch = {steps_per_epoch} steps")
    print(f"{'model':<10}{'F':>4}{'params':>11}{'ms/step':>9}{'best':>7}{'floor ms':>10}"
          f"{'ratio':>7}{'s/epoch':>9}", flush=True)
    for name, build in builders.items():
        for factors in (8, 16, 32, 64):
            model = compiled(build, factors, make_optimizer("adam", 0.001))
            runs = _turns({name: epoch_part(model)}, RUNS)[name]
            per_step, best = np.median(runs) / STEPS, min(runs) / STEPS
            params = model.count_params()
            floor = 7 * 4 * params / bw
            print(f"{name:<10}{factors:>4}{params:>11,}{per_step * 1e3:>9.2f}{best * 1e3:>7.2f}"
                  f"{floor * 1e3:>10.3f}{per_step / floor:>7.1f}{per_step * steps_per_epoch:>9.1f}",
                  flush=True)

    print(f"\nNeuMF-8 before/after (Adam, input), {AB_RUNS} turns of {STEPS} steps each:")

    def numpy_fit(model):
        return functools.partial(training.fit_numpy, model, part, BATCH)

    variants = {
        "keras Adam, NumPy input (first)": (keras.optimizers.Adam(
            0.001, beta_1=0.9, beta_2=0.999, epsilon=EPSILON), numpy_fit),
        "FusedAdam, NumPy input": (make_optimizer("adam", 0.001, adam="dense"), numpy_fit),
        "FusedAdam, ready batches (now)": (make_optimizer("adam", 0.001, adam="dense"),
                                           epoch_part),
    }
    fns = {label: fit(compiled(builders["NeuMF"], 8, opt))
           for label, (opt, fit) in variants.items()}
    cpu = {}
    times = _turns(fns, AB_RUNS, cpu, warm=True)   # the untimed call traces for its input
    for label, runs in times.items():
        per_step = np.median(runs) / STEPS
        print(f"  {label:<34}{per_step * 1e3:6.2f} ms/step (best {min(runs) / STEPS * 1e3:.2f}, "
              f"CPU {np.median(cpu[label]) / STEPS * 1e3:.2f})"
              f"{per_step * steps_per_epoch:7.1f} s/epoch")
    print(f"\nfast mode (changes results; HR/NDCG in results/README.md), {AB_RUNS} turns "
          f"over the same {n:,} instances:")
    for factors in (8, 64):
        fns = {label: epoch_part(compiled(builders["NeuMF"], factors,
                                          make_optimizer("adam", 0.001, lazy=lazy), batch), batch)
               for label, lazy, batch in (("dense Adam, batch 256 (faithful)", False, BATCH),
                                          ("lazy Adam, batch 256", True, BATCH),
                                          (f"dense Adam, batch {LARGE_BATCH}", False, LARGE_BATCH),
                                          (f"lazy Adam, batch {LARGE_BATCH}", True, LARGE_BATCH))}
        times = _turns(fns, AB_RUNS)
        base = np.median(times[next(iter(fns))])
        for label, runs in times.items():
            t = np.median(runs)
            print(f"  NeuMF-{factors:<3}{label:<34}{t / n * len(instances):7.1f} s/epoch "
                  f"(x{base / t:.1f})", flush=True)
    model = compiled(builders["NeuMF"], 8, make_optimizer("adam", 0.001))
    state = training.train(model, sampler, evaluator, epochs=FULL_EPOCHS, batch_size=BATCH,
                           rng=rng, log=lambda line: None)
    print(f"\nfull NeuMF-8 epochs on ml-1m (training.train: sample + train + evaluate), "
          f"target <= 15 s; {_load()}")
    for e in state.epochs:
        print(f"  epoch {e.epoch}: {_epoch_s(e):5.1f} s = sampling "
              f"{e.sample_s:.2f} + training {e.train_s:.1f} + evaluation {e.eval_s:.2f}")
    print_script_epochs(path)
    return 0


TABLE_SIZES = {   # users, items, training instances per epoch (1 + 4 negatives per interaction)
    "ml-1m": (6_040, 3_706, 4_970_845),
    "pinterest-20": (55_187, 9_916, 5 * 1_445_622),
    "ml-20m": (138_493, 26_744, 5 * 19_861_770),
}
TABLE_FACTORS = (8, 64)
TABLE_OPTIMIZERS = ("dense", "deferred", "lazy")
TABLE_SECONDS = 2.0   # each timed run: compiled calls of 64 steps until this long
TABLE_RUNS = 3


def neumf_config(factors: int, batch: int = BATCH):
    """NeuMF-``factors`` with the tower [8F, 4F, 2F, F], as the tables time it."""
    return TrainConfig(model="NeuMF", num_factors=factors, batch_size=batch,
                       layers=tower(factors))


def tower_shapes(factors: int, batch: int = BATCH) -> list[tuple[int, int, int]]:
    """NeuMF-``factors``'s products per training step, ``(m, k, n)`` each:
    the tower forward (batch x k @ k x n), and the output layer."""
    layers = neumf_config(factors, batch).layers
    return ([(batch, k, n) for k, n in zip(layers, layers[1:])]
            + [(batch, factors + layers[-1], 1)])


def tower_rate(factors: int, repeats: int = 7, calls: int = 500) -> list[float]:
    """FLOP/s of the tower's products (:func:`tower_shapes`) per repeat, ``calls``
    passes looped inside one compiled call (no Python dispatch counted)."""
    import tensorflow as tf   # here only: the rest of the module runs on any Keras backend

    shapes = tower_shapes(factors)
    pairs = [(tf.ones((m, k)), tf.ones((k, n))) for m, k, n in shapes]

    @tf.function
    def products():
        def body(i, total):   # one element of each product kept, so that none is pruned
            return i + 1, total + tf.add_n([tf.matmul(a, b)[0, 0] for a, b in pairs])
        return tf.while_loop(lambda i, _: i < calls, body, [tf.constant(0), tf.constant(0.0)])

    products()
    flops = sum(2 * m * k * n for m, k, n in shapes) * calls
    return [flops / timed(products) for _ in range(repeats)]


def table_floor_s(optimizer: str, params: int, table_params: int, width: int, rows: int,
                  flops: int, bandwidth_bps: float, rate: float) -> float:
    """A step's floor: the bytes it moves (7 x 4 per parameter, as in a dense
    step) over ``bandwidth_bps`` plus its ``flops`` over ``rate``. Dense Adam
    moves the whole model; deferred and lazy Adam the batch's ``rows`` rows of
    ``width`` floats and the layers outside the tables (``params - table_params``)."""
    moved = params if optimizer == "dense" else rows * width + params - table_params
    return 7 * 4 * moved / bandwidth_bps + flops / rate


def tables(sizes: dict = TABLE_SIZES, bandwidths: int = 5) -> None:
    """NeuMF-8 and NeuMF-64 training steps at :data:`TABLE_SIZES` (batch 256, uniform
    users and items) with dense, deferred and lazy Adam, each against its floor."""
    threads = intra_op_threads()
    copies = [bandwidth() for _ in range(bandwidths)]
    bw = float(np.median(copies))
    git = git_commit()
    print(f"tables: {_cpu()}, {os.cpu_count()} CPU; keras "
          f"{keras.__version__} ({keras.config.backend()}); commit {str(git.get('commit'))[:7]}"
          f"{' (uncommitted changes)' if git.get('dirty') else ''}; {time.strftime('%Y-%m-%d')}; "
          f"{_load()}")
    print(f"memory bandwidth (copy of 256 MB): median {bw / 1e9:.1f} GB/s, spread "
          f"{min(copies) / 1e9:.1f}-{max(copies) / 1e9:.1f} over {bandwidths} repeats")
    rates = {}
    for factors in TABLE_FACTORS:
        measured = tower_rate(factors)
        rates[factors] = float(np.median(measured))
        print(f"matrix products at NeuMF-{factors}'s tower shapes (batch {BATCH}, "
              f"{threads} threads): median {rates[factors] / 1e9:.1f} GFLOP/s, spread "
              f"{min(measured) / 1e9:.1f}-{max(measured) / 1e9:.1f} over {len(measured)} repeats")
    print(f"\nms/step: median of {TABLE_RUNS} runs, each compiled calls of 64 steps for at least "
          f"{TABLE_SECONDS:.0f} s, the optimizers taking turns; floor: dense, the model's bytes; "
          f"deferred and lazy, the batch's rows' bytes; both with the tower's arithmetic. "
          f"settle: deferred Adam's once-per-epoch catch-up of every row, per epoch step.")
    rng = np.random.default_rng(0)
    for dataset, (users, items, instances) in sizes.items():
        steps_per_epoch = -(-instances // BATCH)
        for factors in TABLE_FACTORS:
            n = 64 * BATCH
            part = Instances(rng.integers(0, users, n, dtype=np.int32),
                             rng.integers(0, items, n, dtype=np.int32),
                             rng.integers(0, 2, n).astype(np.float32))
            data = training.batches(part, BATCH)
            rows = len(np.unique(part.users[:BATCH])) + len(np.unique(part.items[:BATCH]))
            config = neumf_config(factors)
            table_floats = config.table_floats(users, items)
            models = {}
            for kind in TABLE_OPTIMIZERS:
                model = neumf.build(users, items, factors, config.layers)
                optimizer = make_optimizer("adam", 0.001, lazy=kind == "lazy",
                                           adam="dense" if kind == "lazy" else kind)
                training.compile_model(model, optimizer)
                for batch, _ in data:
                    model.fit(batch, epochs=1, shuffle=False, verbose=0)   # traces
                models[kind] = model

            def timed_steps(model):
                steps, start = 0, time.perf_counter()
                while time.perf_counter() - start < TABLE_SECONDS:
                    model.fit(data[0][0], epochs=1, shuffle=False, verbose=0)
                    steps += 64
                return (time.perf_counter() - start) / steps

            times = _turns(models, TABLE_RUNS, measure=timed_steps)
            params = models["dense"].count_params()
            for kind, model in models.items():
                settle_s = timed(lambda: optimizers.settle(model.optimizer))
                per_step = float(np.median(times[kind])) + settle_s / steps_per_epoch
                floor = table_floor_s(kind, params, table_floats, table_floats // (users + items),
                                      rows, config.step_flops(), bw, rates[factors])
                print(f"tables {dataset} NeuMF-{factors} {kind} {per_step * 1e3:.2f} ms/step "
                      f"(runs {', '.join(f'{t * 1e3:.2f}' for t in times[kind])}; settle "
                      f"{settle_s / steps_per_epoch * 1e3:.3f}; floor {floor * 1e3:.2f}, "
                      f"x{per_step / floor:.1f}; {params:,} parameters, epoch "
                      f"{per_step * steps_per_epoch / 60:.1f} min)", flush=True)
            del models
            keras.backend.clear_session()


def table_epochs(path: str, turns: int = 2) -> None:
    """Whole ml-1m NeuMF-8 epochs with dense and deferred Adam; then how far the two
    models have come apart, beside a dense run from a start 1e-7 away (float32 noise)."""
    ds, sampler, evaluator = load_ml1m(path)
    times, models = {"dense": [], "deferred": []}, {}
    for _ in range(turns):
        for kind in times:
            models[kind], epochs = _train_neumf8(ds, sampler, evaluator, kind)
            times[kind].append(_epoch_s(epochs[-1]))
    print(f"\nwhole ml-1m NeuMF-8 epochs (training.train: sample + train + evaluate; the "
          f"second epoch of a fresh model, the first traces its step), turn about; {_load()}")
    for kind, values in times.items():
        print(f"tables ml-1m NeuMF-8 {kind} epoch {np.median(values):.1f} s (runs "
              + ", ".join(f"{v:.1f}" for v in values) + ")")
    print(f"  deferred / dense: x{np.median(times['deferred']) / np.median(times['dense']):.2f}")
    # the float32 noise floor: dense Adam again, from a start 1e-7 (relative) away
    model = neumf.build(ds.num_users, ds.num_items, 8, tower(8))
    noise = np.random.default_rng(1)
    model.set_weights([(w * (1 + 1e-7 * noise.standard_normal(w.shape))).astype(w.dtype)
                       for w in model.get_weights()])
    models["dense, start 1e-7 away"] = _train_neumf8(ds, sampler, evaluator, model=model)[0]
    scores = {kind: np.asarray(training.make_score_fn(model)(evaluator.pair_users,
                                                            evaluator.pair_items),
                               np.float64).reshape(evaluator.shape)
              for kind, model in models.items()}
    hits = {kind: evaluator.evaluate_scores(s).ranks < evaluator.k for kind, s in scores.items()}
    print(f"  after those 2 epochs from one start and one sample stream, each against dense "
          f"Adam (HR@10 {hits['dense'].mean():.4f}):")
    for kind in ("deferred", "dense, start 1e-7 away"):
        gap = np.abs(scores[kind] - scores["dense"])
        print(f"tables ml-1m NeuMF-8 {kind}: HR@10 {hits[kind].mean():.4f}, "
              f"{int((hits[kind] != hits['dense']).sum())} users' hits differ; test-pair "
              f"logits differ by {np.median(gap):.2g} (median), {np.max(gap):.2g} (largest)")
