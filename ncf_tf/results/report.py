"""results/: README.md, CSV tables and PNG plots, generated from run records alone.

Every finished record under ``results/runs/`` (``bin/train_*``,
``bin/train_baseline``) is put into the cells of the paper's experiments
(:mod:`ncf_tf.results.reproduce` plans them); each cell shows our mean +- sd over
seeds with n beside the paper's value and the difference. Planned runs
without a record are listed with their command and estimated cost.
"""

from __future__ import annotations

import collections
import csv
import glob
import itertools
import json
import os
import sys

import numpy as np

from ncf_tf.results import reproduce
from ncf_tf.train.config import TrainConfig
from ncf_tf.core.records import read_json

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATASETS = tuple(reproduce.DATASETS)
BASELINE_ORDER = ("Random", "ItemPop", "ItemKNN", "BPR", "eALS")
NCF_ORDER = ("GMF", "MLP", "NeuMF")
DIFF = 0.01
"""Cells further than this from the paper are listed."""


# ----------------------------------------------------------------- records

def load_records(folder: str) -> list[dict]:
    """Finished records of ``folder``, each with ``_file`` (path from results/)."""
    found = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        record = read_json(path)
        if record.get("status") != "finished" or record.get("kind") not in ("train", "baseline"):
            continue
        if record["kind"] == "train" and record["config"]["epochs"] == 0:
            continue
        record["_file"] = os.path.relpath(path, os.path.dirname(folder))
        record["_name"] = os.path.splitext(os.path.basename(path))[0]
        found.append(record)
    return found


def factors_of(record: dict) -> int | None:
    config = record["config"]
    if record["kind"] == "baseline":
        return config.get("num_factors")
    return config["num_factors"] if record["model"] == "GMF" else config["layers"][-1]


def setting_of(record: dict) -> str:
    config = record["config"]
    if record["model"] != "NeuMF":
        return "from scratch"
    if config.get("pretrain") or config.get("mf_pretrain"):
        if "authors_pretrain" in config.get("mf_pretrain", ""):
            return "pretrained (authors' GMF/MLP files)"
        return "pretrained"
    return "from scratch"


def is_standard(record: dict, epochs: int = reproduce.EPOCHS,
                lr: float | None = TrainConfig.lr) -> bool:
    """An NCF run with the planned settings (``epochs``, ``lr``, batch, no
    regularisation); ``lr`` None: at any learning rate."""
    config = record["config"]
    return (record.get("selection", "test") == "test" and config["epochs"] == epochs
            and config["batch_size"] == 256
            and lr in (None, config["lr"]) and not config.get("learner")
            and not any(config.get("reg_layers", [])) and not any(config.get("regs", []))
            and config.get("alpha", 0.5) == 0.5 and not record.get("fast_mode"))


def is_pretrained_adam(record: dict, dataset: str) -> bool:
    """A Table 2 pretrained NeuMF run, but trained on with Adam (``pretrain_adam``)."""
    return (record["kind"] != "baseline" and record["dataset"] == dataset
            and record["model"] == "NeuMF" and setting_of(record) == "pretrained"
            and record["config"].get("learner") == "adam" and record["config"]["num_neg"] == 4
            and hidden_of(record) == 3
            and is_standard({**record, "config": {**record["config"], "learner": None}}))


def hidden_of(record: dict) -> int:
    return len(record["config"]["layers"]) - 1


def published(path: str) -> dict:
    """(dataset, model, F, setting) -> (hr, ndcg) of the paper; other rows under
    ("re-run", dataset, model) -> (hr, ndcg, source)."""
    table = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            hr, ndcg = float(row["hr@10"]), float(row["ndcg@10"])
            if row["source"].startswith("paper") and row["factors"]:
                table[(row["dataset"], row["model"], int(row["factors"]), row["setting"])] = (hr, ndcg)
            else:
                table.setdefault(("re-run", row["dataset"]), []).append(
                    (row["model"], row["setting"], row["factors"], hr, ndcg, row["source"]))
    return table


# ---------------------------------------------------------------- cells

def mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f} (1)"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} ({len(values)})"


def delta(values: list[float], ref: float | None) -> str:
    return f"{np.mean(values) - ref:+.3f}" if values and ref is not None else "–"


class Cells:
    """Records indexed for the experiments' tables.

    A seed counts once per cell: where one configuration and seed was run
    again (at a later commit, to compare), the first record is the cell's
    and the others appear under "Same seed, different commits".
    """

    def __init__(self, records: list[dict]):
        self.records = records
        self.ncf = collections.defaultdict(list)  # (ds, model, F, setting, neg, hidden, lr)
        self.baselines = collections.defaultdict(list)  # (ds, name, F)
        for r in sorted(records, key=lambda r: str(r.get("started", ""))):
            if r["kind"] == "baseline":
                self.baselines[(r["dataset"], r["model"], factors_of(r))].append(r)
            elif is_standard(r, lr=None):
                key = (r["dataset"], r["model"], factors_of(r), setting_of(r),
                       r["config"]["num_neg"], hidden_of(r) if r["model"] != "GMF" else 0,
                       r["config"]["lr"])
                if all(other["seed"] != r["seed"] for other in self.ncf[key]):
                    self.ncf[key].append(r)

    def ncf_runs(self, dataset, model, factors, setting="from scratch", neg=4, hidden=3,
                 lr=TrainConfig.lr):
        return self.ncf.get((dataset, model, factors, setting, neg,
                             0 if model == "GMF" else hidden, lr), [])

    def best_baseline(self, dataset, name, factors=None) -> dict | None:
        return best_on_test(self.baselines.get((dataset, name, factors), []))

    def baseline_grid(self, dataset, name, factors=None) -> list[dict]:
        return self.baselines.get((dataset, name, factors), [])


