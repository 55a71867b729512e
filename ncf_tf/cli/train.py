"""Command-line layer of bin/train_gmf, bin/train_mlp and bin/train_neumf: the
authors' flags plus ncf_tf's own, as a :class:`~ncf_tf.train.config.TrainConfig`."""

from __future__ import annotations

import functools
import sys

from absl import flags

from ncf_tf.cli.command import run_command
from ncf_tf.train.config import PRESETS, TrainConfig, parse_list, with_preset


def define_flags(model: str) -> flags.FlagValues:
    """The flags of ``bin/train_<model>``, in a new FlagValues."""
    fv = flags.FlagValues()
    d = TrainConfig(model=model)

    string = functools.partial(flags.DEFINE_string, flag_values=fv)
    integer = functools.partial(flags.DEFINE_integer, flag_values=fv)
    number = functools.partial(flags.DEFINE_float, flag_values=fv)
    boolean = functools.partial(flags.DEFINE_boolean, flag_values=fv)
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
    string("selection", d.selection, "Pick the best epoch on test (the authors') or on a "
           "held-out validation set (validation); test metrics at the picked epoch.")
    string("validation_split", d.validation_split, "With --selection validation: hold out "
           "each user's latest (latest) or a random (random) remaining interaction.")
    boolean("full_ranking", False, "Also rank each test item against every item not trained "
            "on: HR, NDCG and recall at --topk, in the run record.")
    boolean("lazy_adam", d.lazy_adam, "Fast mode, changes results: Adam updates an "
            "embedding row only when it is in the batch.")
    string("adam", d.adam, "How Adam's dense update is computed (same updates to float32 "
           "rounding): dense, deferred (idle rows caught up in closed form) or auto.")
    string("precision", d.precision, "float32 (faithful); fast mode, changes results: "
           "mixed_float16 (GPU) or mixed_bfloat16.")
    string("distribute", d.distribute, "none; mirrored (all local GPUs); multiworker "
           "(the machines in TF_CONFIG). Same updates as one device.")
    string("weights", d.weights, "Start from this weight file (ours or the authors' Keras 1 "
           ".h5); with --epochs 0 this just evaluates it.")
    string("model_dir", d.model_dir, "Where weight files are saved.")
    string("results_dir", d.results_dir, "Where the JSON run record is written.")
    string("run_name", d.run_name, "Name of the run record, weights and checkpoint (default: "
           "from the settings); the same command resumes an interrupted run.")
    string("tensorboard", d.tensorboard, "Also write TensorBoard logs under this folder.")
    string("adam_betas", ",".join(f"{b:g}" for b in d.adam_betas), "Adam's beta_1 and "
           "beta_2 (the authors'; MLPerf: 0.25,0.5); others are beyond the authors' code.")
    integer("early_stop", d.early_stop, "Beyond the authors' code: stop after this many "
            "evaluations without a better HR on the selection set; 0: never.")
    boolean("progress", None, "Show a progress bar per epoch (default: on a terminal).")
    if model in ("GMF", "NeuMF"):
        integer("num_factors", d.num_factors, "Embedding size of GMF (predictive factors).")
    if model == "GMF":
        string("regs", "[0,0]", "Regularization for user and item embeddings.")
    if model in ("MLP", "NeuMF"):
        number("dropout", d.dropout, "Beyond the authors' code: dropout after each MLP layer.")
        string("layers", "[64,32,16,8]", "MLP layers; the first is the concatenated "
               "embedding size, so 64 means 32 each. Brackets optional.")
        string("reg_layers", None, "Regularization for each MLP layer; reg_layers[0] "
               "is that of the embeddings (default: 0 for each of --layers).")
    if model == "NeuMF":
        number("reg_mf", d.reg_mf, "Regularization for the GMF embeddings.")
        boolean("pretrain", False, "Initialise from the newest finished GMF and MLP runs in "
                "--results_dir of the same data set, sizes, --num_neg, --seed and --selection.")
        boolean("pretrain_mismatch_ok", False, "With --pretrain: blend GMF and MLP runs of "
                "other epochs, batch size, lr or learner (with a warning).")
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
    """The settings, and that the data files are there, before Keras is imported."""
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
    return main("GMF", argv)


def main_mlp(argv: list[str] | None = None) -> int:
    return main("MLP", argv)


def main_neumf(argv: list[str] | None = None) -> int:
    return main("NeuMF", argv)
