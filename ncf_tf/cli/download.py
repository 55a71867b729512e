"""bin/download_data: the flags of :func:`ncf_tf.data.download.download`."""

from __future__ import annotations

from absl import flags

from ncf_tf.cli.command import run_command
from ncf_tf.data.download import GROUPS, DownloadError, download


def main(argv: list[str]) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_multi_enum("dataset", ["ml-1m"], sorted(GROUPS),
                            "What to fetch (repeatable): ml-1m, pinterest-20, or the "
                            "authors' pretrained ml-1m weights ml-1m-pretrain.", flag_values=fv)
    flags.DEFINE_string("dest", "Data/", "Folder to put the files in.", flag_values=fv)
    flags.DEFINE_string("from", "", "Copy from this local folder instead of downloading.",
                        flag_values=fv)
    return run_command(argv, "download_data", "fetch the authors' data files, verified.", fv,
                       lambda fv: download(fv.dataset, fv.dest, fv["from"].value or None),
                       errors=(DownloadError,), outputs=(("dest", "dir"),))