def best_on_test(runs: list[dict]) -> dict | None:
    """The grid point with the best test HR (the authors' selection rule)."""
    return max(runs, key=lambda r: r["best"]["hr"]) if runs else None


def grid_edges(runs: list[dict]) -> list[str]:
    """The settings in which the best run of a grid (on test HR) takes the
    smallest or largest value tried, among the runs that differ from it in
    that setting only, e.g. ``["reg=10.0, the largest of 4 tried"]``."""
    best = best_on_test(runs)
    if best is None:
        return []
    edges = []
    for key, value in sorted(best["params"].items()):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        tried = {r["params"][key] for r in runs if key in r["params"]
                 and all(r["params"].get(k) == v for k, v in best["params"].items() if k != key)}
        if len(tried) > 1 and value in (min(tried), max(tried)):
            end = "smallest" if value == min(tried) else "largest"
            edges.append(f"{key}={value}, the {end} of {len(tried)} tried")
    return edges


def metric(runs: list[dict], key: str, k: int = 10) -> list[float]:
    if k == 10:
        return [r["best"][key] for r in runs]
    return [r["best"]["topk"][str(k)][key] for r in runs]


# ------------------------------------------------------------- sections

class Report:
    def __init__(self, cells: Cells, paper: dict, folder: str):
        self.cells, self.paper, self.folder = cells, paper, folder
        self.lines: list[str] = []
        self.tables: dict[str, list[list]] = {}
        self.differences: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, name: str, header: list[str], rows: list[list]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        self.add(*("| " + " | ".join(str(c) for c in row) + " |" for row in rows), "")
        self.tables[name] = [header, *rows]

    def note_difference(self, label: str, ours: list[float], ref: float | None) -> None:
        if ours and ref is not None and abs(np.mean(ours) - ref) > DIFF:
            self.differences.append(f"{label}: ours {np.mean(ours):.4f} (n = {len(ours)}), "
                                    f"paper {ref:.3f}, Δ {np.mean(ours) - ref:+.3f}")

    def table2(self, dataset: str) -> None:
        self.add(f"### Table 2: NeuMF with and without pretraining ({dataset})", "")
        rows = []
        for f in reproduce.FACTORS:
            row = [f]
            for setting in ("pretrained", "from scratch"):
                runs = self.cells.ncf_runs(dataset, "NeuMF", f, setting)
                for i, key in enumerate(("hr", "ndcg")):
                    ref = self.paper.get((dataset, "NeuMF", f, setting))
                    ref = ref[i] if ref else None
                    ours = metric(runs, key)
                    self.note_difference(f"Table 2, {dataset}, NeuMF-{f} {setting}, "
                                         f"{key.upper()}@10", ours, ref)
                    row += [mean_sd(ours), f"{ref:.3f}" if ref is not None else "–",
                            delta(ours, ref)]
            rows.append(row)
        header = ["F"] + [f"{s} {m} {c}" for s in ("pretrained", "scratch")
                          for m in ("HR@10", "NDCG@10") for c in ("ours", "paper", "Δ")]
        self.table(f"table2_{dataset}", header, rows)
        authors = self.cells.ncf_runs(dataset, "NeuMF", 8, "pretrained (authors' GMF/MLP files)")
        if authors:
            for i, key in enumerate(("hr", "ndcg")):
                ref = self.paper.get((dataset, "NeuMF", 8, "pretrained"))
                self.note_difference(f"Table 2, {dataset}, NeuMF-8 pretrained from the authors' "
                                     f"files, {key.upper()}@10", metric(authors, key),
                                     ref[i] if ref else None)
            self.add(f"NeuMF-8 pretrained from the authors' published GMF/MLP files: HR@10 "
                     f"{mean_sd(metric(authors, 'hr'))}, NDCG@10 {mean_sd(metric(authors, 'ndcg'))}.",
                     "")
        self.after_pretraining(dataset)

    def after_pretraining(self, dataset: str) -> None:
        """What training does to the blended model: Table 2's SGD runs, and Adam's."""
        sgd = [r for f in reproduce.FACTORS
               for r in self.cells.ncf_runs(dataset, "NeuMF", f, "pretrained")]
        if sgd:
            at_blend = sum(r["best_epoch"] == -1 for r in sgd)
            change = [r["epochs"][-1]["hr"] - r["init"]["hr"] for r in sgd
                      if r["epochs"] and r["epochs"][-1]["hr"] is not None]
            self.add(f"Training after pretraining: in {at_blend} of the {len(sgd)} pretrained "
                     "runs above the best epoch is -1, the alpha = 0.5 blend of GMF and MLP "
                     "before any update; 20 epochs of vanilla SGD at lr 0.001 change test HR by "
                     f"{np.mean(change):+.4f} on average (blend to last epoch).", "")
        adam = [r for r in self.cells.records if is_pretrained_adam(r, dataset)]
        if not adam:
            return
        rows = []
        for f in sorted({factors_of(r) for r in adam}):
            runs = [r for r in adam if factors_of(r) == f]
            sgd_f = self.cells.ncf_runs(dataset, "NeuMF", f, "pretrained")
            ref = self.paper.get((dataset, "NeuMF", f, "pretrained"))
            row = [f]
            for i, key in enumerate(("hr", "ndcg")):
                row += [mean_sd(metric(runs, key)), mean_sd(metric(sgd_f, key)),
                        f"{ref[i]:.3f}" if ref else "–", delta(metric(runs, key), ref[i] if ref else None)]
            row.append(", ".join(str(r["best_epoch"]) for r in runs))
            rows.append(row)
        self.add("Pretrained NeuMF trained on with Adam (lr 0.001, fresh moments), as the "
                 "authors' README runs it, beside Table 2's vanilla SGD "
                 "(`bin/reproduce --only pretrain_adam`):", "")
        self.table(f"pretrain_adam_{dataset}", [
            "F", "HR@10 Adam", "HR@10 SGD", "HR@10 paper", "Δ Adam", "NDCG@10 Adam",
            "NDCG@10 SGD", "NDCG@10 paper", "Δ Adam", "best epoch (Adam)"], rows)

    def figure4(self, dataset: str) -> dict:
        self.add(f"### Figure 4: HR@10 and NDCG@10 against predictive factors ({dataset})", "")
        series = collections.defaultdict(dict)
        rows = []
        for f in reproduce.FACTORS:
            row = [f]
            for name in NCF_ORDER + BASELINE_ORDER:
                if name in NCF_ORDER:
                    setting = "pretrained" if name == "NeuMF" else "from scratch"
                    runs = self.cells.ncf_runs(dataset, name, f, setting)
                else:
                    best = self.cells.best_baseline(
                        dataset, name, f if name in ("BPR", "eALS") else None)
                    runs = [best] if best else []
                hr, ndcg = metric(runs, "hr"), metric(runs, "ndcg")
                if hr:
                    series[name][f] = (np.mean(hr), np.mean(ndcg))
                row.append(f"{np.mean(hr):.4f} / {np.mean(ndcg):.4f}" if hr else "–")
            rows.append(row)
        self.table(f"fig4_{dataset}", ["F", *(f"{n} HR / NDCG" for n in NCF_ORDER),
                                       *(f"{n} HR / NDCG" for n in BASELINE_ORDER)], rows)
        self.add("NeuMF here is the pretrained one (the paper's NeuMF); ItemKNN, BPR and eALS "
                 "show the best point of their grid on test HR (grids below). The paper pins "
                 "only NeuMF (Table 2) and MLP (Table 3) numerically; the re-runs of the "
                 "baselines on the same files are listed under *Published re-runs*.", "")
        return series

    def grids(self, dataset: str) -> None:
        rows, edges = [], []
        for name in BASELINE_ORDER:
            for f in (None, *reproduce.FACTORS):
                grid = self.cells.baseline_grid(dataset, name, f)
                for r in sorted(grid, key=lambda r: sorted(r["params"].items())):
                    rows.append([name, ", ".join(f"{k}={v}" for k, v in sorted(r["params"].items()))
                                 or "–", f"{r['best']['hr']:.4f}", f"{r['best']['ndcg']:.4f}",
                                 f"{r['fit_s']:.1f}"])
                edges += [f"{name}{'' if f is None else f' (F = {f})'}: {edge}"
                          for edge in grid_edges(grid)]
        if rows:
            self.add(f"Baseline grids ({dataset}):", "")
            self.table(f"baselines_{dataset}", ["baseline", "settings", "HR@10", "NDCG@10",
                                                "fit s"], rows)
            self.add("Best point at an end of its grid, where a wider search might do better: "
                     + "; ".join(edges) + "." if edges else
                     "Every best point lies inside its grid.", "")

    def figure5(self, dataset: str) -> dict:
        self.add(f"### Figure 5: HR@K and NDCG@K, K = 1..10, F = 8 ({dataset})", "")
        curves, rows = {}, []
        for name in NCF_ORDER + BASELINE_ORDER:
            if name in NCF_ORDER:
                runs = self.cells.ncf_runs(dataset, name, 8,
                                           "pretrained" if name == "NeuMF" else "from scratch")
            else:
                best = self.cells.best_baseline(dataset, name, 8 if name in ("BPR", "eALS") else None)
                runs = [best] if best else []
            if not runs or "topk" not in runs[0]["best"]:
                continue
            hr = [np.mean(metric(runs, "hr", k)) for k in range(1, 11)]
            ndcg = [np.mean(metric(runs, "ndcg", k)) for k in range(1, 11)]
            curves[name] = (hr, ndcg)
            rows.append([name, "HR", *(f"{v:.3f}" for v in hr)])
            rows.append([name, "NDCG", *(f"{v:.3f}" for v in ndcg)])
        self.table(f"fig5_{dataset}", ["model", "metric", *(f"K={k}" for k in range(1, 11))], rows)
        return curves

    def tables34(self, dataset: str) -> None:
        for i, (key, number) in enumerate((("hr", 3), ("ndcg", 4))):
            self.add(f"### Table {number}: {key.upper()}@10 of MLP with 0-4 hidden layers "
                     f"({dataset})", "")
            rows = []
            for f in reproduce.FACTORS:
                row = [f]
                for hidden in range(5):
                    runs = self.cells.ncf_runs(dataset, "MLP", f, hidden=hidden)
                    ref = self.paper.get((dataset, f"MLP-{hidden}", f, "from scratch"))
                    ref = ref[i] if ref else None
                    ours = metric(runs, key)
                    self.note_difference(f"Table {number}, {dataset}, MLP-{hidden}, F = {f}",
                                         ours, ref)
                    row.append(f"{mean_sd(ours)} vs {ref:.3f}" if ref is not None else mean_sd(ours))
                rows.append(row)
            self.table(f"table{number}_{dataset}", ["F", *(f"MLP-{h} ours vs paper"
                                                          for h in range(5))], rows)
        self.add("MLP-X: X hidden layers halving down to F (`[2^X F, ..., 2F, F]`, the first "
                 "entry the concatenated embedding size); MLP-0 has embeddings of F/2 each "
                 "feeding the prediction layer, MLP-3 is the `[8F,4F,2F,F]` tower of Table 2.", "")

    def figure6(self, dataset: str) -> dict:
        self.add(f"### Figure 6: training loss, HR@10 and NDCG@10 per iteration, F = 8 "
                 f"({dataset}, seed 0)", "")
        curves, rows = {}, []
        for name, setting in (("GMF", "from scratch"), ("MLP", "from scratch"),
                              ("NeuMF", "from scratch"), ("NeuMF", "pretrained")):
            runs = [r for r in self.cells.ncf_runs(dataset, name, 8, setting) if r["seed"] == 0]
            if not runs:
                continue
            epochs = runs[0]["epochs"]
            label = name if setting == "from scratch" else f"{name} (pretrained)"
            curves[label] = ([e["loss"] for e in epochs], [e["hr"] for e in epochs],
                             [e["ndcg"] for e in epochs], runs[0]["init"])
            for e in epochs:
                rows.append([label, e["epoch"], f"{e['loss']:.4f}",
                             f"{e['hr']:.4f}" if e["hr"] is not None else "–",
                             f"{e['ndcg']:.4f}" if e["ndcg"] is not None else "–"])
        self.tables[f"fig6_{dataset}"] = [["model", "iteration", "loss", "HR@10", "NDCG@10"], *rows]
        if curves:
            self.add(f"![Figure 6](plots/fig6_{dataset}.png)", "",
                     "Per-iteration values: `tables/fig6_" + dataset + ".csv`. " + "; ".join(
                         f"{label}: loss {c[0][0]:.4f} → {c[0][-1]:.4f}, HR {c[1][-1]:.4f} at the "
                         f"last iteration" for label, c in curves.items()), "")
        else:
            self.add("No records yet.", "")
        return curves

    def figure7(self, dataset: str) -> dict:
        self.add(f"### Figure 7: HR@10 and NDCG@10 against negatives per positive, F = 16 "
                 f"({dataset})", "")
        series, rows = collections.defaultdict(dict), []
        for neg in range(1, 11):
            row = [neg]
            for name in NCF_ORDER:
                setting = "pretrained" if name == "NeuMF" else "from scratch"
                runs = self.cells.ncf_runs(dataset, name, 16, setting, neg=neg)
                if runs:
                    series[name][neg] = (np.mean(metric(runs, "hr")), np.mean(metric(runs, "ndcg")))
                row.append(f"{series[name][neg][0]:.4f} / {series[name][neg][1]:.4f}"
                           if runs else "–")
            rows.append(row)
        bpr = self.cells.best_baseline(dataset, "BPR", 16)
        self.table(f"fig7_{dataset}", ["negatives", *(f"{n} HR / NDCG" for n in NCF_ORDER)], rows)
        if bpr:
            self.add(f"BPR (F = 16, reference line): HR@10 {bpr['best']['hr']:.4f}, NDCG@10 "
                     f"{bpr['best']['ndcg']:.4f}.", "")
            series["BPR"] = {n: (bpr["best"]["hr"], bpr["best"]["ndcg"]) for n in range(1, 11)}
        return series


