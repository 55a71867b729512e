"""Fold-in measured on ml-1m: new users fitted into a frozen model, against
the same users trained with everyone else.

Beyond the paper. The experiment:

1. ``held_out`` users (600), drawn by the stream ``(seed, 3)``, lose their
   training rows, so their embedding rows never receive a gradient.
2. ``without``: the model trained on the other users; ``with``: the same
   model and seed trained on every user. Both pick the best epoch on the test
   HR of the users *not* held out, so the held-out users' test items
   influence neither.
3. ``fold_in``: the held-out users folded into ``without`` from their
   training items, ranked against their test item and 99 negatives, beside
   the same users in ``with`` and ``without``'s untouched rows (the floor).
4. ``iALS``: the same for iALS (its defaults), whose fold-in is closed form.

Each stage writes a JSON record under ``results_dir`` and is skipped once
finished. Run as ``python -m ncf_tf.serve.fold_in_experiment``
(``FOLD_IN_MODEL=GMF`` trains GMF-8 instead).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import scipy.sparse as sp

from ncf_tf.baselines.ials import IALS
from ncf_tf.core import records
from ncf_tf.data.loader import Dataset, load_dataset_verbose
from ncf_tf.data.sampling import NegativeSampler
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.models import weights
from ncf_tf.serve.fold_in import fold_in_users
from ncf_tf.train import experiment, training
from ncf_tf.train.config import TrainConfig
from ncf_tf.train.optimizers import make_optimizer


@dataclasses.dataclass(frozen=True)
class FoldInExperiment:
    """Settings of the experiment (module docstring)."""

    path: str = "Data/"
    dataset: str = "ml-1m"
    model: str = "NeuMF"
    num_factors: int = 8
    layers: tuple = (64, 32, 16, 8)
    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.001
    learner: str = "adam"
    num_neg: int = 4
    topk: int = 10
    seed: int = 0
    held_out: int = 600
    fold_in_steps: int = 200
    fold_in_lr: float = 0.01
    fold_in_num_neg: int = 4
    results_dir: str = "results/runs/fold_in/"
    model_dir: str = "Pretrain/fold_in/"

    @property
    def name(self) -> str:
        sizes = (f"{self.num_factors}" if self.model == "GMF" else
                 f"{self.num_factors}_{'-'.join(map(str, self.layers))}")
        return (f"{self.dataset}_{self.model}_{sizes}_e{self.epochs}_s{self.seed}"
                f"_heldout{self.held_out}")

    def record_path(self, stage: str) -> str:
        return os.path.join(self.results_dir, f"{self.name}_{stage}.json")

    def weights_path(self, stage: str) -> str:
        return os.path.join(self.model_dir, f"{self.name}_{stage}.weights.h5")


def held_items(dataset, held: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(row_of, item_lists)``: each user's row among ``held`` (else -1) and their items."""
    row_of = np.full(dataset.num_users, -1)
    row_of[held] = np.arange(len(held))
    train = dataset.train
    return row_of, [train.indices[train.indptr[u]:train.indptr[u + 1]] for u in held]


def held_out_users(num_users: int, count: int, seed: int) -> np.ndarray:
    """``(count,)`` sorted users drawn without replacement by the stream ``(seed, 3)``."""
    if not 0 < count < num_users:
        raise ValueError(f"held_out must be in 1..{num_users - 1}, got {count}")
    return np.sort(np.random.default_rng([seed, 3]).choice(num_users, count, replace=False))


