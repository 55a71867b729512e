"""One training run from a :class:`~ncf_tf.train.config.TrainConfig`, end to end.

Loads the data, builds the model (optionally from weights or pretrained GMF +
MLP), trains with the shared loop, saves the best weights and writes the run
record. Free of flags and argv: the scripts and the reproduction driver call
:func:`run` with a config; :func:`run_dataset` is the same run on a
:class:`~ncf_tf.data.loader.Dataset` already in memory (what ``run`` does after
reading the files, and what the Python API, ``ncf_tf.Recommender``, calls), so
the scripts and the API train on one code path.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import time
from typing import Callable

import keras
import numpy as np

from ncf_tf.train import device as devices
from ncf_tf.train import checkpoint, training
from ncf_tf.models import gmf, mlp, neumf, weights
from ncf_tf.core import records
from ncf_tf.train.config import TrainConfig
from ncf_tf.data.loader import Dataset, load_dataset_verbose, sha256
from ncf_tf.eval.leave_one_out import Evaluation, LeaveOneOutEvaluator
from ncf_tf.eval.full_ranking import FullRankingEvaluator
from ncf_tf.train.optimizers import lazy_jit_compile, make_optimizer
from ncf_tf.data.sampling import NegativeSampler
from ncf_tf.data.validation import validation_split


def build_model(config: TrainConfig, num_users: int, num_items: int) -> keras.Model:
    """The configured model with fresh, seeded initial weights."""
    if config.model == "GMF":
        return gmf.build(num_users, num_items, config.num_factors, config.regs, config.seed)
    if config.model == "MLP":
        return mlp.build(num_users, num_items, config.layers, config.reg_layers, config.seed,
                         config.dropout)
    return neumf.build(num_users, num_items, config.num_factors, config.layers,
                       config.reg_layers, config.reg_mf, config.seed, config.dropout)


PRETRAINED_STREAM = 2
"""A pretrained NeuMF samples from the stream ``(seed, 2)``; 1 is the validation split's."""


def training_stream(config: TrainConfig) -> list[int]:
    """The seed sequence of a run's sampling and shuffling.

    GMF, MLP and NeuMF from scratch use ``seed``. A pretrained NeuMF must not:
    its GMF and MLP were trained on the instances of that stream, so NeuMF
    would see again, epoch by epoch, the very negatives they already fit
    (its loss then falls until the epoch its GMF or MLP was saved at, and
    jumps when fresh negatives come). The authors' scripts draw from
    numpy's unseeded global state, independent between runs.
    """
    return [config.seed, PRETRAINED_STREAM] if config.pretrained else [config.seed]


def pretrained_run(config: TrainConfig, model: str) -> str:
    """The weight file of the newest finished ``model`` ("GMF" or "MLP") run
    in ``config.results_dir`` that a pretrained NeuMF of ``config`` starts from.

    The run must match NeuMF's data and protocol (dataset, negatives, seed,
    model selection) and its half of the model (``num_factors`` for GMF, the
    tower for MLP); a faithful NeuMF takes only faithful runs. Epochs,
    batch size and learning rate may differ.
    """
    want = {"dataset": config.dataset, "num_neg": config.num_neg, "seed": config.seed,
            "selection": config.selection}
    if config.selection == "validation":
        want["validation_split"] = config.validation_split
    if model == "GMF":
        want["num_factors"] = config.num_factors
    else:
        want["layers"] = list(config.layers)
    found = []
    for path in glob.glob(os.path.join(config.results_dir, "*.json")):
        try:
            record = records.read_json(path)
        except (OSError, ValueError):
            continue
        settings = record.get("config") or {}
        weights_file = record.get("weights_file") or ""
        if (record.get("status") == "finished" and record.get("model") == model
                and all(settings.get(name) == value for name, value in want.items())
                and (config.fast_mode() or config.beyond_authors()
                     or record.get("mode") == "faithful")
                and os.path.isfile(weights_file)):
            found.append((record.get("started", ""), weights_file))
    if not found:
        described = ", ".join(f"{name} {value}" for name, value in want.items())
        raise ValueError(f"--pretrain: no finished {model} run with {described} and its "
                         f"weights file in {config.results_dir}; train it first "
                         f"(bin/train_{model.lower()}) or pass --mf_pretrain and --mlp_pretrain")
    return max(found)[1]