GOAL = {"ml-1m": (0.731, 0.452), "pinterest-20": (0.8895, 0.5794)}
"""The best published validation-selected numbers on these files (issue goal)."""


def beyond(rep: "Report", records: list[dict], dataset: str) -> None:
    """Validation-selected models: test at the picked point, full ranking, the gap."""
    rep.add(f"### Beyond the paper: selection on validation only ({dataset})", "",
            "Selection uses a validation set only: each user's latest training interaction "
            "with 99 sampled negatives, held out of the training file. NCF models train "
            "without it and are tested at the epoch best on it (3 seeds). Baselines: every "
            "point of their grid (`ncf_tf/results/reproduce.py`) is fitted without it (seed 0), the "
            "point best on it is refitted on the whole training file and tested. *Test-picked* "
            "is what the authors' protocol would report for the same NCF runs (best epoch on "
            "test); *optimism* is its excess. Full ranking ranks the test item against every "
            "item the user has not trained on.", "")
    rows, summary = [], []
    ncf = collections.defaultdict(list)
    for r in records:
        if (r["dataset"] == dataset and r["kind"] == "train" and r.get("selection") == "validation"
                and not r.get("fast_mode")):
            ncf[f"{r['model']}-{factors_of(r)}"].append(r)
    groups = dict(ncf)
    validation_hr = {label: [r["best_validation"]["hr"] for r in runs]
                     for label, runs in ncf.items()}
    for name in reproduce.TUNING_GRID:
        runs = [r for r in records if r["dataset"] == dataset and r["kind"] == "baseline"
                and r["model"] == name and r.get("selection") == "validation"]
        seed0 = [r for r in runs if r["seed"] == 0]
        if not seed0:
            continue
        best = max(seed0, key=lambda r: r["best_validation"]["hr"])
        refits = [r for r in records if r["dataset"] == dataset and r["kind"] == "baseline"
                  and r["model"] == name and r.get("selection") == "none"
                  and r["params"] == best["params"] and r.get("full_ranking")]
        label = f"{name} ({', '.join(f'{k}={v}' for k, v in sorted(best['params'].items()))})"
        if len(seed0) < len(reproduce.TUNING_GRID[name]):
            label += f" [grid {len(seed0)}/{len(reproduce.TUNING_GRID[name])} so far]"
        validation_hr[label] = best["best_validation"]["hr"]
        groups[label] = refits
    for label, runs in groups.items():
        if not runs:
            rows.append([label, f"{validation_hr[label]:.4f}", "(refit not yet run)",
                         *["–"] * 5])
            continue
        hr, ndcg = metric(runs, "hr"), metric(runs, "ndcg")
        picked = [r["test_picked"]["hr"] for r in runs if r.get("test_picked")]
        full = [r["full_ranking"] for r in runs if r.get("full_ranking")]
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
    goal = GOAL.get(dataset)
    if summary and goal:
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
                    "itself this noisy; each 128-factor iALS point costs 1 to 5 minutes here.",
                    "")


