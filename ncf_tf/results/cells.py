"""Run records sorted into the cells of the paper's tables, and how a cell is shown."""

from __future__ import annotations

import collections
import dataclasses
import csv
import glob
import os

import numpy as np

from ncf_tf.core.records import RunRecord
from ncf_tf.results import reproduce
from ncf_tf.train.config import TrainConfig

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATASETS = tuple(reproduce.DATASETS)
BASELINE_ORDER = ("Random", "ItemPop", "ItemKNN", "BPR", "eALS")
NCF_ORDER = ("GMF", "MLP", "NeuMF")
DIFF = 0.01
"""Cells further than this from the paper are listed."""


def load_records(folder: str) -> list[RunRecord]:
    """The finished NCF and baseline records of ``folder`` (training runs of 0 epochs left out)."""
    found = [RunRecord.load(path) for path in sorted(glob.glob(os.path.join(folder, "*.json")))]
    return [r for r in found if r.status == "finished" and r.kind in ("train", "baseline")
            and not (r.kind == "train" and r.config["epochs"] == 0)]


def factors_of(record: RunRecord) -> int | None:
    config = record.config
    if record.kind == "baseline":
        return config.get("num_factors")
    return config["num_factors"] if record.model == "GMF" else config["layers"][-1]


def setting_of(record: RunRecord) -> str:
    config = record.config
    if record.model != "NeuMF" or not (config.get("pretrain") or config.get("mf_pretrain")):
        return "from scratch"
    if "authors_pretrain" in config.get("mf_pretrain", ""):
        return "pretrained (authors' GMF/MLP files)"
    return "pretrained"


def is_standard(record: RunRecord, epochs: int = reproduce.EPOCHS,
                lr: float | None = TrainConfig.lr) -> bool:
    """An NCF run with the planned settings (``epochs``, ``lr``, batch, no
    regularisation); ``lr`` None: at any learning rate."""
    config = record.config
    return (record.selection == "test" and config["epochs"] == epochs
            and config["batch_size"] == 256
            and lr in (None, config["lr"]) and not config.get("learner")
            and not any(config.get("reg_layers", [])) and not any(config.get("regs", []))
            and config.get("alpha", 0.5) == 0.5 and not record.fast_mode
            and not record.beyond_authors)


def is_pretrained_adam(record: RunRecord, dataset: str) -> bool:
    """A Table 2 pretrained NeuMF run trained on with Adam (``pretrain_adam``)."""
    return (record.kind != "baseline" and record.dataset == dataset
            and record.model == "NeuMF" and setting_of(record) == "pretrained"
            and record.config.get("learner") == "adam" and record.config["num_neg"] == 4
            and hidden_of(record) == 3
            and is_standard(dataclasses.replace(record, config={**record.config, "learner": None})))


def hidden_of(record: RunRecord) -> int:
    return len(record.config["layers"]) - 1


def cell_key(dataset, model, factors, setting, neg, hidden, lr) -> tuple:
    """An NCF cell: (dataset, model, F, setting, num_neg, hidden layers (0 for GMF), lr)."""
    return (dataset, model, factors, setting, neg, 0 if model == "GMF" else hidden, lr)


def cell_of(record: RunRecord) -> tuple:
    """An NCF run's cell (:func:`cell_key`)."""
    return cell_key(record.dataset, record.model, factors_of(record), setting_of(record),
                    record.config["num_neg"], hidden_of(record), record.config["lr"])


def published(path: str) -> dict:
    """(dataset, model, F, setting) -> (hr, ndcg) of the paper; other rows under
    ("re-run", dataset, model) -> (hr, ndcg, source)."""
    table = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            hr, ndcg = float(row["hr@10"]), float(row["ndcg@10"])
            if row["source"].startswith("paper") and row["factors"]:
                key = (row["dataset"], row["model"], int(row["factors"]), row["setting"])
                table[key] = (hr, ndcg)
            else:
                table.setdefault(("re-run", row["dataset"]), []).append(
                    (row["model"], row["setting"], row["factors"], hr, ndcg, row["source"]))
    return table


