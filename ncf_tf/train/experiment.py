"""One training run from a :class:`~ncf_tf.train.config.TrainConfig`, end to end:
the model (fresh, from weights or from a pretrained GMF + MLP), the shared
training loop, the best weights and the run record. :func:`run` reads the data
files; :func:`run_dataset` takes a data set in memory (as ``ncf_tf.Recommender``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import time
from typing import Callable

import keras
import numpy as np

from ncf_tf.core import records
from ncf_tf.data.loader import Dataset, load_dataset_verbose, sha256
from ncf_tf.data.sampling import NegativeSampler
from ncf_tf.data.validation import validation_split
from ncf_tf.eval.full_ranking import FullRankingEvaluator
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.models import gmf, mlp, neumf, weights
from ncf_tf.models.scoring import all_item_logits
from ncf_tf.train import checkpoint, training
from ncf_tf.train import device as devices
from ncf_tf.train.config import TrainConfig
from ncf_tf.train.optimizers import make_optimizer


def build_model(config: TrainConfig, num_users: int, num_items: int) -> keras.Model:
    """The configured model with fresh, seeded initial weights."""
    if config.model == "GMF":
        return gmf.build(num_users, num_items, config.num_factors, config.regs, config.seed)
    if config.model == "MLP":
        return mlp.build(num_users, num_items, config.layers, config.reg_layers, config.seed,
                         config.dropout)
    return neumf.build(num_users, num_items, config.num_factors, config.layers,
                       config.reg_layers, config.reg_mf, config.seed, config.dropout)


VALIDATION_STREAM = 1
"""The validation split draws from ``[seed, 1]``."""
PRETRAINED_STREAM = 2
"""A pretrained NeuMF samples and shuffles from ``[seed, 2]``."""


def training_stream(config: TrainConfig) -> list[int]:
    """The seed sequence of a run's sampling and shuffling: ``[seed]``, or
    ``[seed, PRETRAINED_STREAM]`` for a pretrained NeuMF, which would otherwise
    see again the very negatives its GMF and MLP fit (the authors' scripts draw
    from numpy's unseeded global state)."""
    return [config.seed, PRETRAINED_STREAM] if config.pretrained else [config.seed]


def pretrained_run(config: TrainConfig, model: str) -> records.RunRecord:
    """The newest finished ``model`` ("GMF" or "MLP") run in ``config.results_dir``
    with its weight file that matches a pretrained NeuMF's data, protocol and
    half of the model (``num_factors`` or the tower); faithful for a faithful NeuMF."""
    split = config.selection == "validation"
    want = {"dataset": config.dataset, "num_neg": config.num_neg, "seed": config.seed,
            "selection": config.selection,
            **({"validation_split": config.validation_split} if split else {}),
            **({"num_factors": config.num_factors} if model == "GMF"
               else {"layers": list(config.layers)})}
    found = []
    for path in glob.glob(os.path.join(config.results_dir, "*.json")):
        try:
            record = records.RunRecord.load(path)
        except (OSError, ValueError):
            continue
        if (record.status == "finished" and record.model == model
                and all(record.config.get(name) == value for name, value in want.items())
                and (config.fast_mode() or config.beyond_authors() or record.mode == "faithful")
                and os.path.isfile(record.weights_file or "")):
            found.append((record.started or "", path, record))
    if not found:
        described = ", ".join(f"{name} {value}" for name, value in want.items())
        raise ValueError(f"pretrain: no finished {model} run with {described} and its "
                         f"weights file in {config.results_dir}; train it first "
                         f"(bin/train_{model.lower()}) or pass `mf_pretrain` and `mlp_pretrain`")
    return max(found, key=lambda entry: entry[:2])[2]


PAIRED_SETTINGS = ("epochs", "batch_size", "lr", "learner", "adam_betas", "lazy_adam",
                   "precision", "early_stop", "verbose")
"""What the GMF and MLP runs a pretrained NeuMF blends must share (beyond
what :func:`pretrained_run` matches): they are trained alike."""


def pretrained_files(config: TrainConfig, log: Callable[[str], None] = print) -> tuple[str, str]:
    """The GMF and MLP weight files a pretrained NeuMF starts from. Runs found by
    ``pretrain`` must agree on :data:`PAIRED_SETTINGS`: else ValueError, or with
    ``config.pretrain_mismatch_ok`` a warning line."""
    if config.mf_pretrain:
        return config.mf_pretrain, config.mlp_pretrain
    gmf_run, mlp_run = pretrained_run(config, "GMF"), pretrained_run(config, "MLP")
    differ = [f"{name} {gmf_run.config.get(name)} and {mlp_run.config.get(name)}"
              for name in PAIRED_SETTINGS
              if gmf_run.config.get(name) != mlp_run.config.get(name)]
    if differ:
        what = (f"the GMF run {gmf_run.name} and the MLP run {mlp_run.name} differ in "
                f"{', '.join(differ)}")
        if not config.pretrain_mismatch_ok:
            raise ValueError(f"pretrain: {what}; train them alike, or set "
                             "pretrain_mismatch_ok to blend them anyway")
        log(f"Warning: {what}; blended as pretrain_mismatch_ok asks")
    return gmf_run.weights_file, mlp_run.weights_file


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A pretrained NeuMF's GMF and MLP as models (on the NeuMF's users and
    items); ``about`` is the record's ``start_from``, ``source`` names them in errors."""

    gmf_model: keras.Model
    mlp_model: keras.Model
    about: dict
    source: str = "the pretrained GMF + MLP"


