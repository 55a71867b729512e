"""results/: README.md, CSV tables and PNG plots, generated from run records alone
(the paper's experiments here, the sections beyond it in :mod:`~ncf_tf.results.beyond`)."""

from __future__ import annotations

import collections
import csv
import glob
import os

import numpy as np

from ncf_tf.core.files import atomic_path
from ncf_tf.core.records import RunRecord
from ncf_tf.results import reproduce
from ncf_tf.results.beyond import (beyond, commit_of, fast_mode, fold_in, learning_rates,
                                   longer_training, machine_of, mlperf,
                                   same_seed_across_commits)
from ncf_tf.results.cells import (BASELINE_ORDER, DATASETS, DIFF, HERE, NCF_ORDER, Cells, delta,
                                  factors_of, grid_edges, is_pretrained_adam, load_records,
                                  mean_sd, metric, pair, paper_of, published)


class Report:
    def __init__(self, cells: Cells, paper: dict, folder: str):
        self.cells, self.paper, self.folder = cells, paper, folder
        self.lines: list[str] = []
        self.tables: dict[str, list[list]] = {}
        self.differences: list[str] = []
        self.plots: dict[str, dict] = {}

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, name: str, header: list[str], rows: list[list]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        self.add(*("| " + " | ".join(str(c) for c in row) + " |" for row in rows), "")
        self.tables[name] = [header, *rows]

    def ref(self, dataset: str, model: str, factors: int, setting: str, i: int,
            hidden: int = 3) -> float | None:
        """The paper's HR@10 (``i`` 0) or NDCG@10 (1) of a cell, or None."""
        found = paper_of(self.paper, dataset, model, factors, setting, hidden)
        return found[i] if found else None

    def image(self, number: int, dataset: str, data: dict) -> dict:
        """Keeps Figure ``number``'s ``data`` for its PNG, shown where it has data."""
        self.plots[f"fig{number}_{dataset}"] = data
        if data:
            self.add(f"![Figure {number}](plots/fig{number}_{dataset}.png)", "")
        return data

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
                    ref = self.ref(dataset, "NeuMF", f, setting, i)
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
                self.note_difference(f"Table 2, {dataset}, NeuMF-8 pretrained from the authors' "
                                     f"files, {key.upper()}@10", metric(authors, key),
                                     self.ref(dataset, "NeuMF", 8, "pretrained", i))
            self.add("NeuMF-8 pretrained from the authors' published GMF/MLP files: HR@10 "
                     f"{mean_sd(metric(authors, 'hr'))}, NDCG@10 "
                     f"{mean_sd(metric(authors, 'ndcg'))}.", "")
        self.after_pretraining(dataset)

    def after_pretraining(self, dataset: str) -> None:
        """What training does to the blended model: Table 2's SGD runs, and Adam's."""
        sgd = [r for f in reproduce.FACTORS
               for r in self.cells.ncf_runs(dataset, "NeuMF", f, "pretrained")]
        if sgd:
            at_blend = sum(r.best_epoch == -1 for r in sgd)
            change = [r.epochs[-1]["hr"] - r.init["hr"] for r in sgd
                      if r.epochs and r.epochs[-1]["hr"] is not None]
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
            row = [f]
            for i, key in enumerate(("hr", "ndcg")):
                ref = self.ref(dataset, "NeuMF", f, "pretrained", i)
                row += [mean_sd(metric(runs, key)), mean_sd(metric(sgd_f, key)),
                        f"{ref:.3f}" if ref is not None else "–", delta(metric(runs, key), ref)]
            row.append(", ".join(str(r.best_epoch) for r in runs))
            rows.append(row)
        self.add("Pretrained NeuMF trained on with Adam (lr 0.001, fresh moments), as the "
                 "authors' README runs it, beside Table 2's vanilla SGD "
                 "(`bin/reproduce --only pretrain_adam`):", "")
        self.table(f"pretrain_adam_{dataset}", [
            "F", "HR@10 Adam", "HR@10 SGD", "HR@10 paper", "Δ Adam", "NDCG@10 Adam",
            "NDCG@10 SGD", "NDCG@10 paper", "Δ Adam", "best epoch (Adam)"], rows)

    def points(self, name: str, first: str, xs, models, runs_of) -> dict:
        """A table of HR / NDCG means per x and model; returns model -> x -> (HR, NDCG)."""
        series, rows = collections.defaultdict(dict), []
        for x in xs:
            row = [x]
            for model in models:
                runs = runs_of(model, x)
                if runs:
                    series[model][x] = (np.mean(metric(runs, "hr")),
                                        np.mean(metric(runs, "ndcg")))
                row.append(pair(*series[model][x]) if runs else "–")
            rows.append(row)
        self.table(name, [first, *(f"{m} HR / NDCG" for m in models)], rows)
        return series

    def figure4(self, dataset: str) -> dict:
        self.add(f"### Figure 4: HR@10 and NDCG@10 against predictive factors ({dataset})", "")
        series = self.points(f"fig4_{dataset}", "F", reproduce.FACTORS, NCF_ORDER + BASELINE_ORDER,
                             lambda name, f: self.cells.figure_runs(dataset, name, f))
        self.add("NeuMF here is the pretrained one (the paper's NeuMF); ItemKNN, BPR and eALS "
                 "show the best point of their grid on test HR (grids below). The paper pins "
                 "only NeuMF (Table 2) and MLP (Table 3) numerically; the re-runs of the "
                 "baselines on the same files are listed under *Published re-runs*.", "")
        return self.image(4, dataset, series)

    def grids(self, dataset: str) -> None:
        rows, edges = [], []
        for name in BASELINE_ORDER:
            for f in (None, *reproduce.FACTORS):
                grid = self.cells.baseline_grid(dataset, name, f)
                for r in sorted(grid, key=lambda r: sorted(r.params.items())):
                    rows.append([name, ", ".join(f"{k}={v}" for k, v in sorted(r.params.items()))
                                 or "–", f"{r.best['hr']:.4f}", f"{r.best['ndcg']:.4f}",
                                 f"{r.fit_s:.1f}"])
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
            runs = self.cells.figure_runs(dataset, name, 8)
            if not runs or "topk" not in runs[0].best:
                continue
            curves[name] = tuple([np.mean(metric(runs, key, k)) for k in range(1, 11)]
                                 for key in ("hr", "ndcg"))
            rows += [[name, label, *(f"{v:.3f}" for v in values)]
                     for label, values in zip(("HR", "NDCG"), curves[name])]
        self.table(f"fig5_{dataset}", ["model", "metric", *(f"K={k}" for k in range(1, 11))], rows)
        return self.image(5, dataset, curves)

    def tables34(self, dataset: str) -> None:
        for i, (key, number) in enumerate((("hr", 3), ("ndcg", 4))):
            self.add(f"### Table {number}: {key.upper()}@10 of MLP with 0-4 hidden layers "
                     f"({dataset})", "")
            rows = []
            for f in reproduce.FACTORS:
                row = [f]
                for hidden in range(5):
                    runs = self.cells.ncf_runs(dataset, "MLP", f, hidden=hidden)
                    ref = self.ref(dataset, "MLP", f, "from scratch", i, hidden)
                    ours = metric(runs, key)
                    self.note_difference(f"Table {number}, {dataset}, MLP-{hidden}, F = {f}",
                                         ours, ref)
                    row.append(mean_sd(ours) + (f" vs {ref:.3f}" if ref is not None else ""))
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
            runs = [r for r in self.cells.ncf_runs(dataset, name, 8, setting) if r.seed == 0]
            if not runs:
                continue
            epochs = runs[0].epochs
            label = name if setting == "from scratch" else f"{name} ({setting})"
            curves[label] = (*([e[k] for e in epochs] for k in ("loss", "hr", "ndcg")),
                             runs[0].init)
            rows += [[label, e["epoch"], f"{e['loss']:.4f}",
                      *(f"{e[k]:.4f}" if e[k] is not None else "–" for k in ("hr", "ndcg"))]
                     for e in epochs]
        self.tables[f"fig6_{dataset}"] = [["model", "iteration", "loss", "HR@10", "NDCG@10"], *rows]
        if self.image(6, dataset, curves):
            self.add(f"Per-iteration values: `tables/fig6_{dataset}.csv`. " + "; ".join(
                f"{label}: loss {c[0][0]:.4f} → {c[0][-1]:.4f}, HR {c[1][-1]:.4f} at the last "
                "iteration" for label, c in curves.items()), "")
        else:
            self.add("No records yet.", "")
        return curves

    def figure7(self, dataset: str) -> dict:
        self.add(f"### Figure 7: HR@10 and NDCG@10 against negatives per positive, F = 16 "
                 f"({dataset})", "")
        series = self.points(f"fig7_{dataset}", "negatives", range(1, 11), NCF_ORDER,
                             lambda name, n: self.cells.figure_runs(dataset, name, 16, neg=n))
        if bpr := self.cells.best_baseline(dataset, "BPR", 16):
            self.add(f"BPR (F = 16, reference line): HR@10 {bpr.best['hr']:.4f}, NDCG@10 "
                     f"{bpr.best['ndcg']:.4f}.", "")
            series["BPR"] = {n: (bpr.best["hr"], bpr.best["ndcg"]) for n in range(1, 11)}
        return self.image(7, dataset, series)