def epoch_s(record: dict) -> float:
    """Median seconds of sampling + training per epoch of a run record."""
    return float(np.median([e["sample_s"] + e["train_s"] for e in record["epochs"]]))


def fast_mode(rep: "Report", records: list[dict], dataset: str) -> None:
    """Fast-mode NeuMF-8 runs beside the faithful ones: speed and HR/NDCG."""
    fast = collections.defaultdict(list)
    for r in records:
        if (r["dataset"] == dataset and r["kind"] == "train" and r.get("fast_mode")
                and r["model"] == "NeuMF" and factors_of(r) == 8 and setting_of(r) == "from scratch"
                and r.get("selection", "test") == "test"
                and r["config"]["epochs"] == reproduce.EPOCHS):
            fast[r["_name"].rsplit("_s", 1)[0]].append(r)
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
             mean_sd(metric(faithful, "ndcg")), "–", f"{base_s:.1f}" if faithful else "–", "–"]]
    for name, runs in sorted(fast.items()):
        hr, seconds = metric(runs, "hr"), np.median([epoch_s(r) for r in runs])
        rows.append([f"`{name}`: " + "; ".join(runs[0]["fast_mode"]), mean_sd(hr),
                     mean_sd(metric(runs, "ndcg")), delta(hr, base_hr), f"{seconds:.1f}",
                     f"x{base_s / seconds:.1f}" if base_s else "–"])
    rep.table(f"fast_{dataset}", ["run", "HR@10 (n)", "NDCG@10 (n)", "ΔHR vs faithful",
                                  "s/epoch", "speed-up"], rows)


