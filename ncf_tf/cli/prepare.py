"""Command-line layer of bin/prepare_data: raw interactions -> leave-one-out files
(:mod:`ncf_tf.data.prepare`; examples in docs/data.md)."""

from __future__ import annotations

import contextlib
import functools
import shlex
from typing import Iterator

import numpy as np
from absl import flags

from ncf_tf.data import prepare
from ncf_tf.cli.command import run_command

SEPARATORS = {"\\t": "\t", "tab": "\t", "TAB": "\t"}
SHOWN_SEPARATORS = {"\t": "\\t"}
CSV_FLAGS = ("sep", "user_col", "item_col", "rating_col", "timestamp_col", "columns")
# The library's parameters that are named otherwise on the command line.
FLAG_NAMES = {"fmt": "format", "input_path": "input", "source": "from"}
FIXED_COLUMNS = {"movielens": "ratings.dat", "movielens-csv": "ratings.csv"}
# Flags that only shape a split from raw interactions (not --resample_negatives).
SPLIT_FLAGS = ("input", "format", "min_interactions", "tie_break", "drop_cold_items") + CSV_FLAGS


def define_flags() -> flags.FlagValues:
    """The flags of ``bin/prepare_data``, in a new FlagValues."""
    fv = flags.FlagValues()
    string = functools.partial(flags.DEFINE_string, flag_values=fv)
    enum = functools.partial(flags.DEFINE_enum, flag_values=fv)
    integer = functools.partial(flags.DEFINE_integer, flag_values=fv)
    boolean = functools.partial(flags.DEFINE_boolean, flag_values=fv)
    string("input", None, "Raw interaction file (plain or .gz).")
    enum("format", "movielens", list(prepare.FORMATS), "movielens: ratings.dat "
         "(user::item::rating::timestamp); movielens-csv: ratings.csv of MovieLens-20M/25M; "
         "csv: a separated file with a header, or without one given --columns.")
    enum("protocol", "paper", list(prepare.PROTOCOLS), "Defaults of --min_interactions and "
         "--num_test_neg: paper 0 and 99 (He et al.'s files); mlperf 20 and 999 (MLPerf's).")
    string("resample_negatives", "", "Instead of --input, the path prefix of a data set (e.g. "
           "Data/ml-1m): copy its train and test files to <dest>/<name>.* and draw "
           "--num_test_neg new negatives per line.")
    string("sep", ",", "csv: field separator (\\t or tab for a tab).")
    string("user_col", "user", "csv: column of user ids.")
    string("item_col", "item", "csv: column of item ids.")
    string("rating_col", "", "csv: column of ratings (> 0 is an interaction); empty: every "
           "line is one.")
    string("timestamp_col", "", "csv: column of numeric timestamps; empty: the file order.")
    flags.DEFINE_list("columns", [], "csv: the column names of a file without a header, in "
                      "order (e.g. user,item,rating,time).", flag_values=fv)
    string("dest", "Data/", "Output folder.")
    string("name", None, "Data set name: writes <dest>/<name>.train.rating, .test.rating, "
           ".test.negative, .user_ids.tsv, .item_ids.tsv.")
    integer("min_interactions", 0, "Drop users with fewer interactions (always those with "
            "fewer than 2). Default: --protocol's.", lower_bound=0)
    integer("num_test_neg", 99, "Negatives per test line. Default: --protocol's.", lower_bound=1)
    integer("seed", 0, "Seed of the test negatives.")
    enum("tie_break", "last", list(prepare.TIE_BREAKS), "Which of a user's lines at the "
         "latest timestamp is held out: the first or the last in file order.")
    boolean("drop_cold_items", False, "Drop items that occur only in held-out test lines "
            "(the authors kept them).")
    boolean("overwrite", False, "Replace existing output files.")
    return fv


def _flag(name: str, value) -> str:
    """A library parameter and its value as the command line writes it."""
    flag = f"--{FLAG_NAMES.get(name, name)}"
    if value is True:
        return flag
    if value is None:
        return f"without {flag}"
    if isinstance(value, (tuple, list)):
        value = ",".join(value)
    return f"{flag} {shlex.quote(SHOWN_SEPARATORS.get(value, str(value)))}"


def _protocol_value(fv: flags.FlagValues, name: str) -> int:
    """A flag given on the command line, else --protocol's value for it."""
    return fv[name].value if fv[name].present else prepare.PROTOCOLS[fv.protocol][name]


def _resample(fv: flags.FlagValues) -> None:
    given = [f"--{name}" for name in SPLIT_FLAGS if fv[name].present]
    if given:
        raise prepare.PrepareError(f"{', '.join(given)}: not with --resample_negatives (it "
                                   "keeps the train and test files as they are)")
    counts = prepare.resample_negatives(
        fv.resample_negatives, fv.dest, fv.name, _protocol_value(fv, "num_test_neg"),
        np.random.default_rng(fv.seed), overwrite=fv.overwrite)
    print(f"Wrote {', '.join(prepare.output_paths(fv.dest, fv.name, prepare.NEGATIVE_SUFFIXES))}")
    print(f"#user={counts['users']}, #item={counts['items']}, #train={counts['train']}, "
          f"#test={counts['test']}")


@contextlib.contextmanager
def as_flags() -> Iterator[None]:
    """Re-raises a PrepareError with its suggestion written as flags."""
    try:
        yield
    except prepare.PrepareError as e:
        raise prepare.PrepareError(e.render(_flag, " ")) from None


@as_flags()
def run(fv: flags.FlagValues) -> None:
    """Prepares the data as the parsed flags say and reports what it wrote."""
    if not fv.name:
        raise prepare.PrepareError("--name is required")
    if fv.resample_negatives:
        return _resample(fv)
    if not fv.input:
        raise prepare.PrepareError("--input is required (or --resample_negatives)")
    if fv.format != "csv":
        ignored = [f"--{name}" for name in CSV_FLAGS if fv[name].present]
        if ignored:
            raise prepare.PrepareError(f"{', '.join(ignored)}: only with --format csv "
                                       f"({FIXED_COLUMNS[fv.format]} has fixed columns)")
    data = prepare.prepare(
        fv.input, fv.dest, fv.name, np.random.default_rng(fv.seed), fmt=fv.format,
        sep=SEPARATORS.get(fv.sep, fv.sep), user_col=fv.user_col, item_col=fv.item_col,
        rating_col=fv.rating_col or None, timestamp_col=fv.timestamp_col or None,
        columns=fv.columns or None, min_interactions=_protocol_value(fv, "min_interactions"),
        num_test_neg=_protocol_value(fv, "num_test_neg"), tie_break=fv.tie_break,
        drop_cold_items=fv.drop_cold_items, overwrite=fv.overwrite)
    print("\n".join(data.stats.describe()))
    print(f"Wrote {', '.join(prepare.output_paths(fv.dest, fv.name))}")
    print(data.summary())


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, "prepare_data",
                       "turn raw interactions into the leave-one-out files of He et al., "
                       "Neural Collaborative Filtering (WWW 2017).",
                       define_flags(), run, errors=(prepare.PrepareError,),
                       outputs=(("dest", "dir"),))