def estimated_hours(jobs: list[reproduce.Job], records: list[RunRecord]) -> float:
    """Planned cost: the wall time of the newest recorded run of the same
    model and settings (another seed), else the job's own estimate."""
    measured = {r.name.rsplit("_s", 1)[0]: r.wall_s for r in sorted(
        (r for r in records if r.kind == "train"), key=lambda r: r.started or "")}
    return sum(measured.get(job.name.rsplit("_s", 1)[0], job.estimate_s) for job in jobs) / 3600


def render(records: list[RunRecord], paper: dict, folder: str) -> tuple[str, dict, dict]:
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
    recorded, runs_dir = {r.name for r in records}, os.path.join(folder, "runs")
    for dataset in DATASETS:
        missing = [(e, [j for j in reproduce.plan(e, dataset, results_dir=runs_dir)
                        if j.name not in recorded])
                   for e in reproduce.EXPERIMENTS if e not in reproduce.OUTSIDE_ALL]
        rep.add(f"## {dataset}", "")
        if not any(r.dataset == dataset for r in records):
            rep.add(f"**Not run here**: {dataset}'s training and negative files are not "
                    "available on the machines that produced these records. Where they can be "
                    "downloaded, these commands run every cell (resumable):", "", "```",
                    f"bin/download_data --dataset {dataset}")
            rep.add(*(f"bin/reproduce --only {e} --dataset {dataset}" for e, _ in missing),
                    "```", "")
            rows = [[e, len(jobs), f"{estimated_hours(jobs, []):.0f}"] for e, jobs in missing]
            rep.add("Estimated cost on a 2-core CPU (a step's cost from the parameter count "
                    "for dense updates, from the tower's size for deferred Adam, as "
                    "results/benchmark.txt and results/benchmark_tables.txt measure them; "
                    "planning figures, not measurements):", "")
            rep.table(f"missing_{dataset}", ["experiment", "runs", "hours"], rows)
            continue
        for table in (rep.table2, rep.figure4, rep.grids, rep.figure5, rep.tables34, rep.figure6,
                      rep.figure7):
            table(dataset)
        for section in (beyond, fast_mode, longer_training, learning_rates,
                        same_seed_across_commits):
            section(rep, records, dataset)
        if reruns := paper.get(("re-run", dataset)):
            rep.add(f"### Published re-runs on the same files ({dataset})", "")
            rep.table(f"reruns_{dataset}", ["model", "setting", "F", "HR@10", "NDCG@10", "source"],
                      [[*row[:3], f"{row[3]:.4f}", f"{row[4]:.4f}", row[5]] for row in reruns])
        rep.add(f"### Planned runs not yet recorded ({dataset})", "",
                "Estimated hours: per run, the wall time of the newest recorded run of the "
                "same model and settings (another seed), else `bin/reproduce`'s estimate (from "
                "the parameter count for dense updates, from the tower's size for deferred "
                "Adam).", "")
        rows = [[e, len(jobs), f"{estimated_hours(jobs, records):.1f}",
                 f"`bin/reproduce --only {e} --dataset {dataset}`"] for e, jobs in missing]
        rep.table(f"missing_{dataset}", ["experiment", "missing runs", "estimated hours",
                                         "command"], rows)
    mlperf(rep, records)
    fold_in(rep, folder)
    rep.add("## Cells more than 0.01 from the paper", "")
    rep.add(*([f"- {line}" for line in rep.differences] or ["- none"]))
    rep.add("", "## Runs", "",
            "Optimizer `Adam` (records before `FusedAdam`): Keras 3's Adam, whose second moment "
            "sums the squares of an embedding row's per-occurrence gradients when the row occurs "
            "more than once in a batch, where Keras 1 squares their sum; `FusedAdam` computes "
            "Keras 1's update (see `ncf_tf/train/optimizers.py`).", "")
    if superseded := glob.glob(os.path.join(folder, "runs", "superseded", "*.json")):
        rep.add(f"Not read: {len(superseded)} records in `runs/superseded/`, pretrained NeuMF "
                "runs that replayed the negatives their GMF and MLP were trained on (its "
                "README says why); their cells are run again.", "")
    rep.add("| record | model | seed | optimizer | mode | wall | machine | commit | backend |",
            "|---|---|---|---|---|---|---|---|---|")
    for r in sorted(records, key=lambda r: r.path):
        optimizer = r.optimizer or {"adam": "Adam", "sgd": "SGD"}.get(r.learner, r.learner or "–")
        mode = (r.mode or "faithful") if r.kind == "train" else "–"
        rep.add(f"| `{os.path.relpath(r.path, folder)}` | {r.model} | {r.seed} | {optimizer} | "
                f"{mode} | {r.wall_s / 60:.1f} min | "
                f"{machine_of(r)} | {commit_of(r)[:10]}{' (dirty)' if r.git['dirty'] else ''} | "
                f"keras {r.versions['keras']} / {r.versions['backend']} |")
    rep.add("")
    return "\n".join(rep.lines), rep.tables, rep.plots


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
                for ax, values in zip(axes, (loss, hr, ndcg)):
                    ax.plot(range(len(loss)), values, label=label)
            xlabel, titles = "iteration", ("training loss", "HR@10", "NDCG@10")
        elif name.startswith("fig5"):
            for label, curves in data.items():
                for ax, values in zip(axes, curves):
                    ax.plot(range(1, 11), values, marker="o", label=label)
            xlabel, titles = "K", ("HR@K", "NDCG@K")
        else:
            for label, points in data.items():
                xs, style = sorted(points), "--" if label in BASELINE_ORDER else "-"
                for i, ax in enumerate(axes):
                    ax.plot(xs, [points[x][i] for x in xs], style, marker="o", label=label)
            xlabel = "predictive factors" if name.startswith("fig4") else "negatives per positive"
            titles = ("HR@10", "NDCG@10")
        for ax, title in zip(axes, titles):
            ax.set(xlabel=xlabel, title=title)
            if name.startswith("fig4"):
                ax.set_xscale("log", base=2)
        axes[0].legend(fontsize=7)
        fig.suptitle(name.replace("_", " "))
        fig.tight_layout()
        written.append(os.path.join(folder, f"{name}.png"))
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    return written