def longer_training(rep: "Report", records: list[dict], dataset: str) -> None:
    """MLP-1 and MLP-2 (F = 8) over the authors' default 100 epochs, beside
    their best within the tables' 20 epochs of the same run and the paper."""
    runs = sorted((r for r in records
                   if r["dataset"] == dataset and r["kind"] == "train" and r["model"] == "MLP"
                   and is_standard(r, reproduce.LONG_EPOCHS)),
                  key=lambda r: (hidden_of(r), r["_name"]))
    if not runs:
        return
    rep.add(f"### Longer training: MLP over {reproduce.LONG_EPOCHS} epochs ({dataset})", "",
            f"The tables run the authors' README's 20 epochs; their script's default is "
            f"{reproduce.LONG_EPOCHS}. Best epoch on test, as in the tables.", "")
    rows = []
    for r in runs:
        hidden, factors = hidden_of(r), factors_of(r)
        early = [e for e in r["epochs"][:reproduce.EPOCHS] if e["hr"] is not None]
        first = max(early, key=lambda e: e["hr"]) if early else None
        ref = rep.paper.get((dataset, f"MLP-{hidden}", factors, "from scratch"))
        rows.append([f"MLP-{hidden}, F = {factors}, seed {r['seed']}",
                     f"{first['hr']:.4f} / {first['ndcg']:.4f} ({first['epoch']})" if first else "–",
                     f"{r['best']['hr']:.4f} / {r['best']['ndcg']:.4f} ({r['best_epoch']})",
                     f"{ref[0]:.3f} / {ref[1]:.3f}" if ref else "–"])
    rep.table(f"long_{dataset}", ["run", f"best in epochs 0-{reproduce.EPOCHS - 1} (epoch)",
                                  f"best in {reproduce.LONG_EPOCHS} epochs (epoch)", "paper"], rows)


