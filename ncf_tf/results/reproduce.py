"""The paper's experiments as plans of runs, and a resumable runner for them.

Each experiment (Table 2, Figures 4-7, Tables 3/4) is a list of :class:`Job`,
one ``bin/train_*`` command line with a stable run name. Finished jobs are
skipped, interrupted ones resume; a job runs after those it needs (a
pretrained NeuMF after its GMF and MLP). Choices where the paper is silent:
20 epochs, batch 256, lr 0.001 (the authors' README); towers ``[8F, 4F, 2F, F]``;
NeuMF in Figures 4, 5 and 7 is the pretrained one (alpha 0.5, then SGD).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from typing import Callable

from ncf_tf.baselines.run import run_key as baseline_key
from ncf_tf.train.config import TrainConfig, tower, with_preset
from ncf_tf.core.records import RunRecord

EXPERIMENTS = ("table2", "fig4", "fig5", "table3", "fig6", "fig7", "beyond", "fast", "long",
               "pretrain_adam", "lr", "mlperf")
OUTSIDE_ALL = ("fast", "long", "pretrain_adam", "lr", "mlperf")
"""Experiments outside the paper's protocol that ``all`` leaves out."""
FACTORS = (8, 16, 32, 64)
SEEDS = {"table2": 3, "beyond": 3, "fast": 3, "all": 3}
"""Seeds per cell where ``plan`` is not told (else 1)."""
EPOCHS = 20
DATASETS = {"ml-1m": (6040, 3706, 994169), "pinterest-20": (55187, 9916, 1445622)}
"""users, items, training interactions (paper, Table 1 less the test items)."""

BASELINE_GRID = {
    "Random": [{}],
    "ItemPop": [{}],
    "ItemKNN": [{"k_neighbors": k} for k in (10, 20, 50, 100, 200)],
    "BPR": [{"lr": lr} for lr in (0.02, 0.05, 0.1)],
    "eALS": [{"reg": reg} for reg in (0.01, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)],
}
"""Hyper-parameters searched per baseline (per factor for BPR and eALS); the
report shows each grid's best point on test HR."""

TUNING_GRID = {
    "EASE": [{"reg": reg} for reg in (250.0, 500.0, 1000.0, 2000.0, 4000.0)],
    "iALS": ([{"num_factors": f, "alpha": 16.0, "reg": r}
              for f in (64, 128, 256) for r in (30.0, 100.0, 300.0)]
             + [{"num_factors": f, "alpha": 16.0, "reg": r, "reg_exponent": 1.0}
                for f in (128, 256) for r in (30.0, 100.0, 300.0)]
             + [{"num_factors": 128, "alpha": 16.0, "reg": r, "reg_exponent": 1.0}
                for r in (50.0, 150.0)]
             + [{"num_factors": 128, "alpha": a, "reg": r, "reg_exponent": 1.0}
                for a in (4.0, 8.0, 32.0) for r in (50.0, 100.0, 200.0)]),
    "MF": [{"num_factors": f} for f in (64, 128)],
}
"""The stronger baselines' grids, chosen on validation only (seed 0); the chosen
point is refitted on the whole training file and tested."""
DETERMINISTIC = ("EASE", "ItemPop", "ItemKNN")
FAST_VARIANTS = ({"lazy_adam": True},
                 {"batch_size": 2048, "lr": 0.003},
                 {"batch_size": 2048, "lr": 0.003, "lazy_adam": True})
