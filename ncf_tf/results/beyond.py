"""The sections of results/README.md beyond the paper."""

from __future__ import annotations

import collections
import glob
import itertools
import json
import os

import numpy as np

from ncf_tf.core.records import RunRecord
from ncf_tf.results import reproduce
from ncf_tf.results.cells import (delta, factors_of, hidden_of, is_standard, mean_sd, metric,
                                  pair, paper_of, setting_of)
from ncf_tf.train.config import PRESET_TARGETS, PRESETS, TrainConfig

GOAL = {"ml-1m": (0.731, 0.452), "pinterest-20": (0.8895, 0.5794)}
"""The best published validation-selected numbers on these files (issue goal)."""


def beyond(rep: "Report", records: list[RunRecord], dataset: str) -> None:
    rep.add(f"### Beyond the paper: selection on validation only ({dataset})", "",
            "Selection uses a validation set only: each user's latest training interaction "
            "with 99 sampled negatives, held out of the training file. NCF models train "
            "without it and are tested at the epoch best on it (3 seeds). Baselines: every "
            "point of their grid (`ncf_tf/results/reproduce.py`) is fitted without it (seed 0), "
            "the point best on it is refitted on the whole training file and tested. *Test-picked* "
            "is what the authors' protocol would report for the same NCF runs (best epoch on "
            "test); *optimism* is its excess. Full ranking ranks the test item against every "
            "item the user has not trained on.", "")
    rows, summary = [], []
    groups = collections.defaultdict(list)
    for r in records:
        if (r.dataset == dataset and r.kind == "train" and r.selection == "validation"
                and not r.fast_mode):
            groups[f"{r.model}-{factors_of(r)}"].append(r)
    validation_hr = {label: [r.best_validation["hr"] for r in runs]
                     for label, runs in groups.items()}
    baselines = [r for r in records if r.dataset == dataset and r.kind == "baseline"]
    for name in reproduce.TUNING_GRID:
        seed0 = [r for r in baselines
                 if r.model == name and r.selection == "validation" and r.seed == 0]
        if not seed0:
            continue
        best = max(seed0, key=lambda r: r.best_validation["hr"])
        refits = [r for r in baselines if r.model == name and r.selection == "test"
                  and r.params == best.params and r.full_ranking]
        label = f"{name} ({', '.join(f'{k}={v}' for k, v in sorted(best.params.items()))})"
        if len(seed0) < len(reproduce.TUNING_GRID[name]):
            label += f" [grid {len(seed0)}/{len(reproduce.TUNING_GRID[name])} so far]"
        validation_hr[label] = best.best_validation["hr"]
        groups[label] = refits
    for label, runs in groups.items():
        if not runs:
            rows.append([label, f"{validation_hr[label]:.4f}", "(refit not yet run)",
                         *["–"] * 5])
            continue
        hr, ndcg = metric(runs, "hr"), metric(runs, "ndcg")
        picked = [r.test_picked["hr"] for r in runs if r.test_picked]
        full = [r.full_ranking for r in runs if r.full_ranking]
        chosen_on = validation_hr[label]
        rows.append([label, mean_sd(chosen_on) if isinstance(chosen_on, list)
                     else f"{chosen_on:.4f} (grid, seed 0)", mean_sd(hr),
                     mean_sd(ndcg), f"{np.mean(picked):.4f}" if picked else "–",
                     f"{np.mean(picked) - np.mean(hr):+.4f}" if picked else "–",
                     f"{np.mean([f['hr'] for f in full]):.4f}" if full else "–",
                     f"{np.mean([f['ndcg'] for f in full]):.4f}" if full else "–"])
        summary.append((float(np.mean(chosen_on)), np.mean(hr), np.mean(ndcg), label))
    if not rows:
        rep.add("No validation-selected records yet: `bin/reproduce --only beyond "
                f"--dataset {dataset}`.", "")
        return
    rep.table(f"beyond_{dataset}", ["model", "validation HR@10", "test HR@10 (n)",
                                    "test NDCG@10 (n)", "test-picked HR@10", "optimism",
                                    "full-ranking HR@10", "full-ranking NDCG@10"], rows)
    if summary and (goal := GOAL.get(dataset)):
        _, best_hr, best_ndcg, label = max(summary)
        users = reproduce.DATASETS[dataset][0]
        stderr = np.sqrt(best_hr * (1 - best_hr) / users)
        rep.add(f"Best model on validation: {label}, test HR@10 {best_hr:.4f}, "
                f"NDCG@10 {best_ndcg:.4f}; the best published number under this protocol is "
                f"{goal[0]} / {goal[1]} (difference {best_hr - goal[0]:+.4f} / "
                f"{best_ndcg - goal[1]:+.4f}). One binomial standard error of an HR@10 of "
                f"{best_hr:.2f} over {users:,} test users is {stderr:.4f}.", "")
        if best_hr < goal[0]:
            rep.add(f"Short of it by {goal[0] - best_hr:.4f} HR@10, "
                    f"{(goal[0] - best_hr) / stderr:.1f} standard errors. What could close it: a "
                    "joint grid over the embedding size (above 256), alpha and reg of iALS, with "
                    "several validation seeds per point, since one seed's validation HR@10 is "
                    "itself this noisy.",
                    "")


