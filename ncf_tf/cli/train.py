"""Command-line layer of bin/train_gmf, bin/train_mlp and bin/train_neumf: the
authors' flags (same names and defaults) plus ncf_tf's own, turned into a
:class:`~ncf_tf.train.config.TrainConfig` for :func:`ncf_tf.train.experiment.run`.
"""

from __future__ import annotations

import sys

from absl import flags

from ncf_tf.cli.command import run_command
from ncf_tf.train.config import PRESETS, TrainConfig, parse_list, with_preset


def define_flags(model: str) -> flags.FlagValues:
    """The flags of ``bin/train_<model>``, in a new FlagValues."""
    fv = flags.FlagValues()
    d = TrainConfig(model=model)

    def string(name, default, help_):
        flags.DEFINE_string(name, default, help_, flag_values=fv)

    def integer(name, default, help_):
        flags.DEFINE_integer(name, default, help_, flag_values=fv)

    def number(name, default, help_):
        flags.DEFINE_float(name, default, help_, flag_values=fv)

    string("path", d.path, "Input data path.")
    string("dataset", d.dataset, "Choose a dataset (ml-1m, pinterest-20 or your own).")
    integer("epochs", d.epochs, "Number of epochs (0: only evaluate the initial model).")
    integer("batch_size", d.batch_size, "Batch size.")
    integer("num_neg", d.num_neg, "Number of negative instances to pair with a positive instance.")
    number("lr", d.lr, "Learning rate.")
    string("learner", None, "Specify an optimizer: adagrad, adam, rmsprop, sgd "
           "(default adam; sgd for a pretrained NeuMF).")
    integer("verbose", d.verbose, "Show performance per X iterations.")
    integer("out", d.out, "Whether to save the best model's weights (1) or not (0).")
    integer("seed", d.seed, "Seed of initialisation, sampling and shuffling.")
    integer("topk", d.topk, "K of HR@K and NDCG@K.")
    string("device", d.device, "auto (first GPU, else CPU), cpu, or gpu:N.")
    string("selection", d.selection, "Pick the best epoch on the test set (test: the "
           "authors' protocol) or on a validation set held out of the training file "
           "(validation); test metrics are reported at the picked epoch either way.")
    string("validation_split", d.validation_split, "With --selection validation: hold out "
           "each user's latest remaining interaction (latest) or a random one (random), "
           "with 99 sampled validation negatives.")
    flags.DEFINE_boolean("full_ranking", False, "Also rank each test item against the whole "
                         "catalogue (training items excluded): HR, NDCG and recall at --topk "
                         "of the picked model, in the run record.", flag_values=fv)
    flags.DEFINE_boolean("lazy_adam", d.lazy_adam, "Fast mode, changes results: Adam "
                         "updates an embedding row (and its moments) only when the row is "
                         "in the batch. Labelled in the run record.", flag_values=fv)
    string("adam", d.adam, "How Adam's dense update is computed, the same updates to "
           "float32 rounding: dense (every row at every step), deferred (an embedding "
           "row's zero-gradient steps are applied in closed form when it is next in a "
           "batch, and at the end of each epoch), or auto (deferred for large embedding "
           "tables, dense for small ones). The record names the one used.")
    string("precision", d.precision, "float32 (faithful); fast mode, changes results: "
           "mixed_float16 (GPU) or mixed_bfloat16. Labelled in the run record.")
    string("distribute", d.distribute, "none; mirrored (tf.distribute over all local GPUs); "
           "multiworker (over the machines in TF_CONFIG). Same updates as one device.")
    string("weights", d.weights, "Start from this weight file (.weights.h5 or the authors' "
           "Keras 1 .h5); with --epochs 0 this just evaluates it.")
    string("model_dir", d.model_dir, "Where weight files are saved.")
    string("results_dir", d.results_dir, "Where the JSON run record is written.")
    string("run_name", d.run_name, "Name of the run record, weights and checkpoint (default: "
           "data set, model and settings, e.g. ml-1m_GMF_8_e20_s0). The same command resumes "
           "an interrupted run from its last finished epoch.")
    string("tensorboard", d.tensorboard, "Also write TensorBoard logs (loss, HR, NDCG per "
           "epoch) under this folder.")
    string("adam_betas", ",".join(f"{b:g}" for b in d.adam_betas), "Adam's beta_1 and "
           "beta_2 (Keras 1's, the authors'; MLPerf: 0.25,0.5). Other values are labelled "
           "in the run record as beyond the authors' code.")
    integer("early_stop", d.early_stop, "Beyond the authors' code (labelled in the run "
            "record): stop after this many evaluations without a better HR on the "
            "selection set (--selection); 0: run every epoch, as the authors do.")
    flags.DEFINE_boolean("progress", None, "Show a progress bar per epoch (default: when "
                         "the output is a terminal).", flag_values=fv)
    if model in ("GMF", "NeuMF"):
        integer("num_factors", d.num_factors, "Embedding size of the GMF part (predictive factors).")
    if model == "GMF":
        string("regs", "[0,0]", "Regularization for user and item embeddings.")
    if model in ("MLP", "NeuMF"):
        number("dropout", d.dropout, "Beyond the authors' code (labelled in the run "
               "record): dropout of this rate after each MLP layer, in training only.")
        string("layers", "[64,32,16,8]", "MLP layers; the first is the concatenated "
               "embedding size, so 64 means 32 each. Brackets optional.")
        string("reg_layers", None, "Regularization for each MLP layer; reg_layers[0] "
               "is that of the embeddings (default: 0 for each of --layers).")
    if model == "NeuMF":
        number("reg_mf", d.reg_mf, "Regularization for the GMF embeddings.")
        flags.DEFINE_boolean("pretrain", False, "Initialise from the newest finished GMF and MLP "
                             "runs in --results_dir of this data set, factors, layers, "
                             "--num_neg, --seed and --selection.",
                             flag_values=fv)
        flags.DEFINE_boolean("pretrain_mismatch_ok", False, "With --pretrain: blend GMF and "
                             "MLP runs trained with different epochs, batch size, lr or "
                             "learner (with a warning) instead of refusing.", flag_values=fv)
        string("mf_pretrain", "", "Pretrained GMF weight file (ours or the authors').")
        string("mlp_pretrain", "", "Pretrained MLP weight file (ours or the authors').")
        number("alpha", d.alpha, "Share of GMF in the pretrained output layer (equation 13).")
        string("preset", "", "A named configuration: " + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v}" for k, v in fields.items() if k != "model")
            for name, fields in PRESETS.items()) + ". Flags given explicitly win.")
    return fv


