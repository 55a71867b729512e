"""Command-line layer of bin/recommend, and the flags naming a trained model (also bin/export's).

``--fold_in FILE`` recommends to a new user (named ``new``) fitted to the items FILE lists.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from absl import flags

from ncf_tf.cli.command import run_command
from ncf_tf.train.config import parse_list

# ncf_tf.api, serve and train import Keras (seconds): the functions import them
# where they need them, so that a bad flag is reported before that.


def define_model_flags(fv: flags.FlagValues) -> None:
    """Adds the flags naming a trained model and its data to ``fv``."""
    flags.DEFINE_string("record", None, "Run record (JSON) of the trained model: gives the "
                        "model, its sizes, its weight file and its data.", flag_values=fv)
    flags.DEFINE_string("weights", None, "Weight file (.weights.h5, or the authors' Keras 1 "
                        ".h5); default: the record's weights_file.", flag_values=fv)
    flags.DEFINE_string("keras", None, "A whole .keras model (e.g. from bin/export), instead "
                        "of --record/--weights.", flag_values=fv)
    flags.DEFINE_string("saved", None, "A folder written by ncf_tf.Recommender.save, instead "
                        "of --record/--weights/--keras (no --path or --dataset).",
                        flag_values=fv)
    flags.DEFINE_enum("model", None, ["GMF", "MLP", "NeuMF"], "Model of --weights, when no "
                      "--record is given.", flag_values=fv)
    flags.DEFINE_integer("num_factors", None, "GMF/NeuMF predictive factors, when no --record "
                         "is given (default 8).", flag_values=fv)
    flags.DEFINE_string("layers", None, "MLP/NeuMF layers, when no --record is given "
                        "(default [64,32,16,8]).", flag_values=fv)
    flags.DEFINE_string("path", None, "Input data path (default: the record's, else "
                        "Data/).", flag_values=fv)
    flags.DEFINE_string("dataset", None, "Data set name (default: the record's, else "
                        "ml-1m).", flag_values=fv)
    flags.DEFINE_string("device", "auto", "auto (first GPU, else CPU), cpu, or gpu:N.",
                        flag_values=fv)


# The library's parameters whose flags are named otherwise (out: the training scripts').
FLAG_NAMES = {"weights_file": "weights", "keras_file": "keras", "out": "out", "k": "topk"}


def load(fv: flags.FlagValues, log=print):
    """:func:`ncf_tf.api.recommender.load_trained` of the model and data the flags name."""
    from ncf_tf.api.recommender import load_trained
    layers = parse_list("layers", fv.layers, int) if fv.layers is not None else None
    return load_trained(fv.saved, fv.record, fv.weights, fv.keras, fv.model, fv.num_factors,
                        layers, fv.path, fv.dataset, fv.device, log)


def define_flags() -> flags.FlagValues:
    """The flags of ``bin/recommend``, in a new FlagValues."""
    fv = flags.FlagValues()
    define_model_flags(fv)
    flags.DEFINE_string("users", None, "Comma-separated user ids: the original ids when the "
                        "data has id maps (<dataset>.user_ids.tsv), else the 0-based ids.",
                        flag_values=fv)
    flags.DEFINE_boolean("all_users", False, "Recommend to every user.", flag_values=fv)
    flags.DEFINE_string("fold_in", None, "Recommend to a new user instead: a file listing "
                        "the items they interacted with (ids separated by whitespace or "
                        "commas; raw ids when the data has id maps). Their embedding rows are "
                        "fitted to these items with the model frozen.", flag_values=fv)
    flags.DEFINE_integer("fold_in_steps", 200, "--fold_in: Adam steps.", flag_values=fv)
    flags.DEFINE_float("fold_in_lr", 0.01, "--fold_in: Adam learning rate.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "--fold_in: seed of the initial rows and the negatives.",
                         flag_values=fv)
    flags.DEFINE_integer("topk", 10, "Items per user (K).", flag_values=fv)
    flags.DEFINE_boolean("include_seen", False, "Also recommend the user's training items "
                         "(excluded by default).", flag_values=fv)
    flags.DEFINE_string("output", None, "Write to this .csv or .json file instead of stdout.",
                        flag_values=fv)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --output.", flag_values=fv)
    return fv


def run(fv: flags.FlagValues) -> None:
    """Recommends as the parsed flags say."""
    from ncf_tf.serve import recommend
    # Cheap checks first: nothing slow runs on a command that must fail.
    if (bool(fv.users) + bool(fv.all_users) + bool(fv.fold_in)) != 1:
        raise recommend.RecommendError("give either --users ID,ID,... or --all_users, or "
                                       "--fold_in FILE for a new user")
    new_items = None
    if fv.fold_in:
        from ncf_tf.serve import fold_in
        if fv.fold_in_steps < 1:
            raise recommend.RecommendError(f"--fold_in_steps must be a positive integer, got "
                                           f"{fv.fold_in_steps}")
        if not fv.fold_in_lr > 0:
            raise recommend.RecommendError(f"--fold_in_lr must be positive, got {fv.fold_in_lr}")
        new_items = fold_in.read_items(fv.fold_in, "fold_in")
    wanted = [u.strip() for u in fv.users.split(",")] if fv.users else []
    if any(not u for u in wanted):
        raise recommend.RecommendError(f"--users {fv.users!r}: expected comma-separated ids, "
                                       "found an empty one")
    if fv.topk <= 0:
        raise recommend.RecommendError(f"--topk must be a positive integer, got {fv.topk}")
    if fv.output:
        recommend.check_output(fv.output, fv.overwrite, "output")
    log = (lambda line: print(line, file=sys.stderr)) if not fv.output else print
    loaded = load(fv, log)
    num_items = loaded.dataset.num_items
    if fv.topk > num_items:
        raise recommend.RecommendError(f"--topk must be at most the number of items, "
                                       f"{num_items}, got {fv.topk}")
    from ncf_tf.train import device as devices
    if new_items is not None:
        frame, fitted = _fold_in(fv, loaded, new_items, log)
    else:
        users = (np.arange(loaded.dataset.num_users) if fv.all_users
                 else loaded.user_map.to_ncf(wanted, "--users"))
        start = time.time()
        with devices.scope(loaded.device):
            result = recommend.top_k(loaded.model, users, num_items,
                                     None if fv.include_seen else loaded.dataset.train, fv.topk)
        seconds = time.time() - start
        frame = recommend.table(result, loaded.user_map, loaded.item_map)
        if loaded.source.get("path"):
            frame = recommend.with_titles(frame, loaded.source["path"], loaded.item_map)
        log(f"Top-{fv.topk} of {num_items} items for {len(users)} users "
            f"({'training items included' if fv.include_seen else 'training items excluded'}) "
            f"[{seconds:.2f} s]")
    if not fv.output:
        sys.stdout.write(recommend.to_csv(frame))
        return
    about = {"k": fv.topk, "seen_excluded": not fv.include_seen,
             "score": "logit of the prediction layer; sigmoid(score) is the predicted "
                      "probability",
             "model": loaded.spec.as_dict(), "source": loaded.source}
    if new_items is not None:
        about["fold_in"] = fitted
    recommend.write(frame, fv.output, about, fv.overwrite, "output")
    print(f"Wrote {len(frame)} recommendations to {fv.output}")


def _fold_in(fv: flags.FlagValues, loaded, new_items: list, log):
    """The new user's recommendations (user ``new``) and what the record says of the fit."""
    from ncf_tf.serve import fold_in
    items = loaded.item_map.to_ncf(new_items, f"--fold_in {fv.fold_in}")
    start = time.time()
    result = fold_in.fold_in(loaded.model, items, loaded.dataset.num_items,
                             np.random.default_rng(fv.seed), steps=fv.fold_in_steps,
                             lr=fv.fold_in_lr)
    frame = result.table(fv.topk, not fv.include_seen, loaded.item_map)
    frame.insert(0, "user", "new")
    seconds = time.time() - start
    log(f"Fold-in of a new user from {len(result.items)} items ({fv.fold_in_steps} Adam "
        f"steps, lr {fv.fold_in_lr}; loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}); "
        f"top-{fv.topk} of {loaded.dataset.num_items} items "
        f"({'their items included' if fv.include_seen else 'their items excluded'}) "
        f"[{seconds:.2f} s]")
    return frame, {"file": fv.fold_in, "items": len(result.items), "steps": fv.fold_in_steps,
                   "lr": fv.fold_in_lr, "num_neg": fold_in.DEFAULT_NUM_NEG, "seed": fv.seed,
                   "loss_first": float(result.losses[0]), "loss_last": float(result.losses[-1])}


def main(argv: list[str] | None = None) -> int:
    """Parses ``argv`` (``argv[0]`` is the program) and runs; returns the exit code."""
    return run_command(argv, "recommend",
                       "top-K items over the whole catalogue for users of a trained GMF, "
                       "MLP or NeuMF (He et al., Neural Collaborative Filtering, WWW 2017).",
                       define_flags(), run, outputs=(("output", "in"),), backend=True,
                       names=FLAG_NAMES)
