"""bin/benchmark: the flags of :mod:`ncf_tf.bench.benchmark`."""

from __future__ import annotations

from absl import flags

from ncf_tf.cli.command import run_command


def main(argv: list[str]) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_string("path", "Data/", "Folder with the authors' ml-1m files.", flag_values=fv)

    def body(fv: flags.FlagValues) -> None:
        from ncf_tf.bench import benchmark  # imports Keras: after --help
        benchmark.run(fv.path)

    return run_command(argv, "benchmark", "print this machine's speed figures (sampling, "
                       "evaluation, training steps against their floor).", fv, body,
                       backend=True)
