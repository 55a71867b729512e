"""bin/download_data: the flags of :func:`ncf_tf.data.download.download`."""

from __future__ import annotations

from absl import flags

from ncf_tf.cli.command import run_command
from ncf_tf.cli.prepare import as_flags
from ncf_tf.data.download import DATASETS, download
from ncf_tf.data.prepare import PrepareError


def run(fv: flags.FlagValues) -> None:
    """:func:`download`, its errors' suggestions written as flags."""
    with as_flags():
        download(fv.dataset, fv.dest, fv["from"].value or None)


def main(argv: list[str] | None = None) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_multi_enum("dataset", ["ml-1m"], DATASETS,
                            "What to fetch (repeatable): the authors' ml-1m, pinterest-20 or "
                            "ml-1m-pretrain (weights); ml-20m or ml-25m converted with the MLPerf "
                            "protocol; ml-1m-neg999 (999 drawn test negatives).", flag_values=fv)
    flags.DEFINE_string("dest", "Data/", "Folder to put the files in.", flag_values=fv)
    flags.DEFINE_string("from", "", "Copy from this local folder instead of downloading "
                        "(ml-20m, ml-25m: the folder holding their zip).", flag_values=fv)
    return run_command(argv, "download_data", "fetch the authors' data files, verified; "
                       "MovieLens-20M/25M, converted.", fv,
                       run, errors=(PrepareError,), outputs=(("dest", "dir"),))
