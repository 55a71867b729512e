"""Command-line layer of bin/train_baseline; see :mod:`ncf_tf.baselines.run`."""

from __future__ import annotations

import functools

from absl import flags

from ncf_tf.baselines import BASELINES
from ncf_tf.baselines import run as baseline_run
from ncf_tf.cli.command import run_command
from ncf_tf.train.config import canonical, check_run_name


def define_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    string = functools.partial(flags.DEFINE_string, flag_values=fv)
    integer = functools.partial(flags.DEFINE_integer, flag_values=fv)
    string("baseline", None, f"A baseline of ncf_tf.baselines (any case): {', '.join(BASELINES)}.")
    flags.DEFINE_multi_string("param", [], "A hyper-parameter as name=value, e.g. "
                              "num_factors=8; repeat the flag for several.", flag_values=fv)
    string("path", "Data/", "Input data path.")
    string("dataset", "ml-1m", "Data set name.")
    integer("seed", 0, "Seed of initialisation and sampling.")
    integer("topk", 10, "K of HR@K and NDCG@K.")
    string("results_dir", "runs/", "Where the JSON run record is written.")
    string("run_name", "", "Name of the run record (default: from the settings).")
    string("selection", "none", "none, or validation: also report HR/NDCG on each user's "
           "latest training interaction, fitted without it.")
    flags.DEFINE_boolean("full_ranking", False, "Also rank the test items against the whole "
                         "catalogue (training items excluded).", flag_values=fv)
    flags.mark_flag_as_required("baseline", flag_values=fv)
    return fv


def check(fv: flags.FlagValues) -> None:
    """The baseline's name and its settings, before Keras is imported."""
    if canonical(fv.baseline, BASELINES) not in BASELINES:
        raise ValueError(f"--baseline must be one of {', '.join(BASELINES)}, "
                         f"got {fv.baseline!r}")
    baseline_run.parse_params(fv.param)
    check_run_name(fv.run_name)


def main(argv: list[str] | None = None) -> int:
    def body(fv: flags.FlagValues) -> None:
        baseline_run.run_baseline(
            canonical(fv.baseline, BASELINES), baseline_run.parse_params(fv.param),
            path=fv.path, dataset=fv.dataset, seed=fv.seed, topk=fv.topk,
            results_dir=fv.results_dir, run_name=fv.run_name, selection=fv.selection,
            full=fv.full_ranking)

    return run_command(argv, "train_baseline", "fit and evaluate a baseline of the paper "
                       "(leave-one-out HR@K/NDCG@K) and write its run record.",
                       define_flags(), body, outputs=(("results_dir", "dir"),), check=check,
                       # The run record names the Keras version (core.records.environment).
                       backend=True,
                       names={"name": "baseline", "params": "param", "full": "full_ranking"})