"""Fast mode's NeuMF-8 variants: lazy Adam, and batch 8 x 256 at about sqrt(8) x lr."""
LONG_EPOCHS = 100
LONG_MLP_HIDDEN = (1, 2)
"""``long``: MLP-1 and MLP-2 at F = 8 for the authors' default of 100 epochs."""
PRETRAIN_ADAM_FACTORS = (8, 16, 32)
"""``pretrain_adam``: pretrained NeuMF trained on with Adam, as the authors' README does."""
LR_CELLS = (("MLP", 8, 1), ("MLP", 8, 2), ("MLP", 16, 1), ("NeuMF", 64, 3))
LR_SEARCH = (0.0005, 0.005)
"""``lr``: the cells far from the paper (model, F, hidden layers) at the rates beside 0.001."""
MLPERF = {"ml-20m": (138493, 26744, 19861770), "ml-1m-neg999": (6040, 3706, 994169)}
"""``mlperf``: the report's data sets for ``--preset mlperf`` (users, items, training
interactions); any ``--dataset`` is planned."""
MLPERF_EPOCHS = 20
"""MLPerf stops at HR@10 0.635 (NVIDIA's DGX-1 log: epoch 14); 20 epochs run on."""
NCF_BEYOND = (("GMF", 8), ("MLP", 8), ("NeuMF", 8))
"""NCF models run with validation selection (3 seeds each)."""


@dataclasses.dataclass
class Job:
    """One run: its stable name, its command and the runs it needs first."""

    name: str
    script: str
    flags: list[str]
    needs: tuple[str, ...] = ()
    estimate_s: float = 0.0

    def argv(self, program: list[str], results_dir: str, model_dir: str,
             data_path: str) -> list[str]:
        """The command line after ``program``, with a pretrained NeuMF's weight files."""
        extra = [word for dependency, flag in zip(self.needs, ("--mf_pretrain", "--mlp_pretrain"))
                 for word in (flag, weights_file(dependency, results_dir, model_dir))]
        paths = ["--path", data_path, "--results_dir", results_dir]
        if self.script != "train_baseline":
            paths += ["--model_dir", model_dir]
        return [*program, *self.flags, *extra, *paths, "--run_name", self.name]

    def shell(self) -> str:
        """The command as a user would type it (pretraining via --pretrain)."""
        pretrain = ["--pretrain"] if self.needs else []
        return " ".join([f"bin/{self.script}", *self.flags, *pretrain])


DEFERRED_STEP_MS = (1.2, 0.023)
"""Deferred Adam's step at batch 256 in ms: a fixed part and a part per million
FLOPs of the tower, fitted to results/benchmark_tables.txt."""


def estimate_epoch_s(model: str, dataset: str, factors: int, layers: list[int],
                     num_neg: int = 4, learner: str = "adam") -> float:
    """Seconds per epoch: a planning figure (deferred Adam, as ``--adam auto`` picks it,
    from :data:`DEFERRED_STEP_MS`; dense Adam and SGD per million parameters)."""
    users, items, train = DATASETS.get(dataset, DATASETS["ml-1m"])
    width = {"GMF": factors, "MLP": layers[0], "NeuMF": factors + layers[0]}[model]
    dense = sum(a * b for a, b in zip(layers, layers[1:])) if model != "GMF" else 0
    steps = train * (1 + num_neg) / 256
    config = TrainConfig(model=model, num_factors=factors, layers=layers,
                         reg_layers=[0.0] * len(layers), learner=learner, batch_size=256)
    if config.resolved_adam(users, items) == "deferred":
        mflops = config.step_flops() / 1e6
        return steps * (DEFERRED_STEP_MS[0] + DEFERRED_STEP_MS[1] * mflops) / 1000
    params_m = ((users + items) * width + dense) / 1e6
    scale = 1.7 if learner == "adam" else 0.7
    return steps * (0.15 + scale * params_m) / 1000


