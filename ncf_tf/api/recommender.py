"""``ncf_tf.Recommender``: GMF, MLP and NeuMF on pandas DataFrames, in a notebook.

    train_df, test_df = ncf_tf.leave_latest_out(df, "user", "item", "timestamp")
    rec = ncf_tf.Recommender("NeuMF", num_factors=8, layers=[64, 32, 16, 8], seed=0)
    rec.fit(train_df, user_col="user", item_col="item", epochs=20, test_df=test_df)
    rec.recommend(users, k=10); rec.evaluate(test_df); rec.save(path); rec.fold_in(items)

``fit`` trains with :func:`ncf_tf.train.experiment.run_dataset` as ``bin/train_*`` do:
the same seed gives the same per-epoch loss, HR and NDCG as the scripts.

Random streams, all from the one ``seed``: ``seed`` itself samples and
shuffles the training instances (``(seed, 2)`` for a pretrained NeuMF),
``(seed, 1)`` draws the validation split's negatives (both as the scripts);
``(seed, 3)`` a test set's negatives when ``test_df`` has no negatives
column; ``(seed, 4)`` is fold-in's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import re
import tempfile
import time
import zipfile
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ncf_tf.api import frames
from ncf_tf.api.frames import FrameError, Ids, check_integer
from ncf_tf.core import quiet, records
from ncf_tf.core.files import atomic_path, check_output_dir
from ncf_tf.data.idmap import IdMap, load_id_maps
from ncf_tf.data.loader import load_dataset_verbose, sha256
from ncf_tf.eval import metrics as M
from ncf_tf.eval.full_ranking import FullRankingEvaluator
from ncf_tf.eval.leave_one_out import LeaveOneOutEvaluator
from ncf_tf.models import layers as model_layers
from ncf_tf.models import trained, weights
from ncf_tf.models.scoring import all_item_logits
from ncf_tf.serve import export as exporting
from ncf_tf.serve import fold_in as folding
from ncf_tf.serve import recommend as serving
from ncf_tf.train import device as devices
from ncf_tf.train import experiment, training
from ncf_tf.train.config import MODELS, TrainConfig

TEST_NEGATIVES_STREAM = 3
FOLD_IN_STREAM = 4
NUM_TEST_NEGATIVES = 99   # per test line when a test DataFrame lists none (the paper's 99)

SAVED = "recommender.json"
WEIGHTS = "model.weights.h5"
TRAIN = "train.npz"
RECORD = "record.json"
FORMAT = 1

# TrainConfig fields that are fit's arguments or the API's own choice.
NOT_SETTINGS = {"model", "path", "dataset", "epochs", "selection", "validation_split",
                "pretrain", "mf_pretrain", "mlp_pretrain", "weights", "results_dir",
                "run_name", "tensorboard", "progress", "distribute", "num_factors", "layers",
                "seed"}
SETTINGS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_SETTINGS)
_DEFAULTS = TrainConfig(model="GMF")

# The embedding layers of each model, as (column prefix, user layer, item layer).
EMBEDDINGS = {"GMF": (("gmf", *trained.EMBEDDINGS["GMF"]),),
              "MLP": (("mlp", *trained.MLP_EMBEDDINGS["MLP"]),),
              "NeuMF": (("gmf", *trained.EMBEDDINGS["NeuMF"]),
                        ("mlp", *trained.MLP_EMBEDDINGS["NeuMF"]))}


def _quiet(method):
    """``method`` without TensorFlow's retracing warnings, unless ``tf_verbose``."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with quiet.retracing_hidden(not getattr(self, "tf_verbose", False)):
            return method(self, *args, **kwargs)
    return wrapper