def load_pretrained(config: TrainConfig, dataset: Dataset,
                    log: Callable[[str], None] = print) -> Pretrained:
    """The GMF and MLP of :func:`pretrained_files`, loaded."""
    gmf_file, mlp_file = pretrained_files(config, log)
    log(f"Pretrained GMF: {gmf_file}")
    log(f"Pretrained MLP: {mlp_file}")
    gmf_model = gmf.build(dataset.num_users, dataset.num_items, config.num_factors)
    weights.load_weights(gmf_model, gmf_file)
    mlp_model = mlp.build(dataset.num_users, dataset.num_items, config.layers, config.reg_layers)
    weights.load_weights(mlp_model, mlp_file)
    return Pretrained(gmf_model, mlp_model, {
        "mf_pretrain": gmf_file, "mlp_pretrain": mlp_file,
        "mf_pretrain_sha256": sha256(gmf_file), "mlp_pretrain_sha256": sha256(mlp_file)},
        f"{gmf_file} + {mlp_file}")


@dataclasses.dataclass
class RunFiles:
    """The files of a run, owned by this process for the run's life: ``name``
    is ``config.run_name`` or :meth:`TrainConfig.run_key` (time-stamped when a
    finished record has it), ``owner`` the lock on it
    (:func:`ncf_tf.core.records.own_run`), ``chief`` whether this process
    writes the record and weights."""

    name: str
    record: str
    weights: str
    checkpoint: str
    owner: records.RunOwner
    chief: bool = True

    @classmethod
    def own(cls, config: TrainConfig, strategy=None) -> "RunFiles":
        """Takes the run's name for this process (RunBusyError if another has
        it). Every worker keeps (and owns) a checkpoint of its own: restored
        values are not shared, and on a shared folder it must not be the chief's."""
        chief = devices.is_chief(strategy)
        suffix = "" if chief else f".worker{strategy.cluster_resolver.task_id}"
        owner = records.own_run(config.results_dir, config.run_name or config.run_key(), suffix)
        name = owner.name
        return cls(name, os.path.join(config.results_dir, f"{name}.json"),
                   os.path.join(config.model_dir, f"{name}.weights.h5"),
                   os.path.join(config.model_dir, "checkpoints", f"{name}{suffix}.ckpt.npz"),
                   owner, chief)

    def resumable(self, config: TrainConfig) -> dict | None:
        """The checkpoint's metadata when there is one to resume from; ValueError
        when it belongs to another configuration or sampling stream."""
        if not os.path.exists(self.checkpoint):
            return None
        stored = checkpoint.read_extra(self.checkpoint)
        if stored.get("config") != resumable_config(config):
            raise ValueError(f"checkpoint {self.checkpoint} belongs to a run with another "
                             f"configuration; remove it or choose another run_name")
        written_with, stream = stored.get("training_stream", [config.seed]), training_stream(config)
        if written_with != stream:
            raise ValueError(f"checkpoint {self.checkpoint} was written with the sampling "
                             f"stream {written_with}, this version uses {stream}; remove it to "
                             "start the run again")
        return stored


LATER_FIELDS = {"lazy_adam": False, "precision": "float32", "pretrain_mismatch_ok": False,
                "adam": "dense"}
"""Fields added after checkpoints were first written: left out at their
defaults, so that those checkpoints still resume."""
UNCHECKED = ("verbose", "device", "progress", "tensorboard", "out", "distribute")
"""Fields a resumed run may change."""


def resumable_config(config: TrainConfig) -> dict:
    """The part of a configuration that must match for a checkpoint to be resumed."""
    return {name: value for name, value in dataclasses.asdict(config).items()
            if name not in UNCHECKED and (name not in LATER_FIELDS or value != LATER_FIELDS[name])}


