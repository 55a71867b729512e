"""Command-line layer of bin/export: a trained model (named as for bin/recommend) -> a folder."""

from __future__ import annotations

from absl import flags

from ncf_tf.cli.command import run_command
from ncf_tf.cli.recommend import FLAG_NAMES, define_model_flags, load


def define_flags() -> flags.FlagValues:
    """The flags of ``bin/export``, in a new FlagValues."""
    fv = flags.FlagValues()
    define_model_flags(fv)
    flags.DEFINE_string("dest", None, "Folder to create: model.keras, saved_model/ "
                        "(signatures on the raw ids) and config.json.", flag_values=fv)
    flags.DEFINE_integer("topk", 10, "Items returned by the SavedModel's top_k signature.",
                         flag_values=fv)
    flags.DEFINE_boolean("include_seen", False, "Let top_k return the user's training items "
                         "(excluded by default).", flag_values=fv)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --dest.", flag_values=fv)
    return fv


def check(fv: flags.FlagValues) -> None:
    """The checks that need no Keras (run before it is imported)."""
    if not fv.dest:
        raise ValueError("--dest is required: the folder to write")


def run(fv: flags.FlagValues) -> None:
    """Exports as the parsed flags say."""
    from ncf_tf.serve import export
    export.check_destination(fv.dest, fv.overwrite)
    if fv.topk <= 0:
        raise export.ExportError(f"--topk must be a positive integer, got {fv.topk}")
    loaded = load(fv)
    config = export.export(loaded.model, fv.dest,
                           exclude=None if fv.include_seen else loaded.dataset.train,
                           k=fv.topk, user_ids=loaded.user_ids,
                           item_ids=loaded.item_ids, about={"source": loaded.source},
                           overwrite=fv.overwrite)
    print(f"Exported {config['model']} ({loaded.dataset.summary()}) to {fv.dest}: "
          f"{', '.join(config['files'].values())}, {export.CONFIG_FILE}")


def main(argv: list[str] | None = None) -> int:
    """Parses ``argv`` (``argv[0]`` is the program) and runs; returns the exit code."""
    return run_command(argv, "export",
                       "export a trained GMF, MLP or NeuMF as a .keras model and a TensorFlow "
                       "SavedModel with score and top_k signatures.", define_flags(), run,
                       outputs=(("dest", "in"),), backend=True, check=check,
                       names=FLAG_NAMES)