def epoch_s(record: RunRecord) -> float:
    """Median seconds of sampling + training per epoch of a run record."""
    return float(np.median([e["sample_s"] + e["train_s"] for e in record.epochs]))


def fast_mode(rep: "Report", records: list[RunRecord], dataset: str) -> None:
    """Fast-mode NeuMF-8 runs beside the faithful ones: speed and HR/NDCG."""
    fast = collections.defaultdict(list)
    for r in records:
        if (r.dataset == dataset and r.kind == "train" and r.fast_mode and r.model == "NeuMF"
                and factors_of(r) == 8 and setting_of(r) == "from scratch"
                and r.selection == "test" and r.config["epochs"] == reproduce.EPOCHS):
            fast[r.name.rsplit("_s", 1)[0]].append(r)
    if not fast:
        return
    rep.add(f"### Fast mode: speed against HR/NDCG ({dataset})", "",
            "Opt-in changes of the mathematics (`--lazy_adam`, `--precision`, batches beyond "
            "the paper's 128..1024), each labelled in its record (`mode: fast`). Same "
            "protocol as Table 2 (20 epochs, best epoch on test). Epoch time: median of "
            "sampling + training per epoch from the records, which ran beside other runs on a "
            "shared machine; `benchmark.txt` times the variants turn about.", "")
    faithful = rep.cells.ncf_runs(dataset, "NeuMF", 8)
    base_hr = np.mean(metric(faithful, "hr")) if faithful else None
    base_s = np.median([epoch_s(r) for r in faithful]) if faithful else None
    rows = [["NeuMF-8, faithful (dense Adam, batch 256)", mean_sd(metric(faithful, "hr")),
             mean_sd(metric(faithful, "ndcg")), "–", f"{base_s:.1f}" if base_s else "–", "–"]]
    for name, runs in sorted(fast.items()):
        hr, seconds = metric(runs, "hr"), np.median([epoch_s(r) for r in runs])
        rows.append([f"`{name}`: " + "; ".join(runs[0].fast_mode), mean_sd(hr),
                     mean_sd(metric(runs, "ndcg")), delta(hr, base_hr), f"{seconds:.1f}",
                     f"x{base_s / seconds:.1f}" if base_s else "–"])
    rep.table(f"fast_{dataset}", ["run", "HR@10 (n)", "NDCG@10 (n)", "ΔHR vs faithful",
                                  "s/epoch", "speed-up"], rows)


def longer_training(rep: "Report", records: list[RunRecord], dataset: str) -> None:
    """MLP-1 and MLP-2 (F = 8) over 100 epochs, beside their best in the first 20."""
    runs = sorted((r for r in records
                   if r.dataset == dataset and r.kind == "train" and r.model == "MLP"
                   and is_standard(r, reproduce.LONG_EPOCHS)),
                  key=lambda r: (hidden_of(r), r.name))
    if not runs:
        return
    rep.add(f"### Longer training: MLP over {reproduce.LONG_EPOCHS} epochs ({dataset})", "",
            f"The tables run the authors' README's 20 epochs; their script's default is "
            f"{reproduce.LONG_EPOCHS}. Best epoch on test, as in the tables.", "")
    rows = []
    for r in runs:
        hidden, factors = hidden_of(r), factors_of(r)
        early = [e for e in r.epochs[:reproduce.EPOCHS] if e["hr"] is not None]
        first = max(early, key=lambda e: e["hr"]) if early else None
        ref = paper_of(rep.paper, dataset, "MLP", factors, hidden=hidden)
        rows.append([f"MLP-{hidden}, F = {factors}, seed {r.seed}",
                     f"{pair(first['hr'], first['ndcg'])} ({first['epoch']})" if first else "–",
                     f"{pair(r.best['hr'], r.best['ndcg'])} ({r.best_epoch})",
                     pair(*ref, 3) if ref else "–"])
    rep.table(f"long_{dataset}", ["run", f"best in epochs 0-{reproduce.EPOCHS - 1} (epoch)",
                                  f"best in {reproduce.LONG_EPOCHS} epochs (epoch)", "paper"], rows)


