"""One baseline run and its run record (:mod:`ncf_tf.train.experiment` for
the baselines): fit with a seeded generator, evaluate with the shared
evaluator, record ``best`` with HR/NDCG at every K up to ``topk``.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from ncf_tf.core import records
from ncf_tf.baselines import BASELINES
from ncf_tf.data.loader import Dataset, load_dataset_verbose
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.eval.full_ranking import FullRankingEvaluator
from ncf_tf.data.validation import validation_split


def parse_params(pairs: list[str]) -> dict:
    """``["k_neighbors=50", "lr=0.1"]`` -> ``{"k_neighbors": 50, "lr": 0.1}``.

    Values are read as int, then float, then ``true``/``false``; ValueError
    naming ``param`` otherwise.
    """
    params = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"param must look like name=value, got {pair!r}")
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
    raise ValueError(f"param values must be numbers or true/false, got {text!r}")


def run_key(name: str, params: dict, dataset: str, seed: int, selection: str = "none") -> str:
    """Stable run name, e.g. ``ml-1m_BPR_num_factors8-lr0.05_s0``."""
    settings = "-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}"
                        for k, v in sorted(params.items()))
    tag = "val-latest" if selection == "validation" else ""
    return "_".join(part for part in (dataset, name, settings, tag, f"s{seed}") if part)


def run_baseline(name: str, params: dict, *, path: str, dataset: str, seed: int = 0,
                 topk: int = 10, results_dir: str = "runs/", run_name: str = "",
                 selection: str = "none", full: bool = False,
                 log: Callable[[str], None] = print) -> records.RunRecord:
    """Fits and evaluates baseline ``name`` with ``params``; returns its record.

    With ``selection="validation"`` the model is fitted on the training file
    less each user's latest interaction, and the record holds its HR/NDCG on
    that validation set (``best_validation``) beside the test set's (``best``).
    ``full`` adds full-ranking metrics on the test set. A finished record of
    the name is never replaced: the run then takes a time-stamped name.

    Raises:
        ValueError: unknown baseline or hyper-parameter, bad data files
            (nothing written); RunBusyError: another process owns the name.
    """
    if name not in BASELINES:
        raise ValueError(f"name must be one of {', '.join(BASELINES)}, got {name!r}")
    try:
        model = BASELINES[name](**params)
    except TypeError as e:
        raise ValueError(f"params: {name} does not take these settings ({e})") from None
    if topk < 1:
        raise ValueError(f"topk must be an integer >= 1, got {topk}")
    if selection not in ("none", "validation"):
        raise ValueError(f"selection must be none or validation, got {selection!r}")
    data = load_dataset_verbose(path, dataset, log)
    fit_data = data
    if selection == "validation":
        fit_data = validation_split(data, np.random.default_rng([seed, 1]), "latest")
    owner = records.own_run(results_dir, run_name or run_key(name, params, dataset, seed,
                                                             selection))
    try:
        record = fit_and_evaluate(model, name, data, fit_data, seed, topk, full, log)
        record.params, record.dataset = params, dataset
        record.selection = "validation" if selection == "validation" else "test"
        record.config = {**model.config(), "path": path, "dataset": dataset, "seed": seed,
                         "topk": topk}
        record.write(os.path.join(results_dir, f"{owner.name}.json"))
    finally:
        owner.release()
    log(f"Run record: {record.path}")
    return record


def fit_and_evaluate(model, name: str, data: Dataset, fit_data: Dataset, seed: int, topk: int,
                     full: bool, log: Callable[[str], None]) -> records.RunRecord:
    """The record (less its settings) of ``model`` fitted on ``fit_data`` and tested
    on ``data``'s test set (and on ``fit_data``'s when it is a validation split)."""
    start = time.time()
    model.fit(fit_data.train, np.random.default_rng(seed), log)
    fit_s = time.time() - start
    result = LeaveOneOutEvaluator.for_dataset(data, topk).evaluate(model.score)
    record = records.RunRecord(kind="baseline", model=name, seed=seed,
                               data={"summary": data.summary(), "files": data.files},
                               **records.environment(), status="finished")
    if fit_data is not data:
        checked = LeaveOneOutEvaluator.for_dataset(fit_data, topk).evaluate(model.score)
        record.best_validation = {"hr": checked.hr, "ndcg": checked.ndcg}
        log(f"{name} on validation: HR = {checked.hr:.4f}, NDCG = {checked.ndcg:.4f}")
    if full:
        ranking = FullRankingEvaluator.for_dataset(data, topk)
        scored = (ranking.evaluate_all(model.score_all) if hasattr(model, "score_all")
                  else ranking.evaluate(model.score))
        record.full_ranking = {"k": topk, "hr": scored.hr, "ndcg": scored.ndcg,
                               "recall": scored.recall, "excluded": "training items"}
    record.eval_s = time.time() - start - fit_s
    log(f"{name}: HR = {result.hr:.4f}, NDCG = {result.ndcg:.4f} "
        f"[fit {fit_s:.1f} s, evaluation {record.eval_s:.1f} s]")
    record.fit_s, record.wall_s = fit_s, time.time() - start
    record.best = {"hr": result.hr, "ndcg": result.ndcg,
                   "topk": {str(k): dict(zip(("hr", "ndcg"), result.at(k)))
                            for k in range(1, topk + 1)}}
    return record