class DivergedError(RuntimeError):
    """A run whose loss or weights stopped being finite; its ``record`` is
    kept with ``status: "diverged"``. Not bad input: the scripts exit with 1."""

    def __init__(self, message: str, record: records.RunRecord):
        super().__init__(message)
        self.record = record


def run(config: TrainConfig, log: Callable[[str], None] = print) -> records.RunRecord:
    """Trains and evaluates as configured (:func:`run_dataset` on
    ``config.dataset`` read from ``config.path``); returns the run record.

    Each finished epoch is checkpointed (until the run ends); a run whose
    checkpoint exists continues from it and ends as if uninterrupted.

    Raises:
        ValueError: bad configuration, data, weight or checkpoint files, or another
            process owns the run's name (RunBusyError); nothing is written then.
        DivergedError: the loss or weights stopped being finite.
    """
    config.validate()
    # The strategy first: a multi-worker one must exist before TensorFlow's runtime starts.
    strategy = devices.distribution(config.distribute)
    device = devices.resolve(config.device)
    dataset = load_dataset_verbose(config.path, config.dataset, log)
    return run_dataset(dataset, config, log, device=device, strategy=strategy).record


@dataclasses.dataclass(frozen=True)
class Outcome:
    """:func:`run_dataset`'s result; ``model`` holds the kept epoch's weights."""

    record: records.RunRecord
    model: keras.Model


@dataclasses.dataclass
class HeldOut:
    """What a run trains on (``fit_data``: less a validation split, if any) and
    picks its epoch on (``evaluator``, None when nothing is held out), the sets
    evaluated beside it (``monitors``) and ``selection`` (``test``,
    ``validation`` or ``last``)."""

    fit_data: Dataset
    evaluator: LeaveOneOutEvaluator | None
    monitors: dict
    selection: str

    @classmethod
    def plan(cls, dataset: Dataset, config: TrainConfig, log) -> "HeldOut":
        test = LeaveOneOutEvaluator.for_dataset(dataset, config.topk) if dataset.num_test else None
        if config.selection == "validation":
            # Its own stream (not the training one), so the split depends on the seed only.
            rng = np.random.default_rng([config.seed, VALIDATION_STREAM])
            fit_data = validation_split(dataset, rng, config.validation_split)
            log(f"Validation split ({config.validation_split}): {fit_data.summary()}")
            return cls(fit_data, LeaveOneOutEvaluator.for_dataset(fit_data, config.topk),
                       {"test": test} if test is not None else {}, "validation")
        if test is not None:
            return cls(dataset, test, {}, "test")
        if config.early_stop:
            raise ValueError("early_stop needs held-out data to stop on (a test set or "
                             "selection='validation')")
        log("No held-out data: every epoch is trained and the last one kept")
        return cls(dataset, None, {}, "last")


def run_dataset(dataset: Dataset, config: TrainConfig, log: Callable[[str], None] = print, *,
                device: str | None = None, strategy=None, write_files: bool = True,
                pretrained: Pretrained | None = None,
                about_data: dict | None = None) -> Outcome:
    """:func:`run` on a data set in memory: the same steps, record and files.

    ``config.path`` is not read (``config.dataset`` still names the run). A
    data set without test lines is allowed: epochs are then picked on the
    validation split or, without one, the last is kept (``selection: "last"``).

    Args:
        device, strategy: as resolved from ``config`` (resolved here if None).
        write_files: False: no checkpoint, weight or record file (the record
            is still returned).
        pretrained: a pretrained NeuMF's GMF and MLP; None: ``config``'s files.
        about_data: more to say in the record's ``data``.

    Raises:
        ValueError, DivergedError: as :func:`run`; nothing is written on a ValueError.
    """
    config.validate()
    config = dataclasses.replace(config, adam=config.resolved_adam(dataset.num_users,
                                                                   dataset.num_items))
    if device is None:
        strategy = devices.distribution(config.distribute)
        device = devices.resolve(config.device)
    held_out = HeldOut.plan(dataset, config, log)
    sampler = NegativeSampler(held_out.fit_data.train, config.num_neg)
    if strategy is not None:
        devices.check_split(strategy, config.batch_size,
                            len(sampler.pos_users) * (1 + config.num_neg))
    files = RunFiles.own(config, strategy) if write_files else None
    try:
        resume_from = files.resumable(config) if files else None
        device = announce(config, device, strategy, log)
        with devices.placement(device, strategy), training.precision(config.precision):
            model, start_from = build_and_load(config, dataset, pretrained, log)
            recorder = Recorder(config, files, new_record(config, model, held_out, device,
                                                          start_from, dataset, about_data),
                                model, resume_from)
            result = training.train(
                model, sampler, held_out.evaluator, epochs=config.epochs,
                batch_size=config.batch_size, rng=np.random.default_rng(training_stream(config)),
                verbose=config.verbose, log=log, on_epoch=recorder.on_epoch,
                resume=recorder.resumed, progress=config.progress, monitors=held_out.monitors,
                early_stop=config.early_stop)
            if held_out.evaluator is not None and result.diverged is None:
                model.set_weights(result.best_weights)
            if config.full_ranking and dataset.num_test and result.diverged is None:
                recorder.record.full_ranking = full_ranking(model, dataset, config.topk, log)
        recorder.finish(result, held_out, log)
    finally:
        if files is not None:
            files.owner.release()
    return Outcome(recorder.record, model)