def ncf_job(model: str, dataset: str, factors: int, seed: int, layers=None, num_neg: int = 4,
            pretrained: bool = False, selection: str = "test", epochs: int = EPOCHS,
            learner: str | None = None, lr: float = TrainConfig.lr) -> Job:
    """One GMF, MLP or NeuMF run; ``learner`` None: the script's default."""
    layers = layers if layers is not None else tower(factors)
    config = TrainConfig(model=model, dataset=dataset, epochs=epochs, num_factors=factors,
                         layers=layers, reg_layers=[0.0] * len(layers), num_neg=num_neg,
                         seed=seed, pretrain=pretrained, selection=selection, learner=learner,
                         lr=lr)
    flags = ["--dataset", dataset, "--epochs", str(epochs), "--seed", str(seed)]
    if selection != "test":
        flags += ["--selection", selection, "--full_ranking"]
    if model != "MLP":
        flags += ["--num_factors", str(factors)]
    if model != "GMF":
        flags += ["--layers", ",".join(map(str, layers)),
                  "--reg_layers", ",".join(["0"] * len(layers))]
    if num_neg != 4:
        flags += ["--num_neg", str(num_neg)]
    if learner:
        flags += ["--learner", learner]
    if lr != TrainConfig.lr:
        flags += ["--lr", f"{lr:g}"]
    needs = ((ncf_job("GMF", dataset, factors, seed, num_neg=num_neg).name,
              ncf_job("MLP", dataset, factors, seed, layers, num_neg).name) if pretrained else ())
    estimate = epochs * estimate_epoch_s(model, dataset, factors, layers, num_neg,
                                         config.resolved_learner)
    return Job(config.run_key(), f"train_{model.lower()}", flags, needs, estimate)


def fast_job(dataset: str, seed: int, batch_size: int = 256, lr: float = 0.001,
             lazy_adam: bool = False) -> Job:
    """NeuMF-8 from scratch in fast mode (see :data:`FAST_VARIANTS`)."""
    base = ncf_job("NeuMF", dataset, 8, seed)
    config = TrainConfig(model="NeuMF", dataset=dataset, epochs=EPOCHS, seed=seed,
                         batch_size=batch_size, lr=lr, lazy_adam=lazy_adam)
    flags = (base.flags + ["--batch_size", str(batch_size), "--lr", f"{lr:g}"]
             + (["--lazy_adam"] if lazy_adam else []))
    return Job(config.run_key(), base.script, flags, (), base.estimate_s * 256 / batch_size)