HEADLINE_MARKERS = ("<!-- headline:start -->", "<!-- headline:end -->")
HEADLINE_ROWS = (("NeuMF", "pretrained", "NeuMF (pretrained)"),
                 ("NeuMF", "from scratch", "NeuMF (from scratch)"),
                 ("GMF", "from scratch", "GMF"), ("MLP", "from scratch", "MLP-3"),
                 ("ItemPop", None, "ItemPop"), ("ItemKNN", None, "ItemKNN"),
                 ("BPR", None, "BPR"), ("eALS", None, "eALS"))
"""(model, setting, label): Table 2's two NeuMF and the other models of Figure 4."""


def headline(records: list[RunRecord], paper: dict, dataset: str = "ml-1m") -> str:
    """The README's headline: HR@10 and NDCG@10 of :data:`HEADLINE_ROWS` per F,
    ours "vs" the paper's where it gives one (Table 2; MLP-3 of Tables 3-4)."""
    cells = Cells(records)
    lines = []
    for i, key in enumerate(("hr", "ndcg")):
        lines += [f"| {dataset}, {key.upper()}@10 | "
                  + " | ".join(f"F = {f}" for f in reproduce.FACTORS) + " |",
                  "|---|" + "---|" * len(reproduce.FACTORS)]
        for model, setting, label in HEADLINE_ROWS:
            row = [label]
            for f in reproduce.FACTORS:
                runs = (cells.ncf_runs(dataset, model, f, setting) if setting
                        else cells.figure_runs(dataset, model, f))   # a baseline: its grid's best
                ref = paper_of(paper, dataset, model, f, setting)
                row.append(mean_sd(metric(runs, key)) + (f" vs {ref[i]:.3f}" if ref else ""))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines[:-1])


