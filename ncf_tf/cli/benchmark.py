"""bin/benchmark: the flags of :mod:`ncf_tf.bench.benchmark`."""

from __future__ import annotations

from absl import flags

from ncf_tf.cli.command import run_command


def main(argv: list[str] | None = None) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_string("path", "Data/", "Folder with the authors' ml-1m files.", flag_values=fv)
    flags.DEFINE_enum("section", "ml-1m", ["ml-1m", "script", "tables", "scale"],
                      "ml-1m: every figure on ml-1m; script: only bin/train_neumf's epochs; "
                      "tables: Adam's variants at larger tables; scale: every stage at "
                      "1M..100M interactions (see docs/speed-and-scale.md).", flag_values=fv)
    for name, default, help_ in (
            ("sizes", "1M,5M,20M,100M", "the sizes to measure."),
            ("scratch", "/tmp/ncf_tf_scale", "where the generated files go (kept and reused)."),
            ("cache", "", "a JSON file of measurements; sizes found there are not measured "
             "again (empty: measure all).")):
        flags.DEFINE_string(name, default, f"--section scale: {help_}", flag_values=fv)

    def body(fv: flags.FlagValues) -> None:
        from ncf_tf.bench import benchmark, scale  # imports Keras: after --help
        if fv.section == "scale":
            known = {s.name: s for s in scale.SHAPES}
            names = [n.strip() for n in fv.sizes.split(",") if n.strip()]
            unknown = [n for n in names if n not in known]
            if unknown or not names:
                raise ValueError(f"--sizes must name some of {', '.join(known)}, got {fv.sizes!r}")
            scale.run([known[n] for n in names], fv.scratch, fv.cache or None)
        elif fv.section == "tables":
            benchmark.tables()
            benchmark.table_epochs(fv.path)
        elif fv.section == "script":
            benchmark.print_script_epochs(fv.path)
        else:
            benchmark.run(fv.path)

    return run_command(argv, "benchmark", "print this machine's speed figures (sampling, "
                       "evaluation, training steps against their floor).", fv, body,
                       outputs=(("scratch", "dir"), ("cache", "in")), backend=True)