def announce(config: TrainConfig, device: str, strategy, log) -> str:
    """Logs the device and the run's mode; returns the device as the record names it."""
    if strategy is not None:
        device = f"{config.distribute}: {strategy.num_replicas_in_sync} replicas"
    log(f"Device: {device} (Keras backend: {keras.config.backend()})")
    if config.fast_mode():
        log(f"Fast mode, results differ from the authors' code: {'; '.join(config.fast_mode())}")
    if config.beyond_authors():
        log(f"Beyond the authors' code: {'; '.join(config.beyond_authors())}")
    return device


def build_and_load(config: TrainConfig, dataset: Dataset, pretrained: Pretrained | None,
                   log) -> tuple[keras.Model, dict]:
    """The compiled model (fresh, from ``config.weights`` or a pretrained GMF +
    MLP) and the record's ``start_from``."""
    model = build_model(config, dataset.num_users, dataset.num_items)
    start_from = {}
    if config.weights:
        weights.load_weights(model, config.weights)
        start_from = {"weights": config.weights, "weights_sha256": sha256(config.weights)}
    elif config.pretrained:   # equation 13
        pretrained = pretrained or load_pretrained(config, dataset, log)
        blended = neumf.blend_pretrained(weights.named_weights(pretrained.gmf_model),
                                         weights.named_weights(pretrained.mlp_model), config.alpha)
        weights.assign_named_weights(model, blended, pretrained.source)
        start_from = dict(pretrained.about)
    why = (" (vanilla SGD after pretraining, as in the paper, sec. 3.4.1)"
           if config.pretrained and not config.learner else "")
    log(f"Optimizer: {config.resolved_learner}, lr = {config.lr}{why}")
    training.compile_model(model, make_optimizer(config.resolved_learner, config.lr,
                                                 config.lazy_adam, tuple(config.adam_betas),
                                                 config.adam))
    return model, start_from


def new_record(config: TrainConfig, model: keras.Model, held_out: HeldOut, device: str,
               start_from: dict, dataset: Dataset, about_data: dict | None) -> records.RunRecord:
    """The record of a run about to start."""
    fast, beyond = config.fast_mode(), config.beyond_authors()
    return records.RunRecord(
        kind="train", model=config.model, dataset=config.dataset,
        config=dataclasses.asdict(config), learner=config.resolved_learner,
        # The learner itself, not the loss-scaling wrapper of mixed_float16.
        optimizer=type(getattr(model.optimizer, "inner_optimizer", model.optimizer)).__name__,
        seed=config.seed, training_stream=training_stream(config), selection=held_out.selection,
        mode="fast" if fast else "beyond" if beyond else "faithful", fast_mode=fast,
        beyond_authors=beyond, device=device, start_from=start_from,
        data={"summary": dataset.summary(), "files": dataset.files, **(about_data or {})},
        num_params=int(model.count_params()), **records.environment(), status="running",
        epochs=[])