def learning_rates(rep: "Report", records: list[RunRecord], dataset: str) -> None:
    """The cells far from the paper at the learning rates either side of 0.001."""
    rates = sorted({*reproduce.LR_SEARCH, TrainConfig.lr})

    def runs(model, factors, hidden, lr):
        return rep.cells.ncf_runs(dataset, model, factors, hidden=hidden, lr=lr)

    cells = [cell for cell in reproduce.LR_CELLS
             if any(runs(*cell, lr) for lr in reproduce.LR_SEARCH)]
    if not cells:
        return
    rep.add(f"### Learning rate: the cells far from the paper ({dataset})", "",
            "The paper searched the learning rate in {0.0001, 0.0005, 0.001, 0.005}; the tables "
            "run the authors' README's 0.001 throughout. HR@10 / NDCG@10 at the best epoch on "
            "test (mean over n seeds), from scratch (`bin/reproduce --only lr`).", "")
    rows = []
    for model, factors, hidden in cells:
        name = (f"MLP-{hidden}, F = {factors}" if model == "MLP"
                else f"{model}, F = {factors}, from scratch")
        ref = paper_of(rep.paper, dataset, model, factors, hidden=hidden)
        row = [name]
        for lr in rates:
            found = runs(model, factors, hidden, lr)
            row.append(f"{pair(np.mean(metric(found, 'hr')), np.mean(metric(found, 'ndcg')))} "
                       f"({len(found)})" if found else "–")
        rows.append(row + [pair(*ref, 3) if ref else "–"])
    rep.table(f"lr_{dataset}", ["cell", *(f"lr {lr:g}" for lr in rates), "paper"], rows)


RUN_ONLY = ("epochs", "path", "model_dir", "results_dir", "run_name", "tensorboard",
            "progress", "verbose", "device")
"""Config entries that do not change an epoch's result."""


def machine_of(record: RunRecord) -> str:
    """"2 CPU (AMD EPYC), 1 thread, cpu": cores, model, threads the run used, device."""
    machine = record.machine
    words = f"{machine.get('cpu_count')} CPU"
    if machine.get("cpu_model"):
        words += f" ({machine['cpu_model']})"
    if threads := machine.get("intra_op_threads"):
        words += f", {threads} thread{'s' if threads != 1 else ''}"
    return f"{words}, {record.device or 'cpu'}"


def commit_of(record: RunRecord) -> str:
    return str(record.git["commit"])


def adam_of(record: RunRecord) -> str:
    """How the run computed Adam's dense update (records before the choice: dense)."""
    return str(record.config.get("adam", "dense"))


def same_seed_across_commits(rep: "Report", records: list[RunRecord], dataset: str) -> None:
    """Runs of one configuration and seed at different commits or with dense and
    deferred Adam, compared over the epochs both ran."""
    groups = collections.defaultdict(list)
    for r in records:
        if r.dataset == dataset and r.kind == "train":
            key = json.dumps([r.seed, {k: v for k, v in r.config.items()
                                       if k not in RUN_ONLY and k != "adam"}], sort_keys=True)
            groups[key].append(r)

    def label(r: RunRecord) -> str:
        deferred = ", deferred Adam" if adam_of(r) == "deferred" else ""
        return f"`{r.name}` ({commit_of(r)[:7]}{deferred})"

    rows = []
    for runs in groups.values():
        runs.sort(key=lambda r: r.name)
        for a, b in itertools.combinations(runs, 2):
            if commit_of(a) == commit_of(b) and adam_of(a) == adam_of(b):
                continue
            pairs = list(zip(a.epochs, b.epochs))
            diff = {key: max((abs(x[key] - y[key]) for x, y in pairs
                              if x[key] is not None and y[key] is not None), default=0.0)
                    for key in ("loss", "hr", "ndcg")}
            rows.append([label(a), label(b), len(pairs),
                         *(f"{diff[key]:.2g}" for key in ("loss", "hr", "ndcg"))])
    if not rows:
        return
    rep.add(f"### Same seed, different commits or Adam ({dataset})", "",
            "Runs of one configuration and seed recorded at different commits (e.g. before "
            "and after a speed change), or with Keras 1's dense Adam computed densely and "
            "deferred (`--adam deferred`, the same updates to float32 rounding), compared over "
            "the epochs both ran: the largest difference of the epoch's loss, HR@10 and "
            "NDCG@10 (0: identical; one user's test item changing rank across the top 10 "
            "moves HR@10 by 1/users). A seed counts once in the tables above: its first "
            "record.", "")
    rep.table(f"same_seed_{dataset}", ["run", "run", "epochs", "max Δloss", "max ΔHR@10",
                                       "max ΔNDCG@10"], rows)


