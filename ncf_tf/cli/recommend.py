"""Command-line layer of bin/recommend, and the flags that name a trained model.

A trained model is given as one of:

* ``--record RUN.json``: a run record; the model and its sizes come from its
  configuration, the weights from its ``weights_file`` (or ``--weights``),
  the data from its ``--path``/``--dataset`` (unless given);
* ``--weights FILE.weights.h5 --model NeuMF [--num_factors 8 --layers ...]``;
* ``--keras FILE.keras``: a whole model, as ``bin/export`` writes it;
* ``--saved FOLDER``: a folder written by ``ncf_tf.Recommender.save`` (its
  weights, its raw ids and its training items; no data files are read). A
  ``--record`` naming that folder's ``record.json`` means the same.

bin/export shares these flags (:func:`define_model_flags`, :func:`load`).

Examples::

    bin/recommend --record results/runs/ml-1m_NeuMF_8_64-32-16-8_e20_s0.json --users 0,1,2
    bin/recommend --weights Pretrain/ml-1m_GMF_8_e20_s0.weights.h5 --model GMF \\
        --all_users --topk 20 --output top20.csv
    bin/recommend --record RUN.json --fold_in new_user_items.txt   # a user not in the data

With ``--fold_in FILE`` the recommendations are for a new user: FILE lists
the items they interacted with (raw ids when the data has id maps), and the
user's embedding rows are fitted to them with the model frozen
(:mod:`ncf_tf.serve.fold_in`); the output names the user ``new``.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from absl import flags

from ncf_tf.cli.command import run_command

DEFAULT_PATH, DEFAULT_DATASET = "Data/", "ml-1m"
SIZE_FLAGS = ("model", "num_factors", "layers")


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
    flags.DEFINE_string("path", None, f"Input data path (default: the record's, else "
                        f"{DEFAULT_PATH}).", flag_values=fv)
    flags.DEFINE_string("dataset", None, f"Data set name (default: the record's, else "
                        f"{DEFAULT_DATASET}).", flag_values=fv)
    flags.DEFINE_string("device", "auto", "auto (first GPU, else CPU), cpu, or gpu:N.",
                        flag_values=fv)


@dataclasses.dataclass
class Loaded:
    """A trained model with its data, as the flags named them."""

    model: object
    spec: object
    dataset: object
    user_map: object
    item_map: object
    source: dict
    device: str
    user_ids: object = None
    item_ids: object = None
    """The raw ids of the model's rows, typed (integers or strings); None: the
    rows themselves."""


def saved_folder(fv: flags.FlagValues) -> str | None:
    """The ``Recommender.save`` folder that ``--saved`` (or a ``--record`` of
    its ``record.json``) names, else None."""
    import os
    from ncf_tf.api.recommender import RECORD, SAVED
    from ncf_tf.models import trained
    if fv.record and os.path.basename(fv.record) == RECORD and os.path.isfile(
            os.path.join(os.path.dirname(os.path.abspath(fv.record)), SAVED)):
        if fv.saved:
            raise trained.TrainedModelError("give --saved or --record, not both")
        return os.path.dirname(os.path.abspath(fv.record))
    if not fv.saved:
        return None
    other = [f"--{name}" for name in ("record", "weights", "keras", "path", "dataset",
                                      *SIZE_FLAGS) if fv[name].value is not None]
    if other:
        raise trained.TrainedModelError(f"--saved {fv.saved} holds the model, its sizes and "
                                        f"its data; drop {', '.join(other)}")
    return fv.saved


def typed_ids(originals):
    """Original ids read from an id map (strings) as int64 when every one is
    a whole number that int64 holds, else as they are; None stays None."""
    import numpy as np
    if originals is None or np.asarray(originals).dtype.kind in "iu":
        return originals
    text = [str(v) for v in originals]
    try:
        numbers = [int(v) for v in text]
    except ValueError:
        return originals
    if [str(n) for n in numbers] != text or not all(-2**63 <= n < 2**63 for n in numbers):
        return originals
    return np.array(numbers, np.int64)


def _load_saved(folder: str, device: str, log) -> Loaded:
    """A ``Recommender.save`` folder as a :class:`Loaded` (ids compared as text)."""
    import numpy as np
    from ncf_tf.api import frames
    from ncf_tf.api.recommender import Recommender
    from ncf_tf.data.idmap import IdMap
    from ncf_tf.models import trained
    from ncf_tf.train import device as devices
    with devices.scope(device):
        rec = Recommender.load(folder)
    empty = np.empty(0, np.int64)
    dataset = frames.frame_dataset(rec.fit_config.dataset, rec.train, None, None, empty, empty,
                                   np.empty((0, 1), np.int64))
    log(f"Saved Recommender {folder}: {dataset.summary()}")
    maps = [IdMap(kind, np.array([str(v) for v in ids.originals], dtype=object), ids.count,
                  f"the {kind}s of {folder}") for kind, ids in (("user", rec.users),
                                                                ("item", rec.items))]
    return Loaded(rec.model, trained.spec_of(rec.model), dataset, *maps,
                  {"saved": folder, "run_name": rec.run_name}, device,
                  rec.users.originals, rec.items.originals)


def _model_source(fv: flags.FlagValues):
    """(spec or None, weights file or None, keras file or None, record or None, data path, name)."""
    from ncf_tf.models import trained
    given = [name for name in ("record", "weights", "keras") if fv[name].value]
    if not given:
        raise trained.TrainedModelError(
            "no model given: pass --record RUN.json, --weights FILE.weights.h5 with --model, "
            "--keras FILE.keras, or --saved FOLDER (from Recommender.save)")
    sizes = [f"--{name}" for name in SIZE_FLAGS if fv[name].value is not None]
    record = None
    if fv.keras:
        if fv.record or fv.weights or sizes:
            other = [f"--{n}" for n in ("record", "weights") if fv[n].value] + sizes
            raise trained.TrainedModelError(f"--keras carries its own architecture and "
                                            f"weights; drop {', '.join(other)}")
        return None, None, fv.keras, None, fv.path, fv.dataset
    if fv.record:
        if sizes:
            raise trained.TrainedModelError(
                f"{', '.join(sizes)}: the model and its sizes come from --record "
                f"{fv.record}; give one or the other")
        record = trained.read_record(fv.record)
        spec = trained.spec_from_record(record, fv.record)
        weights = fv.weights or record.get("weights_file")
        if not weights:
            raise trained.TrainedModelError(f"--record {fv.record}: the run saved no weight "
                                            "file (--out 0?); pass --weights")
        config = record["config"]
        return (spec, weights, None, record, fv.path or config.get("path"),
                fv.dataset or config.get("dataset"))
    if fv.model is None:
        raise trained.TrainedModelError("--model (GMF, MLP or NeuMF) is required with --weights "
                                        "when no --record is given")
    from ncf_tf.train.config import parse_list
    layers = parse_list("layers", fv.layers, int) if fv.layers is not None else (64, 32, 16, 8)
    spec = trained.ModelSpec(fv.model, 8 if fv.num_factors is None else fv.num_factors, layers)
    return spec, fv.weights, None, None, fv.path, fv.dataset


def load(fv: flags.FlagValues, log=print) -> Loaded:
    """Reads the data and the trained model the flags name, checked against each other."""
    saved = saved_folder(fv)
    if saved is not None:
        from ncf_tf.train import device as devices
        return _load_saved(saved, devices.resolve(fv.device), log)
    spec, weights_file, keras_file, record, path, name = _model_source(fv)
    path, name = path or DEFAULT_PATH, name or DEFAULT_DATASET
    from ncf_tf.train import device as devices
    from ncf_tf.models import trained
    from ncf_tf.data.loader import load_dataset_verbose, sha256
    from ncf_tf.data.idmap import load_id_maps
    device = devices.resolve(fv.device)
    dataset = load_dataset_verbose(path, name, log)
    user_map, item_map = load_id_maps(path, name, dataset.num_users, dataset.num_items)
    where = f"data set {name} in {path}"
    with devices.scope(device):
        if keras_file:
            model = trained.load_keras_model(keras_file, dataset.num_users, dataset.num_items,
                                             where)
            spec = trained.spec_of(model)
            source = {"keras": keras_file, "keras_sha256": sha256(keras_file)}
        else:
            model = trained.load_from_weights(spec, weights_file, dataset.num_users,
                                              dataset.num_items, where)
            source = {"weights": weights_file, "weights_sha256": sha256(weights_file)}
            if record is not None:
                source["record"] = fv.record
    source.update({"path": path, "dataset": name})
    return Loaded(model, spec, dataset, user_map, item_map, source, device,
                  typed_ids(user_map.originals), typed_ids(item_map.originals))


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
        new_items = fold_in.read_items(fv.fold_in)
    wanted = [u.strip() for u in fv.users.split(",")] if fv.users else []
    if any(not u for u in wanted):
        raise recommend.RecommendError(f"--users {fv.users!r}: expected comma-separated ids, "
                                       "found an empty one")
    if fv.topk <= 0:
        raise recommend.RecommendError(f"--topk must be a positive integer, got {fv.topk}")
    if fv.output:
        recommend.check_output(fv.output, fv.overwrite)
    log = (lambda line: print(line, file=sys.stderr)) if not fv.output else print
    loaded = load(fv, log)
    num_items = loaded.dataset.num_items
    if fv.topk > num_items:
        raise recommend.RecommendError(f"--topk must be at most the number of items, "
                                       f"{num_items}, got {fv.topk}")
    import numpy as np
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
    recommend.write(frame, fv.output, about, fv.overwrite)
    print(f"Wrote {len(frame)} recommendations to {fv.output}")


def _fold_in(fv: flags.FlagValues, loaded: Loaded, new_items: list, log):
    """The new user's recommendations (user ``new``) and what the record says of the fit."""
    import numpy as np
    from ncf_tf.data.idmap import IdMap
    from ncf_tf.serve import fold_in, recommend
    items = loaded.item_map.to_ncf(new_items, f"--fold_in {fv.fold_in}")
    start = time.time()
    result = fold_in.fold_in(loaded.model, items, loaded.dataset.num_items,
                             np.random.default_rng(fv.seed), steps=fv.fold_in_steps,
                             lr=fv.fold_in_lr)
    best, scores = result.top_k(fv.topk, exclude_seen=not fv.include_seen)
    seconds = time.time() - start
    top = recommend.TopK(np.zeros(1, np.int64), best[None], scores[None])
    frame = recommend.table(top, IdMap("user", np.array(["new"], dtype=object), 1),
                            loaded.item_map)
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
                       define_flags(), run, outputs=(("output", "in"),), backend=True)