def learning_rates(rep: "Report", records: list[dict], dataset: str) -> None:
    """The cells far from the paper at the learning rates either side of the
    tables' 0.001 (``bin/reproduce --only lr``), beside the tables' own."""
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
        ref = rep.paper.get((dataset, f"MLP-{hidden}" if model == "MLP" else model, factors,
                             "from scratch"))
        row = [name]
        for lr in rates:
            found = runs(model, factors, hidden, lr)
            row.append(f"{np.mean([r['best']['hr'] for r in found]):.4f} / "
                       f"{np.mean([r['best']['ndcg'] for r in found]):.4f} ({len(found)})"
                       if found else "–")
        rows.append(row + [f"{ref[0]:.3f} / {ref[1]:.3f}" if ref else "–"])
    rep.table(f"lr_{dataset}", ["cell", *(f"lr {lr:g}" for lr in rates), "paper"], rows)


RUN_ONLY = ("epochs", "path", "model_dir", "results_dir", "run_name", "tensorboard",
            "progress", "verbose", "device")
"""Config entries that do not change an epoch's result (where files go, how
long the run is, what it prints)."""


def machine_of(record: dict) -> str:
    """"2 CPU (AMD EPYC), 1 thread, cpu": cores, model, threads the run used, device."""
    machine = record["machine"]
    words = f"{machine.get('cpu_count')} CPU"
    if machine.get("cpu_model"):
        words += f" ({machine['cpu_model']})"
    if machine.get("intra_op_threads"):
        threads = machine["intra_op_threads"]
        words += f", {threads} thread{'s' if threads != 1 else ''}"
    return f"{words}, {record.get('device', 'cpu')}"


def commit_of(record: dict) -> str:
    return str(record["git"]["commit"])


def same_seed_across_commits(rep: "Report", records: list[dict], dataset: str) -> None:
    """Runs of one configuration and seed recorded at different commits,
    compared epoch by epoch over the epochs both ran."""
    groups = collections.defaultdict(list)
    for r in records:
        if r["dataset"] == dataset and r["kind"] == "train":
            key = json.dumps([r["seed"], {k: v for k, v in r["config"].items()
                                          if k not in RUN_ONLY}], sort_keys=True)
            groups[key].append(r)
    rows = []
    for runs in groups.values():
        runs.sort(key=lambda r: r["_name"])
        for a, b in itertools.combinations(runs, 2):
            if commit_of(a) == commit_of(b):
                continue
            pairs = list(zip(a["epochs"], b["epochs"]))
            diff = {key: max((abs(x[key] - y[key]) for x, y in pairs
                              if x[key] is not None and y[key] is not None), default=0.0)
                    for key in ("loss", "hr", "ndcg")}
            rows.append([f"`{a['_name']}` ({commit_of(a)[:7]})",
                         f"`{b['_name']}` ({commit_of(b)[:7]})", len(pairs),
                         *(f"{diff[key]:.2g}" for key in ("loss", "hr", "ndcg"))])
    if not rows:
        return
    rep.add(f"### Same seed, different commits ({dataset})", "",
            "Runs of one configuration and seed recorded at different commits (e.g. before "
            "and after a speed change), compared over the epochs both ran: the largest "
            "difference of the epoch's loss, HR@10 and NDCG@10 (0: identical). A seed counts "
            "once in the tables above: its first record.", "")
    rep.table(f"same_seed_{dataset}", ["run", "run", "epochs", "max Δloss", "max ΔHR@10",
                                       "max ΔNDCG@10"], rows)


