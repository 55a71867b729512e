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
                            "What to fetch (repeatable): ml-1m, pinterest-20, or the "
                            "authors' pretrained ml-1m weights ml-1m-pretrain (the authors' "
                            "files, verified); ml-20m or ml-25m: GroupLens's zip, MD5-checked, "
                            "converted with the MLPerf protocol (users with >= 20 ratings, "
                            "latest held out, 999 test negatives; the zip is kept in --dest); "
                            "ml-1m-neg999: ml-1m's train and test files with 999 test "
                            "negatives drawn, seed 0 (fetches ml-1m first).", flag_values=fv)
    flags.DEFINE_string("dest", "Data/", "Folder to put the files in.", flag_values=fv)
    flags.DEFINE_string("from", "", "Copy from this local folder instead of downloading "
                        "(for ml-20m/ml-25m: the folder holding ml-20m.zip / ml-25m.zip).",
                        flag_values=fv)
    return run_command(argv, "download_data", "fetch the authors' data files, verified; "
                       "MovieLens-20M/25M, converted.", fv,
                       run, errors=(PrepareError,), outputs=(("dest", "dir"),))