def without_users(train: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
    """``train`` with the rows of ``users`` emptied (same shape)."""
    keep = np.ones(train.shape[0], bool)
    keep[users] = False
    return sp.csr_matrix(sp.diags(keep.astype(np.float64)) @ train)


def subset_evaluator(dataset: Dataset, users: np.ndarray, k: int) -> LeaveOneOutEvaluator:
    """The leave-one-out test lines of ``users`` only."""
    lines = np.isin(dataset.test_users, users)
    return LeaveOneOutEvaluator(dataset.test_users[lines], dataset.test_items[lines],
                                dataset.test_negatives[lines], k)


def build(settings: FoldInExperiment, num_users: int, num_items: int):
    """The model of ``settings``, with the seeded initial weights the scripts give it."""
    return experiment.build_model(TrainConfig(
        model=settings.model, num_factors=settings.num_factors, layers=list(settings.layers),
        seed=settings.seed), num_users, num_items)


def _recorded(path: str, stage: str, log) -> records.RunRecord | None:
    if records.is_finished(path):
        log(f"{stage}: already recorded in {path}")
        return records.RunRecord.load(path)
    return None


def _shared(settings: FoldInExperiment, dataset: Dataset, held: np.ndarray) -> dict:
    """The fields every stage records: seed, held-out users, data and machine."""
    return dict(beyond_paper=True, seed=settings.seed, held_out_users=held.tolist(),
                data={"summary": dataset.summary(), "files": dataset.files},
                **records.environment(), load_average=list(os.getloadavg()))


def _evaluation_dict(evaluation, k: int) -> dict:
    return {"n_users": int(len(evaluation.ranks)),
            **evaluation.metrics(k=k), "ranks": np.asarray(evaluation.ranks).tolist()}


def train_stage(settings: FoldInExperiment, dataset: Dataset, held: np.ndarray, stage: str,
                log=print) -> records.RunRecord:
    """Trains the ``with`` or ``without`` model; returns its (finished) record."""
    path = settings.record_path(stage)
    if done := _recorded(path, stage, log):
        return done
    train = dataset.train if stage == "with" else without_users(dataset.train, held)
    shared = np.setdiff1d(np.arange(dataset.num_users), held)
    selection = subset_evaluator(dataset, shared, settings.topk)
    monitors = {"held_out": subset_evaluator(dataset, held, settings.topk)}
    model = build(settings, dataset.num_users, dataset.num_items)
    training.compile_model(model, make_optimizer(settings.learner, settings.lr))
    record = records.RunRecord(
        kind="fold_in_train", stage=stage, config=dataclasses.asdict(settings),
        num_train=int(train.nnz), selection="test",
        **_shared(settings, dataset, held), status="running", epochs=[])
    start = time.time()

    def on_epoch(entry, state):
        record.epochs.append(dataclasses.asdict(entry))
        record.write(path)

    result = training.train(model, NegativeSampler(train, settings.num_neg), selection,
                            epochs=settings.epochs, batch_size=settings.batch_size,
                            rng=np.random.default_rng(settings.seed), log=log,
                            on_epoch=on_epoch, monitors=monitors)
    model.set_weights(result.best_weights)
    os.makedirs(settings.model_dir, exist_ok=True)
    weights.save_weights(model, settings.weights_path(stage))
    record.best_epoch = result.best_epoch
    record.best = {"hr": result.best.hr, "ndcg": result.best.ndcg}
    record.held_out_at_best = _evaluation_dict(result.best_monitor["held_out"], settings.topk)
    record.weights_file = settings.weights_path(stage)
    record.wall_s, record.status = time.time() - start, "finished"
    record.write(path)
    log(f"{stage}: record {path}")
    return record


def fold_in_stage(settings: FoldInExperiment, dataset: Dataset, held: np.ndarray,
                  trained_with: records.RunRecord, log=print) -> records.RunRecord:
    """Folds the held-out users into the ``without`` model; returns the record."""
    path = settings.record_path("fold_in")
    if done := _recorded(path, "fold_in", log):
        return done
    model = build(settings, dataset.num_users, dataset.num_items)
    weights.load_weights(model, settings.weights_path("without"))
    evaluator = subset_evaluator(dataset, held, settings.topk)
    row_of, item_lists = held_items(dataset, held)
    start = time.time()
    folded = fold_in_users(model, item_lists, dataset.num_items,
                           np.random.default_rng([settings.seed, 4]),
                           steps=settings.fold_in_steps, num_neg=settings.fold_in_num_neg,
                           lr=settings.fold_in_lr)
    fold_s = time.time() - start
    result = evaluator.evaluate(lambda u, i: folded.scores[row_of[u], i])
    untouched = evaluator.evaluate(training.make_score_fn(model))
    record = records.RunRecord(
        kind="fold_in", config=dataclasses.asdict(settings),
        fold_in={"steps": settings.fold_in_steps, "lr": settings.fold_in_lr,
                 "num_neg": settings.fold_in_num_neg, "optimizer": folded.optimizer,
                 "rng": [settings.seed, 4], "seconds": fold_s,
                 "loss_first": float(folded.losses[0].mean()),
                 "loss_last": float(folded.losses[-1].mean())},
        folded_in=_evaluation_dict(result, settings.topk),
        trained_with=trained_with.held_out_at_best,
        untouched_rows=_evaluation_dict(untouched, settings.topk),
        records={"with": settings.record_path("with"),
                 "without": settings.record_path("without")},
        **_shared(settings, dataset, held), wall_s=time.time() - start, status="finished")
    record.write(path)
    log(f"fold_in: record {path}")
    return record


def ials_stage(settings: FoldInExperiment, dataset: Dataset, held: np.ndarray,
               log=print) -> records.RunRecord:
    """iALS fitted without and with the held-out users, folded into the first."""
    path = os.path.join(settings.results_dir,
                        f"{settings.dataset}_iALS_s{settings.seed}_heldout{settings.held_out}"
                        "_fold_in.json")
    if done := _recorded(path, "iALS fold_in", log):
        return done
    evaluator = subset_evaluator(dataset, held, settings.topk)
    row_of, item_lists = held_items(dataset, held)
    start = time.time()
    without = IALS().fit(without_users(dataset.train, held),
                         np.random.default_rng(settings.seed), log)
    fit_s = time.time() - start
    folded = fold_in_users(without, item_lists, dataset.num_items)
    fold_s = time.time() - start - fit_s
    folded_in = evaluator.evaluate(lambda u, i: folded.scores[row_of[u], i])
    trained_with = evaluator.evaluate(
        IALS().fit(dataset.train, np.random.default_rng(settings.seed), log).score)
    record = records.RunRecord(
        kind="fold_in", model="iALS",
        config={**IALS().config(), "held_out": settings.held_out, "topk": settings.topk,
                "dataset": settings.dataset, "path": settings.path},
        fold_in={"optimizer": folded.optimizer, "seconds": fold_s}, fit_without_s=fit_s,
        folded_in=_evaluation_dict(folded_in, settings.topk),
        trained_with=_evaluation_dict(trained_with, settings.topk),
        **_shared(settings, dataset, held), wall_s=time.time() - start, status="finished")
    record.write(path)
    log(f"iALS fold_in: record {path}")
    return record


def run(settings: FoldInExperiment = FoldInExperiment(), log=print,
        ials: bool = True) -> dict:
    """Every stage that is not recorded yet; returns the fold-in record(s)."""
    os.makedirs(settings.results_dir, exist_ok=True)
    dataset = load_dataset_verbose(settings.path, settings.dataset, log)
    held = held_out_users(dataset.num_users, settings.held_out, settings.seed)
    train_stage(settings, dataset, held, "without", log)
    trained_with = train_stage(settings, dataset, held, "with", log)
    results = {settings.model: fold_in_stage(settings, dataset, held, trained_with, log)}
    if ials:
        results["iALS"] = ials_stage(settings, dataset, held, log)
    k = settings.topk
    for model, record in results.items():
        for name in ("folded_in", "trained_with", "untouched_rows"):
            r = getattr(record, name)
            if r is not None:
                log(f"{model} {name}: HR@{k} = {r['hr']:.4f}, NDCG@{k} = {r['ndcg']:.4f} "
                    f"({r['n_users']} users)")
    return results


if __name__ == "__main__":
    model = os.environ.get("FOLD_IN_MODEL", "NeuMF")
    run(FoldInExperiment(model=model))