def mlperf(rep: "Report", records: list[RunRecord]) -> None:
    """``--preset mlperf`` runs on :data:`ncf_tf.results.reproduce.MLPERF`'s data sets."""
    target, preset = PRESET_TARGETS["mlperf"], PRESETS["mlperf"]
    rep.add("## MLPerf's NCF configuration", "",
            f"`--preset mlperf`: NeuMF with {preset['num_factors']} factors, layers "
            f"{preset['layers']}, batch {preset['batch_size']:,}, Adam lr {preset['lr']}, betas "
            f"{preset['adam_betas'][0]} and {preset['adam_betas'][1]}, {preset['num_neg']} "
            f"negatives per positive, each user's latest interaction tested against 999 "
            f"sampled negatives; MLPerf training v0.5 counts HR@10 = {target} as reached "
            "(NVIDIA's DGX-1 log: 0.6371 at epoch 14). Beyond the authors' code (batch and "
            "betas), so labelled `mode: fast` in the records. Best epoch on test, as in the "
            "authors' protocol; the epoch reaching the target is the MLPerf measure.", "")
    rows = []
    for dataset in reproduce.MLPERF:
        runs = [r for r in records if r.kind == "train" and r.dataset == dataset
                and r.config.get("preset") == "mlperf"]
        if not runs:
            absent = dataset == "ml-20m"
            rows.append([dataset, "not run here" if absent else "no finished run yet", "–", "–",
                         "–", "–", f"`bin/reproduce --only mlperf --dataset {dataset}`"
                         + (" after `bin/download_data --dataset ml-20m` (the files are not "
                            "on this machine)" if absent else "")])
            continue
        for r in sorted(runs, key=lambda r: r.seed):
            reached = next((e["epoch"] for e in r.epochs
                            if e.get("hr") is not None and e["hr"] >= target), None)
            rows.append([dataset, r.seed, f"{r.best['hr']:.4f} (epoch {r.best_epoch})",
                         f"{r.best['ndcg']:.4f}",
                         "not reached" if reached is None else f"epoch {reached}",
                         f"{epoch_s(r):.0f}",
                         f"{len(r.epochs)} epochs, {machine_of(r)}"])
    rep.table("mlperf", ["data", "seed", "HR@10", "NDCG@10", f"HR@10 >= {target}", "s/epoch",
                         "run"], rows)


def fold_in(rep: "Report", folder: str) -> None:
    """New users folded in (``runs/fold_in/``) beside a model trained with them."""
    found = [r for r in map(RunRecord.load, sorted(glob.glob(
        os.path.join(folder, "runs", "fold_in", "*.json"))))
        if r.kind == "fold_in" and r.status == "finished"]
    if not found:
        return
    rep.add("## New users: fold-in (ml-1m)", "",
            "Beyond the paper. 600 users (seeded choice) are held out of training entirely; "
            "the model trained without them keeps everything else frozen while each new user's "
            "embedding rows are fitted from their training items (NCF: Adam steps on the same "
            "log loss with sampled negatives; iALS: its closed-form user solve); they are then "
            "tested on their leave-one-out test items with the authors' 99 negatives, beside "
            "the same 600 users in a model trained with them (same settings and seed) and, for "
            "NCF, in the model without them before fold-in (their rows as initialised). "
            "`python -m ncf_tf.serve.fold_in_experiment` writes the records; "
            "`bin/recommend --fold_in FILE` does it for one user.", "")
    by_model = collections.defaultdict(list)
    for r in found:
        name = r.model or r.config.get("model")
        if name != "iALS":
            c = r.config
            name = (f"NeuMF-{c['num_factors']} {c['layers']}" if name == "NeuMF"
                    else f"{name}-{c.get('num_factors')}")
        by_model[name].append(r)
    rows = []
    for name, runs in sorted(by_model.items()):
        def values(part, key):
            return [getattr(r, part)[key] for r in runs if getattr(r, part) is not None]
        steps = runs[0].fold_in.get("steps")
        rows.append([name, len(runs), mean_sd(values("folded_in", "hr")),
                     mean_sd(values("folded_in", "ndcg")), mean_sd(values("trained_with", "hr")),
                     mean_sd(values("trained_with", "ndcg")),
                     mean_sd(values("untouched_rows", "hr")) if runs[0].untouched_rows is not None
                     else "–",
                     f"{steps} Adam steps, lr {runs[0].fold_in['lr']}" if steps
                     else runs[0].fold_in.get("optimizer", "–")])
    rep.table("fold_in", ["model", "seeds", "folded in: HR@10", "NDCG@10", "trained with: HR@10",
                          "NDCG@10", "before fold-in: HR@10", "fold-in"], rows)