def missing_runs(records: list[dict], dataset: str,
                 runs_dir: str) -> list[tuple[str, list[reproduce.Job]]]:
    names = {r["_name"] for r in records}
    out = []
    for experiment in reproduce.EXPERIMENTS:
        if experiment in reproduce.OUTSIDE_ALL:
            continue
        jobs = [j for j in reproduce.plan(experiment, dataset, results_dir=runs_dir)
                if j.name not in names]
        out.append((experiment, jobs))
    return out


def estimated_hours(jobs: list[reproduce.Job], records: list[dict]) -> float:
    """Planned cost: the wall time of the newest recorded run of the same
    model and settings (another seed), else the job's own estimate."""
    measured = {}
    for r in sorted((r for r in records if r["kind"] == "train"), key=lambda r: r.get("started", "")):
        measured[r["_name"].rsplit("_s", 1)[0]] = r["wall_s"]
    total = sum(measured.get(job.name.rsplit("_s", 1)[0], job.estimate_s) for job in jobs)
    return total / 3600


def render(records: list[dict], paper: dict, folder: str) -> tuple[str, dict, dict]:
    cells = Cells(records)
    rep = Report(cells, paper, folder)
    rep.add("# Results (generated by `bin/reproduce --report` from `runs/*.json`; do not edit)",
            "",
            "Protocol: the authors' leave-one-out HR@10 / NDCG@10 over the test item and its 99 "
            "sampled negatives; ties count against the test item, a negative equal to the test "
            "item collapses into it; the **best epoch is picked on the test HR**, as in the "
            "authors' code (optimistic; `selection: test` in every record). Cells show ours as "
            "mean ± sd (n seeds) beside the paper's value (`published_results.csv`) and the "
            "difference Δ.", "",
            "Choices where the paper is silent (recorded in each run's `config`): 20 epochs per "
            "NCF run; batch 256; lr 0.001; 4 negatives per positive; no regularisation; towers "
            "`[8F,4F,2F,F]`; pretrained NeuMF: alpha 0.5, then vanilla SGD at lr 0.001 (paper, "
            "sec. 3.4.1; the authors' README uses Adam); NeuMF of Figures 4, 5 and 7 is the "
            "pretrained one; baseline hyper-parameters: the grids listed under Figure 4, best "
            "point on test HR.", "")
    plots = {}
    for dataset in DATASETS:
        ours = [r for r in records if r["dataset"] == dataset]
        rep.add(f"## {dataset}", "")
        if not ours:
            rep.add(f"**Not run here**: {dataset}'s training and negative files are not "
                    "available on the machines that produced these records. Where they can be "
                    "downloaded, these commands run every cell (resumable):", "", "```",
                    f"bin/download_data --dataset {dataset}")
            rep.add(*(f"bin/reproduce --only {e} --dataset {dataset}"
                      for e in reproduce.EXPERIMENTS if e not in reproduce.OUTSIDE_ALL), "```", "")
            rows = [[e, len(jobs), f"{estimated_hours(jobs, []):.0f}"]
                    for e, jobs in missing_runs(records, dataset, os.path.join(folder, "runs"))]
            rep.add("Estimated cost on a 2-core CPU (from the parameter counts; planning "
                    "figures, not measurements):", "")
            rep.table(f"missing_{dataset}", ["experiment", "runs", "hours"], rows)
            continue
        rep.table2(dataset)
        plots[f"fig4_{dataset}"] = rep.figure4(dataset)
        if plots[f"fig4_{dataset}"]:
            rep.add(f"![Figure 4](plots/fig4_{dataset}.png)", "")
        rep.grids(dataset)
        plots[f"fig5_{dataset}"] = rep.figure5(dataset)
        if plots[f"fig5_{dataset}"]:
            rep.add(f"![Figure 5](plots/fig5_{dataset}.png)", "")
        rep.tables34(dataset)
        plots[f"fig6_{dataset}"] = rep.figure6(dataset)
        plots[f"fig7_{dataset}"] = rep.figure7(dataset)
        if plots[f"fig7_{dataset}"]:
            rep.add(f"![Figure 7](plots/fig7_{dataset}.png)", "")
        beyond(rep, records, dataset)
        fast_mode(rep, records, dataset)
        longer_training(rep, records, dataset)
        learning_rates(rep, records, dataset)
        same_seed_across_commits(rep, records, dataset)
        reruns = paper.get(("re-run", dataset), [])
        if reruns:
            rep.add(f"### Published re-runs on the same files ({dataset})", "")
            rep.table(f"reruns_{dataset}", ["model", "setting", "F", "HR@10", "NDCG@10", "source"],
                      [list(row[:3]) + [f"{row[3]:.4f}", f"{row[4]:.4f}", row[5]] for row in reruns])
        rep.add(f"### Planned runs not yet recorded ({dataset})", "",
                "Estimated hours: per run, the wall time of the newest recorded run of the "
                "same model and settings (another seed), else `bin/reproduce`'s estimate from "
                "the parameter count.", "")
        rows = []
        for experiment, jobs in missing_runs(records, dataset, os.path.join(folder, "runs")):
            rows.append([experiment, len(jobs), f"{estimated_hours(jobs, records):.1f}",
                         f"`bin/reproduce --only {experiment} --dataset {dataset}`"])
        rep.table(f"missing_{dataset}", ["experiment", "missing runs", "estimated hours",
                                         "command"], rows)
    rep.add("## Cells more than 0.01 from the paper", "")
    rep.add(*([f"- {line}" for line in rep.differences] or ["- none"]))
    rep.add("", "## Runs", "",
            "Optimizer `Adam` (records before `FusedAdam`): Keras 3's Adam, whose second moment "
            "sums the squares of an embedding row's per-occurrence gradients when the row occurs "
            "more than once in a batch, where Keras 1 squares their sum; `FusedAdam` computes "
            "Keras 1's update (see `ncf_tf/train/optimizers.py`).", "")
    superseded = glob.glob(os.path.join(folder, "runs", "superseded", "*.json"))
    if superseded:
        rep.add(f"Not read: {len(superseded)} records in `runs/superseded/`, pretrained NeuMF "
                "runs that replayed the negatives their GMF and MLP were trained on (its "
                "README says why); their cells are run again.", "")
    rep.add("| record | model | seed | optimizer | mode | wall | machine | commit | backend |",
            "|---|---|---|---|---|---|---|---|---|")
    for r in sorted(records, key=lambda r: r["_file"]):
        machine = machine_of(r)
        optimizer = r.get("optimizer") or {"adam": "Adam", "sgd": "SGD"}.get(
            r.get("learner"), r.get("learner", "–"))
        mode = r.get("mode", "faithful") if r["kind"] == "train" else "–"
        rep.add(f"| `{r['_file']}` | {r['model']} | {r['seed']} | {optimizer} | {mode} | "
                f"{r['wall_s'] / 60:.1f} min | "
                f"{machine} | {commit_of(r)[:10]}{' (dirty)' if r['git']['dirty'] else ''} | "
                f"keras {r['versions']['keras']} / {r['versions']['backend']} |")
    rep.add("")
    return "\n".join(rep.lines), rep.tables, plots