def paper_of(paper: dict, dataset: str, model: str, factors: int,
             setting: str = "from scratch", hidden: int = 3) -> tuple[float, float] | None:
    """The paper's (HR@10, NDCG@10) of a cell (an MLP: MLP-``hidden``), or None."""
    return paper.get((dataset, f"MLP-{hidden}" if model == "MLP" else model, factors, setting))


def mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f} (1)"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} ({len(values)})"


def pair(hr: float, ndcg: float, digits: int = 4) -> str:
    """``"HR / NDCG"``, as the tables write a pair."""
    return f"{hr:.{digits}f} / {ndcg:.{digits}f}"


def delta(values: list[float], ref: float | None) -> str:
    return f"{np.mean(values) - ref:+.3f}" if values and ref is not None else "–"


class Cells:
    """Records indexed for the experiments' tables. A seed counts once per cell:
    its first record (the others appear under "Same seed, different commits or Adam")."""

    def __init__(self, records: list[RunRecord]):
        self.records = records
        self.ncf = collections.defaultdict(list)  # cell_key -> runs
        self.baselines = collections.defaultdict(list)  # (ds, name, F)
        for r in sorted(records, key=lambda r: str(r.started or "")):
            if r.kind == "baseline":
                self.baselines[(r.dataset, r.model, factors_of(r))].append(r)
            elif is_standard(r, lr=None):
                runs = self.ncf[cell_of(r)]
                if all(other.seed != r.seed for other in runs):
                    runs.append(r)

    def ncf_runs(self, dataset, model, factors, setting="from scratch", neg=4, hidden=3,
                 lr=TrainConfig.lr):
        return self.ncf.get(cell_key(dataset, model, factors, setting, neg, hidden, lr), [])

    def figure_runs(self, dataset, name, factors, neg=4) -> list[RunRecord]:
        """The runs of ``name`` in Figures 4, 5 and 7 and the headline: NeuMF
        pretrained, GMF and MLP from scratch, a baseline's best grid point (per
        ``factors`` for BPR and eALS only)."""
        if name in NCF_ORDER:
            setting = "pretrained" if name == "NeuMF" else "from scratch"
            return self.ncf_runs(dataset, name, factors, setting, neg=neg)
        best = self.best_baseline(dataset, name, factors if name in ("BPR", "eALS") else None)
        return [best] if best else []

    def best_baseline(self, dataset, name, factors=None) -> RunRecord | None:
        return best_on_test(self.baseline_grid(dataset, name, factors))

    def baseline_grid(self, dataset, name, factors=None) -> list[RunRecord]:
        return self.baselines.get((dataset, name, factors), [])


def best_on_test(runs: list[RunRecord]) -> RunRecord | None:
    """The grid point with the best test HR (the authors' selection rule)."""
    return max(runs, key=lambda r: r.best["hr"]) if runs else None


def grid_edges(runs: list[RunRecord]) -> list[str]:
    """The settings in which a grid's best run (on test HR) takes the smallest or
    largest value tried among the runs that differ from it in that setting only,
    e.g. ``["reg=10.0, the largest of 4 tried"]``."""
    best = best_on_test(runs)
    if best is None:
        return []
    edges = []
    for key, value in sorted(best.params.items()):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        tried = {r.params[key] for r in runs if key in r.params
                 and all(r.params.get(k) == v for k, v in best.params.items() if k != key)}
        if len(tried) > 1 and value in (min(tried), max(tried)):
            end = "smallest" if value == min(tried) else "largest"
            edges.append(f"{key}={value}, the {end} of {len(tried)} tried")
    return edges


def metric(runs: list[RunRecord], key: str, k: int = 10) -> list[float]:
    return [r.best[key] if k == 10 else r.best["topk"][str(k)][key] for r in runs]