def pretrained_files(config: TrainConfig) -> tuple[str, str]:
    """The GMF and MLP weight files a pretrained NeuMF starts from."""
    if config.mf_pretrain:
        return config.mf_pretrain, config.mlp_pretrain
    return pretrained_run(config, "GMF"), pretrained_run(config, "MLP")


def load_pretrained(model: keras.Model, config: TrainConfig, dataset: Dataset) -> dict:
    """Initialises NeuMF from GMF and MLP weight files (equation 13)."""
    gmf_file, mlp_file = pretrained_files(config)
    gmf_model = gmf.build(dataset.num_users, dataset.num_items, config.num_factors)
    weights.load_weights(gmf_model, gmf_file)
    mlp_model = mlp.build(dataset.num_users, dataset.num_items, config.layers, config.reg_layers)
    weights.load_weights(mlp_model, mlp_file)
    blend_into(model, gmf_model, mlp_model, config.alpha, f"{gmf_file} + {mlp_file}")
    return {"mf_pretrain": gmf_file, "mlp_pretrain": mlp_file,
            "mf_pretrain_sha256": sha256(gmf_file), "mlp_pretrain_sha256": sha256(mlp_file)}


def blend_into(model: keras.Model, gmf_model: keras.Model, mlp_model: keras.Model,
               alpha: float, source: str) -> None:
    """Sets NeuMF ``model`` from a trained GMF and MLP (equation 13, ``alpha``)."""
    blended = neumf.blend_pretrained(weights.named_weights(gmf_model),
                                     weights.named_weights(mlp_model), alpha)
    weights.assign_named_weights(model, blended, source)


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A pretrained NeuMF's GMF and MLP given as models instead of weight files.

    Attributes:
        gmf_model, mlp_model: trained on the same users and items as the NeuMF.
        about: what the run record's ``start_from`` says of them (e.g. their
            run records).
    """

    gmf_model: keras.Model
    mlp_model: keras.Model
    about: dict


def run_paths(config: TrainConfig) -> dict:
    """File paths of a run: its record, best weights and checkpoint.

    The run name is ``config.run_name`` or the stable :meth:`TrainConfig.run_key`;
    a finished record of that name is never overwritten: the new run's name
    then gets a time stamp.
    """
    name = config.run_name or config.run_key()
    if records.is_finished(os.path.join(config.results_dir, f"{name}.json")):
        name = f"{name}_{time.strftime('%Y%m%d-%H%M%S')}"
    return {"name": name,
            "record": os.path.join(config.results_dir, f"{name}.json"),
            "weights": os.path.join(config.model_dir, f"{name}.weights.h5"),
            "checkpoint": os.path.join(config.model_dir, "checkpoints", f"{name}.ckpt.npz")}


LATER_FIELDS = {"lazy_adam": False, "precision": "float32"}
"""Fields added after checkpoints were first written: left out at their
defaults, so that those checkpoints still resume."""


def resumable_config(config: TrainConfig) -> dict:
    """The part of a configuration that must match for a checkpoint to be resumed."""
    values = dataclasses.asdict(config)
    for name in ("verbose", "device", "progress", "tensorboard", "out", "distribute"):
        values.pop(name)
    for name, default in LATER_FIELDS.items():
        if values[name] == default:
            values.pop(name)
    return values


def run(config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Trains and evaluates as configured; returns the run record.

    Reads ``config.dataset`` from ``config.path`` and runs :func:`run_dataset`
    on it. Each finished epoch is checkpointed (model, optimiser, RNG, best
    so far); when a checkpoint of the same run and configuration exists, the
    run continues from it and ends as an uninterrupted run would. The
    checkpoint is removed once the run is finished.

    Raises:
        ValueError: bad configuration, data, weight or checkpoint files (the
            subclasses DataError and WeightsError among them); nothing is
            written then.
    """
    config.validate()
    # The strategy first: a multi-worker one must exist before TensorFlow's runtime starts.
    strategy = devices.distribution(config.distribute)
    device = devices.resolve(config.device)
    dataset = load_dataset_verbose(config.path, config.dataset, log)
    return run_dataset(dataset, config, log, device=device, strategy=strategy).record


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What :func:`run_dataset` returns.

    Attributes:
        record: the run record (as written, plus ``record_file`` when written).
        model: the trained model, holding the kept epoch's weights.
        state: the training loop's final :class:`~ncf_tf.train.training.TrainState`.
    """

    record: dict
    model: keras.Model
    state: training.TrainState


class NoHeldOut:
    """The evaluator of a run with no held-out data (no test lines, no
    validation split): every evaluation is NaN without scoring anything, so no
    epoch is ever "best"; :func:`run_dataset` keeps the last epoch instead."""

    def __init__(self, k: int):
        self.k = k

    def evaluate(self, score_fn) -> Evaluation:
        return Evaluation(self.k, float("nan"), float("nan"), np.empty(0, np.int64))


def run_dataset(dataset: Dataset, config: TrainConfig, log: Callable[[str], None] = print, *,
                device: str | None = None, strategy=None, write_files: bool = True,
                pretrained: Pretrained | None = None,
                about_data: dict | None = None) -> Outcome:
    """:func:`run` on a data set in memory: the same steps, record and files.

    ``config.path`` and ``config.dataset`` are not read (``config.dataset``
    still names the run). A data set without test lines (``dataset.num_test
    == 0``) is allowed here, never from files: with ``config.selection ==
    "validation"`` epochs are picked on the validation split and no test set
    is monitored; otherwise nothing is held out, every epoch is trained, the
    last one is kept and its HR/NDCG are None in the record (``selection:
    "last"``).

    Args:
        dataset: the training interactions and the test lines.
        config: the run; validated here.
        log: receives the progress lines.
        device, strategy: as resolved from ``config`` (resolved here if None).
        write_files: False: no checkpoint, no weight file and no record file
            (the record is still returned); resuming needs the files.
        pretrained: a pretrained NeuMF's GMF and MLP as models; None: from
            ``config``'s weight files (``mf_pretrain``/``mlp_pretrain`` or
            ``pretrain``'s search of ``results_dir``).
        about_data: more to say in the record's ``data`` (e.g. where an
            in-memory data set came from).

    Raises:
        ValueError: as :func:`run`; nothing is written then.
    """
    config.validate()
    if device is None:
        strategy = devices.distribution(config.distribute)
        device = devices.resolve(config.device)
    held_out = config.selection == "validation" or dataset.num_test > 0
    test = LeaveOneOutEvaluator.for_dataset(dataset, config.topk) if dataset.num_test else None
    if config.selection == "validation":
        # Its own stream (not the training one), so the split depends on the seed only.
        fit_data = validation_split(dataset, np.random.default_rng([config.seed, 1]),
                                    config.validation_split)
        log(f"Validation split ({config.validation_split}): {fit_data.summary()}")
        evaluator = LeaveOneOutEvaluator.for_dataset(fit_data, config.topk)
        monitors = {"test": test} if test is not None else {}
    elif held_out:
        fit_data, evaluator, monitors = dataset, test, {}
    else:
        if config.early_stop:
            raise ValueError("--early_stop needs held-out data to stop on (a test set or "
                             "--selection validation)")
        log("No held-out data: every epoch is trained and the last one kept "
            "(HR and NDCG below are nan)")
        fit_data, evaluator, monitors = dataset, NoHeldOut(config.topk), {}
    sampler = NegativeSampler(fit_data.train, config.num_neg)
    paths = run_paths(config) if write_files else {"name": config.run_name or config.run_key()}
    # With several workers only the chief writes the record, weights and logs; every
    # worker keeps a checkpoint of its own (restored values are not shared), which
    # on a shared folder must not be the chief's.
    chief = devices.is_chief(strategy)
    if write_files and not chief:
        task = strategy.cluster_resolver.task_id
        paths = {**paths, "checkpoint": paths["checkpoint"].replace(
            ".ckpt.npz", f".worker{task}.ckpt.npz")}
    resume_from = None
    if write_files and os.path.exists(paths["checkpoint"]):
        stored = checkpoint.read_extra(paths["checkpoint"])
        if stored.get("config") != resumable_config(config):
            raise ValueError(f"checkpoint {paths['checkpoint']} belongs to a run with another "
                             f"configuration; remove it or choose another --run_name")
        resume_from = stored
    stream = training_stream(config)
    if resume_from is not None:
        written_with = resume_from.get("training_stream", [config.seed])
        if written_with != stream:
            raise ValueError(f"checkpoint {paths['checkpoint']} was written with the sampling "
                             f"stream {written_with}, this version uses {stream}; remove it to "
                             "start the run again")

    if strategy is not None:
        device = f"{config.distribute}: {strategy.num_replicas_in_sync} replicas"
    log(f"Device: {device} (Keras backend: {keras.config.backend()})")
    fast, beyond = config.fast_mode(), config.beyond_authors()
    if fast:
        log(f"Fast mode, results differ from the authors' code: {'; '.join(fast)}")
    if beyond:
        log(f"Beyond the authors' code: {'; '.join(beyond)}")
    with devices.placement(device, strategy), training.precision(config.precision):
        model = build_model(config, dataset.num_users, dataset.num_items)
        start_from = {}
        if config.weights:
            weights.load_weights(model, config.weights)
            start_from = {"weights": config.weights, "weights_sha256": sha256(config.weights)}
        elif config.pretrained and pretrained is not None:
            blend_into(model, pretrained.gmf_model, pretrained.mlp_model, config.alpha,
                       "the pretrained GMF + MLP")
            start_from = dict(pretrained.about)
        elif config.pretrained:
            start_from = load_pretrained(model, config, dataset)
        learner = config.resolved_learner
        why = (" (vanilla SGD after pretraining, as in the paper, sec. 3.4.1)"
               if config.pretrained and not config.learner else "")
        log(f"Optimizer: {learner}, lr = {config.lr}{why}")
        training.compile_model(model, make_optimizer(learner, config.lr, config.lazy_adam,
                                                     tuple(config.adam_betas)),
                               jit_compile=lazy_jit_compile(config.lazy_adam))
        state = None
        if resume_from is not None:
            state = checkpoint.load(paths["checkpoint"], model)

        record = {
            "kind": "train", "model": config.model, "dataset": config.dataset,
            "config": dataclasses.asdict(config), "learner": learner,
            # The learner itself, not the loss-scaling wrapper of mixed_float16.
            "optimizer": type(getattr(model.optimizer, "inner_optimizer",
                                      model.optimizer)).__name__,
            "seed": config.seed, "training_stream": stream,
            "selection": config.selection if held_out else "last",
            "mode": "fast" if fast else "beyond" if beyond else "faithful",
            "fast_mode": fast, "beyond_authors": beyond, "device": device, "start_from": start_from,
            "data": {"summary": dataset.summary(), "files": dataset.files, **(about_data or {})},
            "num_params": int(model.count_params()),
            **records.environment(), "status": "running", "epochs": [],
        }
        elapsed = resume_from["elapsed_s"] if resume_from else 0.0
        if resume_from:
            record["resumed"] = resume_from.get("resumed", []) + [
                {"at_epoch": state.next_epoch, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "commit": record["git"]["commit"]}]
            record["epochs"] = [dataclasses.asdict(e) for e in state.epochs]
        run_start = time.time()
        summaries = tensorboard_writer(config.tensorboard, paths["name"]) if chief else None

        def on_epoch(entry: training.EpochLog, now: training.TrainState) -> None:
            if not held_out:   # nothing was evaluated
                entry.hr = entry.ndcg = entry.eval_s = None
            record["epochs"].append(dataclasses.asdict(entry))
            if write_files:
                checkpoint.save(paths["checkpoint"], model, now, {
                    "config": resumable_config(config), "training_stream": stream,
                    "elapsed_s": elapsed + time.time() - run_start,
                    "resumed": record.get("resumed", [])})
                if chief:
                    records.write_json(paths["record"], record)
            if summaries is not None:
                summaries(entry)

        result = training.train(
            model, sampler, evaluator, epochs=config.epochs, batch_size=config.batch_size,
            rng=np.random.default_rng(stream), verbose=config.verbose, log=log,
            on_epoch=on_epoch, resume=state, progress=config.progress, monitors=monitors,
            early_stop=config.early_stop)
        if held_out:
            model.set_weights(result.best_weights)
        if config.full_ranking and dataset.num_test:
            record["full_ranking"] = full_ranking(model, dataset, config.topk, log)

    if held_out:
        reported = result.best_monitor.get("test", result.best)
        record.update({
            "init": {"hr": result.init.hr, "ndcg": result.init.ndcg,
                     "eval_s": result.init_eval_s},
            "best_epoch": result.best_epoch,
            "best": {"hr": reported.hr, "ndcg": reported.ndcg,
                     "topk": {str(k): dict(zip(("hr", "ndcg"), reported.at(k)))
                              for k in range(1, config.topk + 1)}}})
    else:   # the last epoch is kept
        record.update({"init": {"hr": None, "ndcg": None, "eval_s": None},
                       "best_epoch": result.next_epoch - 1, "best": None})
    record.update({"wall_s": elapsed + time.time() - run_start, "status": "finished"})
    if config.selection == "validation":
        tested = [e for e in result.epochs if e.monitor]
        top = max(tested, key=lambda e: e.monitor["test"]["hr"], default=None)
        record["best_validation"] = {"hr": result.best.hr, "ndcg": result.best.ndcg}
        record["test_picked"] = ({"epoch": top.epoch, **top.monitor["test"]} if top else None)
    if not write_files:
        return Outcome(record, model, result)
    if not chief:
        if os.path.exists(paths["checkpoint"]):
            os.remove(paths["checkpoint"])
        log("Run record and weights: written by the chief (worker 0)")
        return Outcome(record, model, result)
    if config.out:
        weights.save_weights(model, paths["weights"])
        record["weights_file"] = paths["weights"]
        log(f"The best {config.model} model is saved to {paths['weights']}")
    records.write_json(paths["record"], record)
    if os.path.exists(paths["checkpoint"]):
        os.remove(paths["checkpoint"])
    record["record_file"] = paths["record"]
    log(f"Run record: {paths['record']}")
    return Outcome(record, model, result)


def full_ranking(model: keras.Model, dataset: Dataset, k: int, log) -> dict:
    """HR, NDCG and recall at ``k`` of the test items against the whole catalogue."""
    from ncf_tf.models.scoring import all_item_logits
    start = time.time()
    result = FullRankingEvaluator.for_dataset(dataset, k).evaluate_all(
        lambda users: np.asarray(all_item_logits(model, users)))
    log(f"Full ranking: HR@{k} = {result.hr:.4f}, NDCG@{k} = {result.ndcg:.4f}, "
        f"recall@{k} = {result.recall:.4f} [{time.time() - start:.1f} s]")
    return {"k": k, "hr": result.hr, "ndcg": result.ndcg, "recall": result.recall,
            "excluded": "training items"}


def tensorboard_writer(folder: str, name: str):
    """``write(epoch_log)`` logging loss, HR and NDCG to TensorBoard, or None.

    TensorFlow (and the ``tensorboard`` package its summaries need) is imported
    only here, so the JAX backend runs without it unless TensorBoard logs are
    asked for.
    """
    if not folder:
        return None
    try:
        import tensorboard  # noqa: F401  (tf.summary's scalar implementation)
        import tensorflow as tf
    except ImportError as e:
        raise ValueError(f"--tensorboard needs TensorFlow and the tensorboard package "
                         f"(pip install tensorboard): {e}") from None

    writer = tf.summary.create_file_writer(os.path.join(folder, name))

    def write(entry: training.EpochLog) -> None:
        with writer.as_default(step=entry.epoch):
            tf.summary.scalar("loss", entry.loss)
            if entry.hr is not None:
                tf.summary.scalar("hr", entry.hr)
                tf.summary.scalar("ndcg", entry.ndcg)
        writer.flush()

    return write
