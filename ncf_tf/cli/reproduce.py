"""Command-line layer of bin/reproduce; see :mod:`ncf_tf.results.reproduce`."""

from __future__ import annotations

import functools
import os
import sys

from absl import flags

from ncf_tf.cli import baseline, train
from ncf_tf.cli.command import run_command
from ncf_tf.data.loader import SUFFIXES, DataError, find_file
from ncf_tf.results import compare, report, reproduce

MAINS = {"train_gmf": train.main_gmf, "train_mlp": train.main_mlp,
         "train_neumf": train.main_neumf, "train_baseline": baseline.main}


def program(script: str) -> list[str]:
    """The command that runs ``bin/<script>``'s ``main`` in a new Python process."""
    main = MAINS[script]
    return [sys.executable, "-c", f"import sys; from {main.__module__} import {main.__name__} "
            f"as main; sys.argv[0] = {script!r}; sys.exit(main())"]


def define_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    string = functools.partial(flags.DEFINE_string, flag_values=fv)
    integer = functools.partial(flags.DEFINE_integer, flag_values=fv)
    boolean = functools.partial(flags.DEFINE_boolean, flag_values=fv)
    string("only", "all", f"The experiment: {', '.join(reproduce.EXPERIMENTS)} or all (the "
           "paper's and beyond, most important runs first); see docs/reproducing.md.")
    string("dataset", "ml-1m", "ml-1m, pinterest-20, or one's own in --path.")
    string("match", "", "Only the planned runs whose name contains this text, with the runs "
           "they need.")
    string("compare", "", "Only print the GMF, MLP and NeuMF runs recorded in this folder "
           "beside the paper's numbers and the means of --results' runs.")
    string("path", "Data/", "Input data path.")
    string("results", "results", "The results folder (records in runs/).")
    string("model_dir", "Pretrain/", "Where weights and checkpoints go.")
    integer("seeds", None, "Seeds per cell (0 .. seeds-1); default: 3 for table2, beyond, "
            "fast and all, else 1.")
    integer("jobs", 1, "Runs at a time; the cores are shared between them.")
    integer("max_runs", 0, "Stop after starting this many runs (0: all).")
    boolean("dry_run", False, "List the planned runs with their state, estimated cost and "
            "command; run nothing.")
    boolean("report", False, "Only regenerate results/ from the run records in --results' runs/.")
    return fv


def check_data(path: str, dataset: str, planning_only: bool) -> None:
    """Runs need the data set's files; a plan only for a data set of one's own."""
    if planning_only and (dataset in reproduce.DATASETS or dataset in reproduce.MLPERF):
        return
    for suffix in SUFFIXES:
        try:
            find_file(path, dataset, suffix)
        except DataError:
            if dataset in reproduce.DATASETS:
                raise
            raise ValueError(f"--dataset {dataset}: not one of "
                             f"{', '.join(reproduce.DATASETS)}, and "
                             f"{os.path.join(path, f'{dataset}.{suffix}')} is not there") from None


def main(argv: list[str] | None = None) -> int:
    def body(fv: flags.FlagValues) -> None:
        for name, least in (("jobs", 1), ("seeds", 1), ("max_runs", 0)):
            if fv[name].value is not None and fv[name].value < least:
                raise ValueError(f"--{name} must be an integer >= {least}, got {fv[name].value}")
        runs = os.path.join(fv.results, "runs")
        if fv.compare:
            print("\n".join(compare.lines(fv.compare, fv.results)))
            return
        if fv.report:
            if not os.path.isdir(runs):
                raise ValueError(f"--results {fv.results}: no runs/ folder of run records in it")
            report.write(fv.results)
            return
        check_data(fv.path, fv.dataset, planning_only=fv.dry_run)

        def plan_jobs() -> list:
            jobs = reproduce.plan(fv.only, fv.dataset, fv.seeds, runs)
            if not fv.match:
                return jobs
            selected = [j for j in jobs if fv.match in j.name]
            if not selected:
                raise ValueError(f"--match {fv.match!r}: no run planned by --only {fv.only} "
                                 "has it in its name")
            return reproduce.with_needs(selected, jobs)

        jobs = plan_jobs()
        if fv.dry_run:
            restore = reproduce.to_restore(jobs, runs, fv.model_dir)
            states = {j.name: "no weights" if j.name in restore else reproduce.status(j, runs)
                      for j in jobs}
            for job in jobs:
                print(f"{states[job.name]:10s}{job.estimate_s / 60:7.0f} min  "
                      f"{job.name}\n{'':23s}{job.shell()}")
            missing = [j for j in jobs if states[j.name] != "finished"]
            print(f"{len(jobs) - len(missing)} of {len(jobs)} recorded; the rest is estimated "
                  f"at {sum(j.estimate_s for j in missing) / 3600:.1f} h on 2 CPU cores")
            return
        failed, planned = [], set()
        # A tuning grid, once recorded, plans the seeds of its chosen point: plan again.
        while {j.name for j in jobs} - planned and not failed:
            planned |= {j.name for j in jobs}
            if fv.max_runs:
                pending = [j for j in jobs if reproduce.status(j, runs) != "finished"]
                jobs = reproduce.with_needs(pending[:fv.max_runs], jobs)
            failed = reproduce.execute(jobs, program=program, results_dir=runs,
                                       model_dir=fv.model_dir, data_path=fv.path,
                                       parallel=fv.jobs)
            if fv.max_runs:
                break
            jobs = plan_jobs()
        report.write(fv.results)
        if failed:
            raise RuntimeError(f"{len(failed)} runs failed: {', '.join(failed)} "
                               f"(logs in {os.path.join(fv.results, 'logs')})")

    return run_command(argv, "reproduce", "plan, run (resumably) and report the paper's "
                       "experiments.", define_flags(), body, (ValueError, RuntimeError),
                       outputs=(("results", "dir"), ("model_dir", "dir")),
                       names={"folder": "compare"})