def config_from_flags(model: str, fv: flags.FlagValues) -> TrainConfig:
    """A TrainConfig from parsed flags (ValueError naming a bad flag)."""
    values = {name: fv[name].value for name in fv if name != "tf_verbose"}
    if values["progress"] is None:
        values["progress"] = sys.stdout.isatty()
    for name, kind in (("regs", float), ("layers", int), ("reg_layers", float),
                       ("adam_betas", float)):
        if values.get(name) is not None:
            values[name] = parse_list(name, values[name], kind)
    given = {name for name in fv if fv[name].present}
    values = with_preset({"model": model, **values}, values.get("preset", ""), given)
    return TrainConfig(**values)


def check(model: str, fv: flags.FlagValues) -> None:
    """What can be checked before Keras is imported: the settings, and that the
    data files are there."""
    config = config_from_flags(model, fv)
    config.validate()
    # Imported here: the loader brings pandas and SciPy, which a bad flag need not wait for.
    from ncf_tf.data.loader import SUFFIXES, find_file
    for suffix in SUFFIXES:
        find_file(config.path, config.dataset, suffix)


def main(model: str, argv: list[str] | None = None) -> int:
    """Parses ``argv`` (``argv[0]`` is the program; default ``sys.argv``) and trains
    ``model``; returns the exit code."""
    def body(fv: flags.FlagValues) -> None:
        from ncf_tf.train import experiment  # imports Keras: after the flags are checked
        experiment.run(config_from_flags(model, fv))

    return run_command(argv, f"train_{model.lower()}",
                       f"train and evaluate {model} (He et al., Neural Collaborative "
                       "Filtering, WWW 2017).", define_flags(model), body,
                       outputs=(("model_dir", "dir"), ("results_dir", "dir"),
                                ("tensorboard", "dir")), backend=True,
                       check=lambda fv: check(model, fv))


def main_gmf(argv: list[str] | None = None) -> int:
    """bin/train_gmf."""
    return main("GMF", argv)


def main_mlp(argv: list[str] | None = None) -> int:
    """bin/train_mlp."""
    return main("MLP", argv)


def main_neumf(argv: list[str] | None = None) -> int:
    """bin/train_neumf."""
    return main("NeuMF", argv)