class Recommender:
    """GMF, MLP or NeuMF (He et al., WWW 2017) trained on a DataFrame of raw ids.

    Args:
        model: ``"GMF"``, ``"MLP"`` or ``"NeuMF"`` (any case).
        num_factors: predictive factors of GMF (and NeuMF's GMF part).
        layers: the MLP tower; the first is the concatenated embedding size.
        seed: the run's only seed (see the module docstring).
        pretrain: NeuMF only, ``(gmf, mlp)``: two Recommenders fitted on the
            same users and items that NeuMF starts from (equation 13); then
            the learner is vanilla SGD unless ``learner`` is given (sec. 3.4.1).
        epochs: training epochs of :meth:`fit` when it is not given them.
        tf_verbose: show TensorFlow's retracing warnings.
        **settings: any other field of :class:`~ncf_tf.train.config.TrainConfig`
            (:data:`SETTINGS`: ``lr``, ``num_neg``, ``learner``, ...).

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an unknown model or setting, a setting out of range, or
            a device that does not exist.
    """

    def __init__(self, model: str = "NeuMF", num_factors: int = 8,
                 layers: Sequence[int] = (64, 32, 16, 8), seed: int = 0,
                 pretrain: tuple["Recommender", "Recommender"] | None = None, *,
                 epochs: int = 20, tf_verbose: bool = False, **settings):
        model = _model_name(model)
        check_integer("num_factors", num_factors, 1)
        check_integer("seed", seed, 0)
        check_integer("epochs", epochs, 0)
        _check_bool("tf_verbose", tf_verbose)
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError(f"layers must be a list of integers, got {layers!r}")
        if any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) for n in layers):
            raise TypeError(f"layers must be a list of integers, got {list(layers)!r}")
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"Recommender: unknown setting {unknown[0]!r}; expected one of "
                             f"{', '.join(SETTINGS)}")
        settings = {name: check_setting(name, value) for name, value in settings.items()}
        if pretrain is not None:
            if model != "NeuMF":
                raise ValueError(f"pretrain is for NeuMF (from a GMF and an MLP), not {model}")
            if not (isinstance(pretrain, (tuple, list)) and len(pretrain) == 2
                    and all(isinstance(r, Recommender) for r in pretrain)):
                raise ValueError("pretrain must be (gmf, mlp): two fitted Recommenders")
        self._settings = settings
        settings.setdefault("reg_layers", [0.0] * len(layers))   # no regularisation
        self.pretrain = tuple(pretrain) if pretrain is not None else None
        self.tf_verbose = tf_verbose
        self.config = TrainConfig(model=model, num_factors=int(num_factors),
                                  layers=[int(size) for size in layers], seed=int(seed),
                                  epochs=int(epochs), pretrain=pretrain is not None,
                                  **self._settings)
        with _as_arguments():
            self.config.validate()
            if model != "GMF":
                model_layers.check_layers(self.config.layers, self.config.reg_layers)
            devices.resolve(self.config.device)
        self.model = self.record = self.users = self.items = self.train = None
        self.columns = {"user": "user", "item": "item"}

    def __repr__(self) -> str:
        c = self.config
        size = {"GMF": f"num_factors={c.num_factors}", "MLP": f"layers={c.layers}",
                "NeuMF": f"num_factors={c.num_factors}, layers={c.layers}"}[c.model]
        state = (f"fitted: {self.users.count} users, {self.items.count} items"
                 if self.model is not None else "not fitted")
        return f"Recommender({c.model!r}, {size}, seed={c.seed}; {state})"

    @_quiet
    def fit(self, df: pd.DataFrame, user_col: str = "user", item_col: str = "item",
            epochs: int | None = None, *, timestamp_col: str | None = None,
            validation: str | None = None, test_df: pd.DataFrame | None = None,
            negatives_col: str = "negatives", name: str = "dataframe",
            results_dir: str | None = None, progress: bool = False,
            warm_start: bool = False,
            log: Callable[[str], None] | None = print) -> "Recommender":
        """Trains on the interactions of ``df`` (one row each, raw ids of any type).

        The epoch kept: the best validation HR with ``validation``, else the
        best test HR with ``test_df`` (the authors' choice; optimistic), else
        the last.

        Args:
            df: the training interactions.
            user_col, item_col: their columns (``test_df`` uses the same names).
            epochs: training epochs; None: the constructor's ``epochs``.
            timestamp_col: optional column of times for ``validation="latest"``
                (numbers, datetimes or date strings; a missing value: no time).
            validation: None, ``"latest"`` or ``"random"``: hold one more
                interaction per user out of ``df`` (with 99 seeded negatives).
            test_df: optional held-out rows (user, item, optionally
                ``negatives_col``; else 99 seeded negatives), evaluated at
                every epoch; its items and negatives join the catalogue.
            negatives_col: the column of ``test_df`` with the negatives.
            name: the data set's name in the run name and record.
            results_dir: None: no file is written (the run record is
                :attr:`record`); a folder: the record and checkpoint are written
                there as the scripts write them (an interrupted fit resumes),
                the weights in ``model_dir`` (default: the same folder).
            progress: a progress bar during each epoch.
            warm_start: continue from the current weights (the same users and
                items as the last fit; a fresh optimizer, the same learner).
            log: receives the scripts' progress lines; None: silent.

        Returns:
            ``self``, fitted.

        Raises:
            TypeError: an argument of the wrong type.
            ValueError: a bad DataFrame, validation, setting or folder.
        """
        epochs = self.config.epochs if epochs is None else check_integer("epochs", epochs, 0)
        _check_bool("progress", progress)
        _check_bool("warm_start", warm_start)
        for argument, value in (("user_col", user_col), ("item_col", item_col), ("name", name)):
            if not isinstance(value, str):
                raise TypeError(f"{argument} must be a column name (str), got {value!r}")
        if warm_start:
            self._check_fitted("fit(warm_start=True)")
        frames.check_columns(df, user_col, item_col, timestamp_col)
        if validation not in (None, "latest", "random"):
            raise ValueError(f"validation must be None, 'latest' or 'random', got {validation!r}")
        if results_dir is not None:
            if not isinstance(results_dir, (str, os.PathLike)):
                raise TypeError(f"results_dir must be a folder name, got {results_dir!r}")
            results_dir = os.fspath(results_dir)
            with _as_arguments():
                check_output_dir(results_dir, "results_dir")
                if self._settings.get("model_dir"):
                    check_output_dir(self._settings["model_dir"], "model_dir")
        tests, listed = {}, []
        if test_df is not None:
            frames.check_frame(test_df, {user_col: "user", item_col: "item"}, "test_df")
            tests = {"test_df": test_df}
            if negatives_col in test_df.columns:
                listed = [frames.listed_ids(test_df[negatives_col], negatives_col)]
        users = frames.ids_of("user", user_col, {"df": df})
        items = frames.ids_of("item", item_col, {"df": df, **tests}, *listed)
        if warm_start and not (users.same_as(self.users) and items.same_as(self.items)):
            raise ValueError(f"warm_start: df (with test_df) has {users.count} users x "
                             f"{items.count} items, not the fitted model's {self.users.count} x "
                             f"{self.items.count} (or other ids); fit without warm_start")
        pretrained = (_pretrained(self.pretrain, self.config, users, items)
                      if self.pretrain is not None and not warm_start else None)
        train, timestamps, lines = frames.interactions(df, user_col, item_col, users, items,
                                                       timestamp_col)
        config = dataclasses.replace(
            self.config, epochs=epochs, dataset=name, path="", progress=progress,
            selection="validation" if validation else "test",
            validation_split=validation or "latest",
            # Files only in results_dir (and model_dir, default the same folder).
            results_dir=results_dir or "",
            model_dir=self._settings.get("model_dir", results_dir) if results_dir else "",
            out=self._settings.get("out", 1) if results_dir else 0)
        with _as_arguments():
            config.validate()
        log = log or (lambda line: None)
        # A warm start's temporary weight file: removed after the run, also when it fails.
        with (tempfile.TemporaryDirectory(prefix="ncf_tf_warm_start.", ignore_cleanup_errors=True)
              if warm_start else contextlib.nullcontext()) as warm:
            if warm_start:   # the current weights, as a weight file the run starts from
                previous = self.run_name
                config = dataclasses.replace(
                    config, weights=os.path.join(warm, "warm-start.weights.h5"),
                    pretrain=False, learner=self.config.learner or self.fit_config.resolved_learner)
                weights.save_weights(self.model, config.weights)
            self.model = None   # a fit that fails leaves the Recommender unfitted
            self.users, self.items, self.train = users, items, train
            self.columns = {"user": users.column, "item": items.column}
            test_users, test_items, negatives = self._test_lines(test_df, negatives_col,
                                                                 NUM_TEST_NEGATIVES)
            dataset = frames.frame_dataset(config.dataset, train, timestamps, lines, test_users,
                                           test_items, negatives)
            log(f"DataFrame {config.dataset}: {dataset.summary()}")
            about = {"dataframe": {
                "rows": len(df), "columns": {"user": users.column, "item": items.column,
                                              "timestamp": timestamp_col},
                "test_rows": 0 if test_df is None else len(test_df),
                "test_negatives": (f"column {negatives_col!r}" if listed else
                                   f"{NUM_TEST_NEGATIVES} sampled, stream (seed, "
                                   f"{TEST_NEGATIVES_STREAM})") if test_df is not None else None,
                "sha256": frames.fingerprint(dataset)}}
            outcome = experiment.run_dataset(dataset, config, log,
                                             write_files=bool(config.results_dir),
                                             pretrained=pretrained, about_data=about)
        self.model, self.record, self.fit_config = outcome.model, outcome.record.to_dict(), config
        if outcome.record.path:
            self.record["record_file"] = outcome.record.path
        if warm_start:   # the record names the fit it continued, not the temporary weights
            said = f"warm start from {previous}"
            self.record["start_from"] = {"warm_start": previous, "weights_sha256":
                                         self.record["start_from"].get("weights_sha256")}
            self.record["config"]["weights"] = said
            self.fit_config = dataclasses.replace(self.fit_config, weights=said)
            if self.record.get("record_file"):
                stored = {k: v for k, v in self.record.items() if k != "record_file"}
                records.write_json(self.record["record_file"], stored)
        return self

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch of the last fit, indexed by epoch: ``loss``,
        ``test_hr``/``test_ndcg`` (or ``validation_*`` and the monitored
        ``test_*``; none when nothing was held out) and ``seconds``."""
        self._check_fitted("history")
        selection = self.record["selection"]
        rows, seconds = [], []
        for entry in self.record["epochs"]:
            sets = [(selection, entry)] if selection != "last" else []
            sets += sorted((entry.get("monitor") or {}).items())
            rows.append({"epoch": entry["epoch"], "loss": entry["loss"],
                         **{f"{name}_{metric}": float("nan" if values.get(metric) is None
                                                      else values[metric])
                            for name, values in sets for metric in ("hr", "ndcg")}})
            seconds.append(entry["sample_s"] + entry["train_s"] + (entry["eval_s"] or 0.0))
        frame = pd.DataFrame(rows, columns=None if rows else ["epoch", "loss"])
        frame["seconds"] = seconds
        return frame.set_index("epoch")

    @property
    def run_name(self) -> str:
        """The name of the fit's run (``<name>_<model>_..._e<epochs>_s<seed>``)."""
        self._check_fitted("run_name")
        if self.record.get("record_file"):
            return os.path.basename(self.record["record_file"])[:-len(".json")]
        config = TrainConfig(**_known_fields(self.record["config"]))
        return config.run_name or config.run_key()

    @_quiet
    def score(self, users, items, probability: bool = False) -> np.ndarray:
        """``(n,)`` float32 logits (with ``probability``, their sigmoid) of raw ids
        ``users``, ``items`` of equal lengths (or one of them a single id)."""
        self._check_fitted("score")
        _check_bool("probability", probability)
        u = self.users.encode(users, "users")
        i = self.items.encode(items, "items")
        if len(u) != len(i) and 1 not in (len(u), len(i)):
            raise ValueError(f"users and items must have equal lengths (or one id), got "
                             f"{len(u)} and {len(i)}")
        u, i = np.broadcast_arrays(u, i)
        if not len(u):
            return np.empty(0, np.float32)
        logits = np.asarray(self._score_fn()(u, i), np.float32).reshape(-1)
        return (1 / (1 + np.exp(-logits.astype(np.float64)))).astype(np.float32) \
            if probability else logits

    @_quiet
    def recommend(self, users, k: int = 10, exclude_seen: bool = True,
                  items=None) -> pd.DataFrame:
        """The ``k`` best items of each of ``users`` (raw ids) among all items, or
        among ``items`` (raw ids), each user's training items left out unless
        ``exclude_seen`` is False: DataFrame ``user, rank, item, score`` (raw ids,
        rank from 1, the logit; ties to the lower item number), users in the order given.
        """
        self._check_fitted("recommend")
        u = self.users.encode(users, "users")
        _check_k(k, self.items.count)
        exclude = self.train if exclude_seen else None
        if items is not None:
            candidates = np.unique(self.items.encode(items, "items"))
            if not len(candidates):
                raise ValueError("items: no item ids; give the candidates to rank, or None "
                                 "for all items")
            others = np.setdiff1d(np.arange(self.items.count), candidates)
            asked = np.unique(u)
            outside = sp.csr_matrix((np.ones(len(asked) * len(others), np.float32),
                                     (np.repeat(asked, len(others)),
                                      np.tile(others, len(asked)))), shape=self.train.shape)
            exclude = outside if exclude is None else (outside + exclude).tocsr()
            exclude.data[:] = 1.0
        top = serving.top_k(self.model, u, self.items.count, exclude, k)
        return serving.table(top, self.users.map, self.items.map)

    @property
    def user_factors(self) -> pd.DataFrame:
        """The user embeddings by raw id: ``gmf_0..`` (GMF), ``mlp_0..`` (MLP), or both."""
        return self._factors("user")

    @property
    def item_factors(self) -> pd.DataFrame:
        """The item embeddings, as :attr:`user_factors`."""
        return self._factors("item")

    def similar_items(self, items, k: int = 10) -> pd.DataFrame:
        """The ``k`` items most similar to each of ``items`` by the cosine of
        their :attr:`item_factors` rows, the item itself left out: DataFrame
        ``item, rank, similar_item, similarity``, ties to the lower item number."""
        return self._similar("item", items, k)

    def similar_users(self, users, k: int = 10) -> pd.DataFrame:
        """:meth:`similar_items` for users: ``user, rank, similar_user, similarity``."""
        return self._similar("user", users, k)

    @_quiet
    def export(self, path: str, k: int = 10, exclude_seen: bool = True,
               overwrite: bool = False) -> dict:
        """Writes ``bin/export``'s folder, its SavedModel on raw ids; returns the config.

        Raises:
            ValueError: not fitted; ``path`` exists (without ``overwrite``);
                ids that are neither integers nor strings.
        """
        self._check_fitted("export")
        return exporting.export(
            self.model, os.fspath(path), exclude=self.train if exclude_seen else None,
            k=k, user_ids=self.users.originals, item_ids=self.items.originals,
            about={"source": {"recommender": self.run_name, "columns": self.columns}},
            overwrite=overwrite, name="path")

    @_quiet
    def evaluate(self, test_df: pd.DataFrame, k: int = 10,
                 metrics: Sequence[str] = ("hr", "ndcg"), negatives: int | str | None = None,
                 negatives_col: str = "negatives") -> dict[str, float]:
        """Leave-one-out metrics of held-out rows (one item per row).

        Args:
            test_df: rows of (user, item) in the fit's column names; with
                ``negatives="all"`` a user's rows are ranked together
                (:mod:`ncf_tf.eval.full_ranking`).
            k: the cut-off of hr, ndcg, map, precision and recall.
            metrics: names of :data:`ncf_tf.eval.metrics.METRICS`.
            negatives: None: the ``negatives_col`` column if ``test_df`` has
                it, else 99 sampled; n: n items sampled among those the user
                has no row with (stream ``(seed, 3)``); ``"all"``: every item
                but the user's training items.

        Returns:
            ``{name: mean over the rows}`` in the order of ``metrics``.
        """
        self._check_fitted("evaluate")
        names = M.check_names(metrics)
        _check_k(k, self.items.count)
        frames.check_frame(test_df, {self.columns["user"]: "user",
                                     self.columns["item"]: "item"}, "test_df")
        if negatives == "all":
            users, items = self._encode(test_df)
            evaluator = FullRankingEvaluator.from_pairs(users, items, self.train.shape,
                                                        exclude=self.train, k=k)
            result = evaluator.evaluate_all(lambda u: np.asarray(all_item_logits(self.model, u)))
            return result.metrics(names, k)
        count = NUM_TEST_NEGATIVES if negatives is None else negatives
        column = negatives_col if negatives is None else None
        users, items, negs = self._test_lines(test_df, column, count)
        evaluation = LeaveOneOutEvaluator(users, items, negs, k).evaluate(self._score_fn())
        return evaluation.metrics(names, k)

    @_quiet
    def fold_in(self, items, k: int = 10, exclude_seen: bool = True, *,
                steps: int = folding.DEFAULT_STEPS, lr: float = folding.DEFAULT_LR,
                num_neg: int = folding.DEFAULT_NUM_NEG) -> pd.DataFrame:
        """The ``k`` best items (DataFrame ``rank, item, score``) for a new user
        whose embedding rows are fitted from raw ids ``items``, the model frozen
        (:func:`ncf_tf.serve.fold_in.fold_in`, stream ``(seed, 4)``); ``items``
        themselves left out unless ``exclude_seen`` is False."""
        self._check_fitted("fold_in")
        numbers = self.items.encode(items, "items")
        if not len(numbers):
            raise ValueError("items: no item ids; fold-in needs at least one item of the new user")
        _check_k(k, self.items.count)
        rng = np.random.default_rng([self.config.seed, FOLD_IN_STREAM])
        folded = folding.fold_in(self.model, numbers, self.items.count, rng, steps=steps,
                                 lr=lr, num_neg=num_neg)
        return folded.table(k, exclude_seen, self.items.map)

    def save(self, path: str, overwrite: bool = False) -> str:
        """Writes the fitted model to folder ``path``; returns ``path``.

        Files, each atomic: ``model.weights.h5``, ``train.npz``, ``record.json``
        and, last, ``recommender.json`` (settings, columns and the raw ids).

        Raises:
            ValueError: not fitted; ``path`` is a file, or a folder holding a
                saved Recommender without ``overwrite``; ids of another type.
        """
        self._check_fitted("save")
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"save: {path} is a file; expected a folder")
        if os.path.exists(os.path.join(path, SAVED)) and not overwrite:
            raise ValueError(f"save: {path} already holds a saved Recommender "
                             "(overwrite=True replaces it)")
        about = {"format": FORMAT, "kind": "ncf_tf.Recommender",
                 "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "config": dataclasses.asdict(self.fit_config), "columns": self.columns,
                 "users": self.users.to_json(), "items": self.items.to_json(),
                 "run_name": self.run_name}
        os.makedirs(path, exist_ok=True)
        weights.save_weights(self.model, os.path.join(path, WEIGHTS))
        with atomic_path(os.path.join(path, TRAIN), suffix=".npz") as tmp:
            np.savez(tmp, indptr=self.train.indptr, indices=self.train.indices,
                     shape=np.array(self.train.shape))
        records.write_json(os.path.join(path, RECORD), self.record)
        records.write_json(os.path.join(path, SAVED), about)
        return path

    @classmethod
    def load(cls, path: str) -> "Recommender":
        """A Recommender written by :meth:`save`: the same scores and recommendations.

        Raises:
            ValueError: no saved Recommender in ``path``; a file of it missing,
                empty or damaged (naming the file), or its files disagree.
        """
        path = os.fspath(path)
        saved = os.path.join(path, SAVED)
        if not os.path.isfile(saved):
            raise ValueError(f"load: {saved} not found; expected a folder written by "
                             "Recommender.save")
        about = _read_part(saved, path, records.read_json)
        if not isinstance(about, dict) or about.get("kind") != "ncf_tf.Recommender" \
                or about.get("format") != FORMAT:
            raise ValueError(f"load: {saved} is not a saved Recommender of format {FORMAT}")
        rec = cls.__new__(cls)
        rec._settings, rec.pretrain, rec.tf_verbose = {}, None, False
        try:
            rec.config = rec.fit_config = TrainConfig(**_known_fields(about["config"]))
            rec.columns = about["columns"]
            rec.users = Ids.from_json("user", about["users"])
            rec.items = Ids.from_json("item", about["items"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"load: {saved} is damaged ({_first_line(e)}); save the "
                             f"Recommender again, or remove {path}") from None

        def read_train(name):
            with np.load(name) as stored:
                shape = tuple(int(n) for n in stored["shape"])
                return sp.csr_matrix((np.ones(len(stored["indices"]), np.float32),
                                      stored["indices"], stored["indptr"]), shape=shape)
        rec.train = _read_part(os.path.join(path, TRAIN), path, read_train)
        shape = rec.train.shape
        if shape != (rec.users.count, rec.items.count):
            raise ValueError(f"load: {path}: the training matrix is {shape}, the id maps "
                             f"{rec.users.count} users x {rec.items.count} items")
        rec.model = experiment.build_model(rec.config, rec.users.count, rec.items.count)
        _read_part(os.path.join(path, WEIGHTS), path,
                   lambda name: weights.load_weights(rec.model, name))
        rec.record = _read_part(os.path.join(path, RECORD), path, records.read_json)
        return rec

    def _factors(self, kind: str) -> pd.DataFrame:
        self._check_fitted(f"{kind}_factors")
        ids = self.users if kind == "user" else self.items
        parts, columns = [], []
        for prefix, user_layer, item_layer in EMBEDDINGS[self.config.model]:
            layer = self.model.get_layer(user_layer if kind == "user" else item_layer)
            table = np.asarray(layer.get_weights()[0], np.float32)
            parts.append(table)
            columns += [f"{prefix}_{n}" for n in range(table.shape[1])]
        return pd.DataFrame(np.concatenate(parts, axis=1), columns=columns,
                            index=pd.Index(ids.originals, name=self.columns[kind]))

    def _similar(self, kind: str, query, k: int) -> pd.DataFrame:
        self._check_fitted(f"similar_{kind}s")
        ids = self.users if kind == "user" else self.items
        rows = ids.encode(query, f"{kind}s")
        _check_k(k, ids.count - 1, f"the number of other {kind}s")
        vectors = self._factors(kind).to_numpy(np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = vectors / np.where(norms > 0, norms, 1.0)
        similarity = unit[rows] @ unit.T
        similarity[np.arange(len(rows)), rows] = -np.inf
        order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        return pd.DataFrame({
            kind: np.repeat(ids.originals[rows], k),
            "rank": np.tile(np.arange(1, k + 1), len(rows)),
            f"similar_{kind}": ids.originals[order.reshape(-1)],
            "similarity": np.take_along_axis(similarity, order, axis=1).reshape(-1).round(6)})

    def _score_fn(self):
        """The model's pair scorer, made once per model (one per call would recompile it)."""
        if getattr(self, "_scorer", (None, None))[0] is not self.model:
            self._scorer = (self.model, training.make_score_fn(self.model))
        return self._scorer[1]

    def _check_fitted(self, method: str) -> None:
        if self.model is None:
            raise ValueError(f"{method}: the Recommender is not fitted; call fit(df) first")

    def _test_lines(self, test_df, negatives_col: str | None, count):
        """``(users, items, negatives (n, m))`` numbers of held-out rows."""
        if test_df is None:
            return frames.NO_TEST
        users, items = self._encode(test_df)
        if negatives_col is not None and negatives_col in test_df.columns:
            negatives = frames.negatives_matrix(test_df, negatives_col, self.items, "test_df")
        else:
            rng = np.random.default_rng([self.config.seed, TEST_NEGATIVES_STREAM])
            negatives = frames.sampled_negatives(self.train, users, items, count, rng, "test_df")
        return users, items, negatives

    def _encode(self, test_df) -> tuple[np.ndarray, np.ndarray]:
        return tuple(ids.encode(test_df[self.columns[kind]],
                                f"test_df: column {self.columns[kind]!r}")
                     for kind, ids in (("user", self.users), ("item", self.items)))


@dataclasses.dataclass
class Trained:
    """A trained model with its data (:func:`load_trained`)."""

    model: object
    spec: trained.ModelSpec
    dataset: object
    user_map: IdMap
    item_map: IdMap
    source: dict
    device: str
    user_ids: object = None   # the raw ids of the model's rows, typed; None: the rows
    item_ids: object = None


def load_trained(saved: str | None = None, record: str | None = None,
                 weights_file: str | None = None, keras_file: str | None = None,
                 model: str | None = None, num_factors: int | None = None,
                 layers: Sequence[int] | None = None, path: str | None = None,
                 dataset: str | None = None, device: str = "auto",
                 log: Callable[[str], None] = print) -> Trained:
    """A trained GMF, MLP or NeuMF and its data (``dataset`` in ``path``; default:
    the record's, else ml-1m in Data/), checked against each other.

    The model is a run record ``record`` (the model, its sizes, weight file and
    data unless given); a ``weights_file`` with ``model`` (``num_factors`` 8 and
    ``layers`` ``[64, 32, 16, 8]`` by default); a whole ``keras_file``; or
    ``saved`` (or a ``record`` naming its ``record.json``), a
    :meth:`Recommender.save` folder (no data files are read).

    Raises:
        ValueError: no model given, or too much; a file missing or unreadable;
            a model that does not fit the data.
    """
    error = trained.TrainedModelError
    if record and os.path.basename(record) == RECORD and os.path.isfile(
            os.path.join(os.path.dirname(os.path.abspath(record)), SAVED)):
        if saved:
            raise error("give `saved` or `record`, not both")
        return _load_saved(os.path.dirname(os.path.abspath(record)), device, log)
    if saved:
        given = [f"`{name}`" for name, value in (
            ("record", record), ("weights_file", weights_file), ("keras_file", keras_file),
            ("path", path), ("dataset", dataset), ("model", model),
            ("num_factors", num_factors), ("layers", layers)) if value is not None]
        if given:
            raise error(f"saved={saved!r} holds the model, its sizes and its data; drop "
                        f"{', '.join(given)}")
        return _load_saved(saved, device, log)
    if not (record or weights_file or keras_file):
        raise error("no model given: pass record='RUN.json', weights_file='FILE.weights.h5' "
                    "with `model`, keras_file='FILE.keras', or saved='FOLDER' (from "
                    "Recommender.save)")
    sizes = [f"`{name}`" for name, value in (("model", model), ("num_factors", num_factors),
                                             ("layers", layers)) if value is not None]
    run = spec = None
    if keras_file:
        other = [f"`{name}`" for name, value in (("record", record),
                                                 ("weights_file", weights_file)) if value]
        if other or sizes:
            raise error(f"keras_file carries its own architecture and weights; drop "
                        f"{', '.join(other + sizes)}")
    elif record:
        if sizes:
            raise error(f"{', '.join(sizes)}: the model and its sizes come from "
                        f"record={record!r}; give one or the other")
        run = trained.read_record(record)
        spec = trained.spec_from_record(run, record)
        if not (weights_file or run.get("weights_file")):
            raise error(f"record={record!r}: the run saved no weight file (out=0?); pass "
                        "`weights_file`")
        path, dataset = path or run["config"].get("path"), dataset or run["config"].get("dataset")
    elif model is None:
        raise error("model (GMF, MLP or NeuMF) is required with `weights_file` when no "
                    "`record` is given")
    else:
        spec = trained.ModelSpec(model, 8 if num_factors is None else num_factors,
                                 (64, 32, 16, 8) if layers is None else layers)
    path, name = path or _DEFAULTS.path, dataset or _DEFAULTS.dataset
    device = devices.resolve(device)
    data = load_dataset_verbose(path, name, log)
    user_map, item_map = load_id_maps(path, name, data.num_users, data.num_items)
    where = f"data set {name} in {path}"
    with devices.scope(device):
        if keras_file:
            built = trained.load_keras_model(keras_file, data.num_users, data.num_items, where)
            spec = trained.spec_of(built)
            source = {"keras": keras_file, "keras_sha256": sha256(keras_file)}
        else:
            weights_file = weights_file or run["weights_file"]
            built = trained.load_from_weights(spec, weights_file, data.num_users,
                                              data.num_items, where)
            source = {"weights": weights_file, "weights_sha256": sha256(weights_file)}
            if run is not None:
                source["record"] = record
    source.update({"path": path, "dataset": name})
    return Trained(built, spec, data, user_map, item_map, source, device,
                   typed_ids(user_map.originals), typed_ids(item_map.originals))


def _load_saved(folder: str, device: str, log) -> Trained:
    """A :meth:`Recommender.save` folder as a :class:`Trained` (ids compared as text)."""
    device = devices.resolve(device)
    with devices.scope(device):
        rec = Recommender.load(folder)
    data = frames.frame_dataset(rec.fit_config.dataset, rec.train, None, None, *frames.NO_TEST)
    log(f"Saved Recommender {folder}: {data.summary()}")
    maps = [IdMap(kind, np.array([str(v) for v in ids.originals], dtype=object), ids.count,
                  f"the {kind}s of {folder}") for kind, ids in (("user", rec.users),
                                                                ("item", rec.items))]
    return Trained(rec.model, trained.spec_of(rec.model), data, *maps,
                   {"saved": folder, "run_name": rec.run_name}, device,
                   rec.users.originals, rec.items.originals)


def typed_ids(originals):
    """Id-map ids (strings) as int64 when every one is an int64 written plainly."""
    if originals is None or np.asarray(originals).dtype.kind in "iu":
        return originals
    text = [str(v) for v in originals]
    if not all(re.fullmatch(r"0|-?[1-9][0-9]{0,18}", v) for v in text):
        return originals
    numbers = [int(v) for v in text]
    return np.array(numbers, np.int64) if all(-2**63 <= n < 2**63 for n in numbers) else originals


def _read_part(name: str, folder: str, read):
    """``read(name)`` of a saved Recommender's file; ValueError if missing, empty or damaged."""
    if not os.path.isfile(name):
        raise ValueError(f"load: {name} is missing; the folder {folder} is incomplete: save "
                         "the Recommender again")
    if os.path.getsize(name) == 0:
        raise ValueError(f"load: {name} is empty (an interrupted save?); save the "
                         f"Recommender again, or remove {folder}")
    try:
        return read(name)
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as e:
        raise ValueError(f"load: {name} is damaged ({_first_line(e)}); save the Recommender "
                         f"again, or remove {folder}") from None


def _first_line(error: Exception) -> str:
    line = (str(error).strip().splitlines() or [""])[0]
    # numpy's advice to unpickle is never the fix for a damaged file
    return re.sub(r"\s*allow_pickle.*$", "", line) or type(error).__name__


def _model_name(model) -> str:
    """``"GMF"``, ``"MLP"`` or ``"NeuMF"`` of ``model``, in any case."""
    if not isinstance(model, str):
        raise TypeError(f"model must be a str ({', '.join(MODELS)}), got {model!r}")
    name = {name.lower(): name for name in MODELS}.get(model.strip().lower())
    if name is None:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    return name


def _check_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_setting(name: str, value):
    """A setting of :data:`SETTINGS` checked for its default's type (not range), normalised."""
    default = getattr(_DEFAULTS, name)
    if name == "learner":
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"learner must be a str, got {value!r}")
        return value.strip().lower()
    if isinstance(default, bool):
        _check_bool(name, value)
        return value
    if isinstance(default, int):
        return check_integer(name, value, -2 ** 63)
    if isinstance(default, float):
        return _check_number(name, value)
    if isinstance(default, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
            raise TypeError(f"{name} must be a list of numbers, got {value!r}")
        return [_check_number(f"{name}[{n}]", v) for n, v in enumerate(value)]
    if isinstance(default, str):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be a str, got {value!r}")
        return os.fspath(value)
    return value


@contextlib.contextmanager
def _as_arguments():
    """The library's ValueErrors that name a ``--flag``, naming the Python argument instead."""
    try:
        yield
    except ValueError as error:
        raise ValueError(re.sub(r"--(\w+)", r"\1", str(error))) from None


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _check_k(k, maximum: int, what: str = "the number of items") -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer, got {k!r}")
    serving.check_k(k, maximum, what=f" ({what})")


def _pretrained(pretrain, config: TrainConfig, users: Ids, items: Ids) -> experiment.Pretrained:
    """The GMF and MLP a NeuMF starts from, checked: fitted, of its sizes, on its data."""
    gmf_rec, mlp_rec = pretrain
    for rec, model in ((gmf_rec, "GMF"), (mlp_rec, "MLP")):
        if rec.model is None:
            raise ValueError(f"pretrain: the {model} Recommender is not fitted")
        if rec.config.model != model:
            raise ValueError(f"pretrain must be (GMF, MLP), got a {rec.config.model} "
                             f"where the {model} goes")
        if not (rec.users.same_as(users) and rec.items.same_as(items)):
            raise ValueError(f"pretrain: the {model} was fit on other users or items than "
                             "this data; fit GMF, MLP and NeuMF on the same DataFrames")
    if gmf_rec.config.num_factors != config.num_factors:
        raise ValueError(f"pretrain: the GMF has num_factors {gmf_rec.config.num_factors}, "
                         f"this NeuMF {config.num_factors}")
    if list(mlp_rec.config.layers) != list(config.layers):
        raise ValueError(f"pretrain: the MLP has layers {list(mlp_rec.config.layers)}, this "
                         f"NeuMF {list(config.layers)}")
    return experiment.Pretrained(gmf_rec.model, mlp_rec.model, {
        "mf_pretrain": f"Recommender: {gmf_rec.run_name}",
        "mlp_pretrain": f"Recommender: {mlp_rec.run_name}"})


def _known_fields(values: dict) -> dict:
    """The fields of a stored config that this version's TrainConfig has."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return {name: value for name, value in values.items() if name in known}
