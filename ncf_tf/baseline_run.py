"""One baseline run (ItemPop, ItemKNN, BPR, eALS, ...) and its run record.

The counterpart of :mod:`ncf_tf.experiment` for the non-neural baselines:
fit on the training matrix with a seeded generator, score the leave-one-out
test set with the shared evaluator, write a record with the same fields the
report reads (``best`` with HR/NDCG at every K up to ``topk``).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from ncf_tf import records
from ncf_tf.baselines import BASELINES
from ncf_tf.data import load_dataset_verbose
from ncf_tf.evaluation import LeaveOneOutEvaluator


def parse_params(pairs: list[str]) -> dict:
    """``["k_neighbors=50", "lr=0.1"]`` -> ``{"k_neighbors": 50, "lr": 0.1}``.

    Values are read as int, then float, then ``true``/``false``; ValueError
    naming ``--param`` otherwise.
    """
    params = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param must look like name=value, got {pair!r}")
        params[key.strip()] = _value(text.strip())
    return params


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise ValueError(f"--param values must be numbers or true/false, got {text!r}")


def run_key(name: str, params: dict, dataset: str, seed: int) -> str:
    """Stable run name, e.g. ``ml-1m_BPR_num_factors8-lr0.05_s0``."""
    settings = "-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}"
                        for k, v in sorted(params.items()))
    return "_".join(part for part in (dataset, name, settings, f"s{seed}") if part)


def run_baseline(name: str, params: dict, *, path: str, dataset: str, seed: int = 0,
                 topk: int = 10, results_dir: str = "results/runs/", run_name: str = "",
                 log: Callable[[str], None] = print) -> dict:
    """Fits and evaluates baseline ``name`` with ``params``; returns its record.

    Raises:
        ValueError: unknown baseline or hyper-parameter, bad data files;
            nothing is written then.
    """
    if name not in BASELINES:
        raise ValueError(f"--baseline must be one of {', '.join(BASELINES)}, got {name!r}")
    try:
        model = BASELINES[name](**params)
    except TypeError as e:
        raise ValueError(f"--param: {name} does not take these settings ({e})") from None
    if topk < 1:
        raise ValueError(f"--topk must be an integer >= 1, got {topk}")
    data = load_dataset_verbose(path, dataset, log)
    evaluator = LeaveOneOutEvaluator.for_dataset(data, topk)
    run_name = run_name or run_key(name, params, dataset, seed)
    record_path = os.path.join(results_dir, f"{run_name}.json")
    start = time.time()
    model.fit(data.train, np.random.default_rng(seed), log)
    fit_s = time.time() - start
    result = evaluator.evaluate(model.score)
    eval_s = time.time() - start - fit_s
    log(f"{name}: HR = {result.hr:.4f}, NDCG = {result.ndcg:.4f} "
        f"[fit {fit_s:.1f} s, evaluation {eval_s:.1f} s]")
    record = {
        "kind": "baseline", "model": name, "dataset": dataset, "params": params,
        "config": {**model.config(), "path": path, "dataset": dataset, "seed": seed,
                   "topk": topk},
        "seed": seed, "selection": "none (fixed hyper-parameters)",
        "data": {"summary": data.summary(), "files": data.files}, **records.environment(),
        "status": "finished", "fit_s": fit_s, "eval_s": eval_s,
        "best": {"hr": result.hr, "ndcg": result.ndcg,
                 "topk": {str(k): dict(zip(("hr", "ndcg"), result.at(k)))
                          for k in range(1, topk + 1)}},
        "wall_s": time.time() - start,
    }
    records.write_json(record_path, record)
    log(f"Run record: {record_path}")
    record["record_file"] = record_path
    return record