def mlperf_job(dataset: str, seed: int, epochs: int = MLPERF_EPOCHS) -> Job:
    """NeuMF with ``--preset mlperf`` (``ncf_tf.train.config.PRESETS``) on ``dataset``."""
    config = TrainConfig(**with_preset({"model": "NeuMF", "dataset": dataset, "epochs": epochs,
                                        "seed": seed}, "mlperf", {"epochs", "dataset", "seed"}))
    flags = ["--preset", "mlperf", "--dataset", dataset, "--epochs", str(epochs),
             "--seed", str(seed)]
    users, items, train = MLPERF.get(dataset, MLPERF["ml-1m-neg999"])
    # A 2^20 step of NeuMF-64 as results/scale.txt measures it, 5 instances an interaction,
    # plus the evaluation of 999 negatives per user.
    epoch_s = -(-train * 5 // config.batch_size) * 5.0 + users * 1e-2
    return Job(config.run_key(), "train_neumf", flags, (), epochs * epoch_s)


def tuned_baseline_job(name: str, params: dict, dataset: str, seed: int,
                       selection: str = "validation") -> Job:
    """A grid point fitted without the validation items (``selection="validation"``),
    or the chosen point refitted on the whole training file (``"none"``)."""
    flags = ["--baseline", name, "--dataset", dataset, "--seed", str(seed),
             "--selection", selection, "--full_ranking"]
    flags += [f"--param={k}={v}" for k, v in sorted(params.items())]
    width = params.get("num_factors", 64)
    return Job(baseline_key(name, params, dataset, seed, selection), "train_baseline",
               flags, (), 120.0 * width / 64)


def chosen(name: str, dataset: str, results_dir: str) -> dict | None:
    """The grid point of ``name`` best on validation HR, once the grid is recorded."""
    found = []
    for params in TUNING_GRID[name]:
        job = tuned_baseline_job(name, params, dataset, 0)
        if status(job, results_dir) != "finished":
            return None
        record = RunRecord.load(os.path.join(results_dir, f"{job.name}.json"))
        found.append((record.best_validation["hr"], params))
    return max(found, key=lambda pair: pair[0])[1]


def beyond_jobs(dataset: str, seeds: int, results_dir: str) -> list[Job]:
    """Each baseline grid, its chosen point refitted (once the grid is recorded),
    then the validation-selected NCF models."""
    jobs = [tuned_baseline_job(name, params, dataset, 0)
            for name, grid in TUNING_GRID.items() for params in grid]
    for name in TUNING_GRID:
        if (best := chosen(name, dataset, results_dir)) is not None:
            jobs += [tuned_baseline_job(name, best, dataset, s, "none")
                     for s in range(1 if name in DETERMINISTIC else seeds)]
    return jobs + [ncf_job(model, dataset, f, s, selection="validation")
                   for s in range(seeds) for model, f in NCF_BEYOND]


def baseline_jobs(dataset: str, factors: tuple[int, ...]) -> list[Job]:
    jobs = []
    for name, grid in BASELINE_GRID.items():
        sizes = factors if name in ("BPR", "eALS") else (None,)
        for size in sizes:
            for point in grid:
                params = {**point, **({"num_factors": size} if size else {})}
                flags = ["--baseline", name, "--dataset", dataset, "--seed", "0"]
                flags += [f"--param {k}={v}" for k, v in sorted(params.items())]
                jobs.append(Job(baseline_key(name, params, dataset, 0), "train_baseline",
                                " ".join(flags).split(), (), 60.0 * (size or 1) / 8))
    return jobs


def ncf_cell(dataset: str, factors: int, seed: int) -> list[Job]:
    """GMF, MLP, NeuMF from scratch and pretrained NeuMF at one factor and seed."""
    return [ncf_job("GMF", dataset, factors, seed), ncf_job("MLP", dataset, factors, seed),
            ncf_job("NeuMF", dataset, factors, seed, pretrained=True),
            ncf_job("NeuMF", dataset, factors, seed)]


def plan(experiment: str, dataset: str, seeds: int | None = None,
         results_dir: str = "results/runs") -> list[Job]:
    """The runs of ``experiment`` ("all": every one, most important first) with
    seeds 0 .. ``seeds`` - 1 per cell (None: :data:`SEEDS`); ``beyond`` plans a
    tuned baseline's seeds once its grid is recorded in ``results_dir``."""
    seeds = SEEDS.get(experiment, 1) if seeds is None else seeds
    if experiment == "beyond":
        return beyond_jobs(dataset, seeds, results_dir)
    if experiment == "mlperf":
        return [mlperf_job(dataset, s) for s in range(seeds)]
    if experiment == "fast":
        return [fast_job(dataset, s, **variant) for s in range(seeds) for variant in FAST_VARIANTS]
    if experiment == "table2":
        return [j for f in FACTORS for s in range(seeds) for j in ncf_cell(dataset, f, s)]
    if experiment in ("fig4", "fig5", "fig6"):   # Table 2's seed 0, and the baselines
        factors = FACTORS if experiment == "fig4" else (8,)
        return ([j for f in factors for j in ncf_cell(dataset, f, 0)[:3]]
                + (baseline_jobs(dataset, factors) if experiment != "fig6" else []))
    if experiment == "table3":
        return [ncf_job("MLP", dataset, f, s, tower(f, hidden))
                for f in FACTORS for hidden in range(5) for s in range(seeds)]
    if experiment == "pretrain_adam":
        return [j for f in PRETRAIN_ADAM_FACTORS for s in range(seeds)
                for j in ncf_cell(dataset, f, s)[:2]
                + [ncf_job("NeuMF", dataset, f, s, pretrained=True, learner="adam")]]
    if experiment == "lr":
        return [ncf_job(model, dataset, f, s, tower(f, hidden), lr=lr)
                for model, f, hidden in LR_CELLS for lr in LR_SEARCH for s in range(seeds)]
    if experiment == "long":
        return [ncf_job("MLP", dataset, 8, s, tower(8, hidden), epochs=LONG_EPOCHS)
                for hidden in LONG_MLP_HIDDEN for s in range(seeds)]
    if experiment == "fig7":
        return ([ncf_job(m, dataset, 16, s, num_neg=n, pretrained=(m == "NeuMF"))
                 for n in range(1, 11) for s in range(seeds) for m in ("GMF", "MLP", "NeuMF")]
                + [j for j in baseline_jobs(dataset, (16,)) if "_BPR_" in j.name])
    if experiment == "all":
        first = [j for s in range(seeds) for j in ncf_cell(dataset, 8, s)]
        seed0 = [j for f in FACTORS[1:] for j in ncf_cell(dataset, f, 0)]
        later = [j for f in FACTORS[1:] for s in range(1, seeds) for j in ncf_cell(dataset, f, s)]
        ordered = (first + baseline_jobs(dataset, FACTORS) + seed0 + plan("table3", dataset, 1)
                   + plan("fig7", dataset, 1) + later
                   + plan("beyond", dataset, seeds, results_dir))
        unique: dict[str, Job] = {}
        for job in ordered:
            unique.setdefault(job.name, job)
        return list(unique.values())
    raise ValueError(f"--only must be one of {', '.join(EXPERIMENTS)} or all, got {experiment!r}")


def with_needs(selected: list[Job], jobs: list[Job], results_dir: str | None = None) -> list[Job]:
    """``selected`` plus, in front, the jobs of ``jobs`` they need; with
    ``results_dir``, a need neither in ``jobs`` nor recorded there is a ValueError."""
    by_name = {job.name: job for job in jobs}
    out: list[Job] = []

    def add(job: Job) -> None:
        for dependency in job.needs:
            if dependency in by_name:
                add(by_name[dependency])
            elif results_dir and not os.path.exists(os.path.join(results_dir,
                                                                 f"{dependency}.json")):
                raise ValueError(f"run {job.name} needs {dependency}, which is neither "
                                 f"recorded nor planned")
        if job not in out:
            out.append(job)

    for job in selected:
        add(job)
    return out


def weights_file(name: str, results_dir: str, model_dir: str) -> str:
    """``<model_dir>/<name>.weights.h5``, unless only the record's ``weights_file`` exists."""
    own = os.path.join(model_dir, f"{name}.weights.h5")
    saved = RunRecord.load(os.path.join(results_dir, f"{name}.json")).weights_file
    return saved if not os.path.isfile(own) and saved and os.path.isfile(saved) else own


RERUN_TOLERANCE = 1e-3
"""How far a rerun's HR or NDCG may be from its record at any epoch and still
count as the same run: threaded float sums differ from run to run; a rank tie can flip."""


def rerun_gap(record: RunRecord, rerun: RunRecord) -> float:
    """The largest difference in HR or NDCG at any epoch between a record and a
    finished rerun of it (infinite if the rerun is unfinished or shorter)."""
    old, new = record.epochs or [], rerun.epochs or []
    if not rerun.finished or len(old) != len(new):
        return float("inf")
    return max((abs(a[m] - b[m]) for a, b in zip(old, new) for m in ("hr", "ndcg")),
               default=0.0)


def rerun_differs(record: RunRecord, rerun: RunRecord) -> str:
    """Why a rerun does not count as the recorded run, or "" if it finishes the
    same epochs within :data:`RERUN_TOLERANCE` and picks the same best epoch."""
    gap = rerun_gap(record, rerun)
    if gap == float("inf"):
        return f"it did not finish the record's {len(record.epochs or [])} epochs"
    if gap > RERUN_TOLERANCE:
        return f"its HR/NDCG is {gap:.6f} from the record's (more than {RERUN_TOLERANCE})"
    if rerun.best_epoch != record.best_epoch:
        return f"its best epoch is {rerun.best_epoch}, the record's {record.best_epoch}"
    return ""


def status(job: Job, results_dir: str) -> str:
    """"finished", "diverged" (a result too: not run again), "running" or "missing"."""
    path = os.path.join(results_dir, f"{job.name}.json")
    return RunRecord.load(path).status if os.path.exists(path) else "missing"


def to_restore(jobs: list[Job], results_dir: str, model_dir: str) -> set[str]:
    """The finished jobs whose weights an unfinished job needs and which are gone."""
    by_name = {job.name: job for job in jobs}
    return {d for job in jobs if status(job, results_dir) != "finished" for d in job.needs
            if d in by_name and status(by_name[d], results_dir) == "finished"
            and not os.path.isfile(weights_file(d, results_dir, model_dir))}


def execute(jobs: list[Job], *, program: Callable[[str], list[str]], results_dir: str,
            model_dir: str, data_path: str, parallel: int = 1,
            log: Callable[[str], None] = print, logs_dir: str | None = None) -> list[str]:
    """Runs the unfinished ``jobs`` (dependencies first); returns failed names.

    ``program(script)`` is the command that runs ``bin/<script>`` in a process of
    its own. A dependency neither in ``jobs`` nor recorded is a ValueError. A
    finished dependency whose weights are gone (a fresh checkout) is run again
    in ``<model_dir>/restored/<name>.<pid>/``, unseen by other runs; its weights
    are used only if :func:`rerun_differs` finds nothing. Each process gets
    ``cores / parallel`` threads and writes to ``<logs_dir>/<name>.log``.
    """
    order = with_needs(jobs, jobs, results_dir)
    restore_dir = os.path.join(model_dir, "restored")
    restoring = to_restore(order, results_dir, model_dir)
    pending = [job for job in order if job.name in restoring
               or status(job, results_dir) not in ("finished", "diverged")]

    def stage(name: str) -> str:
        return os.path.join(restore_dir, f"{name}.{os.getpid()}")

    def restored(name: str, exit_ok: bool) -> bool:
        """Checks a finished rerun; moves its weights into place if it counts."""
        rerun = os.path.join(stage(name), f"{name}.json")
        record = os.path.join(results_dir, f"{name}.json")
        why = "it failed (see its log)"
        if os.path.exists(rerun):
            if exit_ok:
                why = rerun_differs(RunRecord.load(record), RunRecord.load(rerun))
            kept = os.path.join(restore_dir, f"{name}.json")
            os.replace(rerun, kept)
            if why:
                why += f"; compare {kept} with {record}"
        if not why:
            os.replace(os.path.join(stage(name), f"{name}.weights.h5"),
                       os.path.join(model_dir, f"{name}.weights.h5"))
        shutil.rmtree(stage(name), ignore_errors=True)
        log(f"{name}: the rerun for its weights " + (
            f"is not used: {why}; delete the record to train it anew" if why
            else "reproduces its record: weights used"))
        return not why

    logs_dir = logs_dir or os.path.join(results_dir, os.pardir, "logs")
    os.makedirs(logs_dir, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // parallel)
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads),
               TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS=str(threads))
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    failed: list[str] = []
    restores = f" ({len(restoring)} again for their weights)" if restoring else ""
    log(f"{len(order) - len(pending) + len(restoring)} of {len(order)} runs already recorded; "
        f"{len(pending)} to run{restores}, {parallel} at a time")
    while pending or running:
        for name, (process, started) in list(running.items()):
            if process.poll() is not None:
                del running[name]
                ok = process.returncode == 0
                ok = restored(name, ok) if name in restoring else ok
                minutes = (time.time() - started) / 60
                log(f"{'done' if ok else 'FAILED'}: {name} [{minutes:.1f} min]")
                if not ok:
                    failed.append(name)
        for job in list(pending):
            if len(running) >= parallel:
                break
            # failed grows in this loop: a run skipped here blocks the runs that need it
            if any(d in failed or d in running or any(p.name == d for p in pending)
                   for d in job.needs):
                if any(d in failed for d in job.needs):
                    pending.remove(job)
                    failed.append(job.name)
                    log(f"skipped: {job.name} (a run it needs failed)")
                continue
            pending.remove(job)
            out = open(os.path.join(logs_dir, f"{job.name}.log"), "a")
            restore = job.name in restoring
            log(f"{'restore' if restore else 'start'}: {job.name} "
                f"(estimated {job.estimate_s / 60:.0f} min)")
            folders = (stage(job.name),) * 2 if restore else (results_dir, model_dir)
            os.makedirs(folders[0], exist_ok=True)
            process = subprocess.Popen(job.argv(program(job.script), *folders, data_path),
                                       stdout=out, stderr=subprocess.STDOUT, env=env)
            running[job.name] = (process, time.time())
        time.sleep(1.0)
    return failed