def write_headline(readme: str, text: str) -> bool:
    """Puts ``text`` between ``readme``'s :data:`HEADLINE_MARKERS`; False where missing."""
    if not os.path.exists(readme):
        return False
    with open(readme) as f:
        old = f.read()
    start, end = HEADLINE_MARKERS
    if old.count(start) != 1 or old.count(end) != 1 or old.index(start) > old.index(end):
        return False
    new = old[:old.index(start) + len(start)] + "\n" + text + "\n" + old[old.index(end):]
    if new != old:
        with atomic_path(readme) as tmp, open(tmp, "w") as f:
            f.write(new)
    return True


def write(folder: str) -> str:
    """Regenerates ``<folder>/README.md``, ``tables/*.csv``, ``plots/*.png`` and the
    headline table of the README beside ``folder``, where it has one."""
    records = load_records(os.path.join(folder, "runs"))
    reference = os.path.join(folder, "published_results.csv")
    if not os.path.exists(reference):   # a results folder of one's own: the project's copy
        reference = os.path.join(HERE, "results", "published_results.csv")
    if not os.path.exists(reference):
        raise ValueError(f"{reference}: file not found; the paper's numbers are needed "
                         "to compare with")
    paper = published(reference)
    text, tables, plots = render(records, paper, folder)
    os.makedirs(os.path.join(folder, "tables"), exist_ok=True)
    for name, rows in tables.items():
        with open(os.path.join(folder, "tables", f"{name}.csv"), "w", newline="") as f:
            csv.writer(f).writerows(rows)
    draw(plots, os.path.join(folder, "plots"))
    path = os.path.join(folder, "README.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}, {len(tables)} tables, plots in {os.path.join(folder, 'plots')}")
    readme = os.path.join(os.path.dirname(os.path.abspath(folder)), "README.md")
    if write_headline(readme, headline(records, paper)):
        print(f"wrote the headline table of {os.path.relpath(readme)}")
    return path