class Recorder:
    """Keeps a run's record, checkpoint and TensorBoard logs as its epochs end;
    ``resumed``: the checkpoint's state when the run continues one."""

    def __init__(self, config: TrainConfig, files: RunFiles | None,
                 record: records.RunRecord, model: keras.Model, resume_from: dict | None):
        self.config, self.files, self.record, self.model = config, files, record, model
        self.name = files.name if files else config.run_name or config.run_key()
        self.resumed, self.elapsed = None, resume_from["elapsed_s"] if resume_from else 0.0
        if resume_from is not None:
            self.resumed = checkpoint.load(files.checkpoint, model)
            record.resumed = resume_from.get("resumed", []) + [
                {"at_epoch": self.resumed.next_epoch,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": record.git["commit"]}]
            record.epochs = [dataclasses.asdict(e) for e in self.resumed.epochs]
        self.start = time.time()
        self.summaries = (tensorboard_writer(config.tensorboard, self.name)
                          if files is None or files.chief else None)

    def on_epoch(self, entry: training.EpochLog, state: training.TrainState) -> None:
        if self.record.selection == "last":   # nothing was evaluated
            entry.hr = entry.ndcg = entry.eval_s = None
        self.record.epochs.append(dataclasses.asdict(entry))
        if self.files is not None:
            checkpoint.save(self.files.checkpoint, self.model, state, {
                "config": resumable_config(self.config),
                "training_stream": training_stream(self.config),
                "elapsed_s": self.elapsed + time.time() - self.start,
                "resumed": self.record.resumed or []})
            if self.files.chief:
                self.record.write(self.files.record)
        if self.summaries is not None:
            self.summaries(entry)

    def finish(self, result: training.TrainState, held_out: HeldOut, log) -> None:
        """Completes the record from ``result``, writes it and the weights,
        removes the checkpoint; DivergedError when training diverged."""
        record, files = self.record, self.files
        record.wall_s = self.elapsed + time.time() - self.start
        if result.diverged is None:
            self.complete(result, held_out)
        else:
            record.epochs.append(dataclasses.asdict(result.diverged))
            record.status = "diverged"
            record.diverged = {"epoch": result.diverged.epoch, "loss": result.diverged.loss,
                               "why": "the loss or a weight was not a finite number after "
                                      "this epoch; training stopped there"}
        if files is not None and files.chief:
            if self.config.out and result.diverged is None:
                weights.save_weights(self.model, files.weights)
                record.weights_file = files.weights
                log(f"The best {self.config.model} model is saved to {files.weights}")
            record.write(files.record)
        if files is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(files.checkpoint)
            log(f"Run record: {files.record}" if files.chief
                else "Run record and weights: written by the chief (worker 0)")
        if result.diverged is not None:
            kept = f"; its record says so: {files.record}" if files and files.chief else ""
            raise DivergedError(f"run {self.name} diverged at epoch {result.diverged.epoch} "
                                f"(loss = {result.diverged.loss}){kept}", record)

    def complete(self, result: training.TrainState, held_out: HeldOut) -> None:
        """The finished record's results: the kept epoch and its HR/NDCG."""
        record, topk = self.record, self.config.topk
        record.status = "finished"
        if held_out.evaluator is None:   # the last epoch is kept
            record.init = {"hr": None, "ndcg": None, "eval_s": None}
            record.best_epoch, record.best = result.next_epoch - 1, None
            return
        reported = result.best_monitor.get("test", result.best)
        record.init = {"hr": result.init.hr, "ndcg": result.init.ndcg,
                       "eval_s": result.init_eval_s}
        record.best_epoch = result.best_epoch
        record.best = {"hr": reported.hr, "ndcg": reported.ndcg,
                       "topk": {str(k): dict(zip(("hr", "ndcg"), reported.at(k)))
                                for k in range(1, topk + 1)}}
        if held_out.selection == "validation":
            tested = [e for e in result.epochs if e.monitor]
            top = max(tested, key=lambda e: e.monitor["test"]["hr"], default=None)
            record.best_validation = {"hr": result.best.hr, "ndcg": result.best.ndcg}
            record.test_picked = {"epoch": top.epoch, **top.monitor["test"]} if top else None


def full_ranking(model: keras.Model, dataset: Dataset, k: int, log) -> dict:
    """HR, NDCG and recall at ``k`` of the test items against the whole catalogue."""
    start = time.time()
    result = FullRankingEvaluator.for_dataset(dataset, k).evaluate_all(
        lambda users: np.asarray(all_item_logits(model, users)))
    log(f"Full ranking: HR@{k} = {result.hr:.4f}, NDCG@{k} = {result.ndcg:.4f}, "
        f"recall@{k} = {result.recall:.4f} [{time.time() - start:.1f} s]")
    return {"k": k, "hr": result.hr, "ndcg": result.ndcg, "recall": result.recall,
            "excluded": "training items"}


def tensorboard_writer(folder: str, name: str):
    """``write(epoch_log)`` logging loss, HR and NDCG to TensorBoard, or None
    (TensorFlow is imported only here: JAX runs need it only for these logs)."""
    if not folder:
        return None
    try:
        import tensorboard  # noqa: F401  (tf.summary's scalar implementation)
        import tensorflow as tf
    except ImportError as e:
        raise ValueError(f"tensorboard needs TensorFlow and the tensorboard package "
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