def draw(plots: dict, folder: str) -> list[str]:
    """Writes the PNG plots; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    written = []
    for name, data in plots.items():
        if not data:
            continue
        fig, axes = plt.subplots(1, 3 if name.startswith("fig6") else 2, figsize=(11, 3.6))
        if name.startswith("fig6"):
            for label, (loss, hr, ndcg, init) in data.items():
                x = range(len(loss))
                axes[0].plot(x, loss, label=label)
                axes[1].plot(x, hr, label=label)
                axes[2].plot(x, ndcg, label=label)
            for ax, title in zip(axes, ("training loss", "HR@10", "NDCG@10")):
                ax.set_xlabel("iteration")
                ax.set_title(title)
        elif name.startswith("fig5"):
            for label, (hr, ndcg) in data.items():
                axes[0].plot(range(1, 11), hr, marker="o", label=label)
                axes[1].plot(range(1, 11), ndcg, marker="o", label=label)
            for ax, title in zip(axes, ("HR@K", "NDCG@K")):
                ax.set_xlabel("K")
                ax.set_title(title)
        else:
            for label, points in data.items():
                xs = sorted(points)
                style = "--" if label in BASELINE_ORDER else "-"
                axes[0].plot(xs, [points[x][0] for x in xs], style, marker="o", label=label)
                axes[1].plot(xs, [points[x][1] for x in xs], style, marker="o", label=label)
            for ax, title in zip(axes, ("HR@10", "NDCG@10")):
                ax.set_xlabel("predictive factors" if name.startswith("fig4")
                              else "negatives per positive")
                ax.set_title(title)
                if name.startswith("fig4"):
                    ax.set_xscale("log", base=2)
        axes[0].legend(fontsize=7)
        fig.suptitle(name.replace("_", " "))
        fig.tight_layout()
        path = os.path.join(folder, f"{name}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def write(folder: str) -> str:
    """Regenerates ``<folder>/README.md``, ``tables/*.csv`` and ``plots/*.png``."""
    records = load_records(os.path.join(folder, "runs"))
    reference = os.path.join(folder, "published_results.csv")
    if not os.path.exists(reference):   # a results folder of one's own: the project's copy
        reference = os.path.join(HERE, "results", "published_results.csv")
    if not os.path.exists(reference):
        raise ValueError(f"{reference}: file not found; the paper's numbers are needed "
                         "to compare with")
    text, tables, plots = render(records, published(reference), folder)
    os.makedirs(os.path.join(folder, "tables"), exist_ok=True)
    for name, rows in tables.items():
        with open(os.path.join(folder, "tables", f"{name}.csv"), "w", newline="") as f:
            csv.writer(f).writerows(rows)
    draw(plots, os.path.join(folder, "plots"))
    path = os.path.join(folder, "README.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}, {len(tables)} tables, plots in {os.path.join(folder, 'plots')}")
    return path


def main(argv: list[str]) -> int:
    write(argv[1] if len(argv) > 1 else os.path.join(HERE, "results"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
