"""Command-line layer of bin/plot_run: run records -> a PNG of their curves."""

from __future__ import annotations

import glob

from absl import flags

from ncf_tf.cli.command import run_command
from ncf_tf.results import plot


def define_flags() -> flags.FlagValues:
    """The flags of ``bin/plot_run``, in a new FlagValues."""
    fv = flags.FlagValues()
    flags.DEFINE_string("runs", None, "Comma-separated run records (JSON) or glob patterns "
                        "(quote them), e.g. 'results/runs/ml-1m_*_s0.json'.", flag_values=fv)
    flags.DEFINE_string("labels", None, "Comma-separated legend labels, one per record "
                        "(default: the record file names).", flag_values=fv)
    flags.DEFINE_string("output", None, "The PNG to write.", flag_values=fv)
    flags.DEFINE_string("title", None, "Figure title.", flag_values=fv)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --output.", flag_values=fv)
    return fv


def expand(runs: str) -> list[str]:
    """The record files named by ``--runs``: globs expanded (sorted), order kept."""
    files = []
    for item in (part.strip() for part in runs.split(",")):
        if not item:
            raise plot.PlotError(f"--runs {runs!r}: expected comma-separated files, found an "
                                 "empty one")
        if any(c in item for c in "*?["):
            found = sorted(glob.glob(item))
            if not found:
                raise plot.PlotError(f"--runs: no file matches {item}")
            files += found
        else:
            files.append(item)
    return files


def run(fv: flags.FlagValues) -> None:
    if not fv.runs:
        raise plot.PlotError("--runs is required: the run records to plot")
    if not fv.output:
        raise plot.PlotError("--output is required: the PNG to write")
    plot.check_output(fv.output, fv.overwrite)
    files = expand(fv.runs)
    labels = [label.strip() for label in fv.labels.split(",")] if fv.labels else [None] * len(files)
    if len(labels) != len(files):
        raise plot.PlotError(f"--labels has {len(labels)} entries but --runs names "
                             f"{len(files)} records")
    runs = [plot.read_curves(path, label) for path, label in zip(files, labels)]
    plot.plot(runs, fv.output, fv.title, fv.overwrite)
    print(f"Plotted {len(runs)} run{'s' if len(runs) != 1 else ''} to {fv.output}")


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, "plot_run", "plot run records' per-epoch loss, HR@K and NDCG@K "
                       "to a PNG.", define_flags(), run, outputs=(("output", "in"),))
