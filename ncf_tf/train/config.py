"""Typed configuration of a training run, and parsing of list-valued flags
(which the authors' scripts ``eval``)."""

from __future__ import annotations

import dataclasses
import math
import os
import re


MODELS = ("GMF", "MLP", "NeuMF")
LEARNERS = ("adagrad", "adam", "rmsprop", "sgd")
"""The authors' learners (``optimizers.make_optimizer``), here to need no Keras."""
ADAM_BETAS = (0.9, 0.999)
"""Adam's betas in Keras 1, the authors'."""
ADAM_KINDS = ("dense", "deferred")
"""``make_optimizer``'s ``adam``: two computations of the same dense Adam."""
DEFER_MIN_FLOATS = 1 << 21
"""``adam="auto"`` defers when the embedding tables hold at least this many
floats: below it a dense step costs less (results/benchmark_tables.txt)."""
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
PAPER_BATCH_SIZES = (128, 256, 512, 1024)
"""The batch sizes the paper searched (sec. 4.1); larger ones are fast mode."""

PRESETS = {
    # MLPerf training v0.5's NCF (the reference of the TensorFlow Model Garden and
    # NVIDIA's NCF): ml-20m, the latest interaction of each user held out with 999
    # sampled negatives, quality target HR@10 = 0.635.
    "mlperf": {"model": "NeuMF", "num_factors": 64, "layers": [256, 256, 128, 64],
               "reg_layers": [0.0, 0.0, 0.0, 0.0], "reg_mf": 0.0, "batch_size": 1 << 20,
               "lr": 0.0045, "learner": "adam", "adam_betas": [0.25, 0.5], "num_neg": 4,
               "topk": 10},
}
"""Named configurations: ``--preset NAME`` sets these fields (flags given
explicitly still win)."""
PRESET_TARGETS = {"mlperf": 0.635}
"""The HR@10 each preset's benchmark counts as reached."""


def tower(factors: int, hidden: int = 3) -> list[int]:
    """MLP-``hidden`` for predictive factors F: ``[2^hidden F, ..., 2F, F]``
    (the paper's towers, sec. 4.1)."""
    return [factors * 2 ** (hidden - i) for i in range(hidden + 1)]


def with_preset(values: dict, preset: str, given: set[str] = frozenset()) -> dict:
    """``values`` with the fields of :data:`PRESETS` ``[preset]``, except those
    in ``given`` (set explicitly); ValueError for an unknown preset or model."""
    if not preset:
        return values
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    fields = dict(PRESETS[preset])
    model = fields.pop("model")
    if values.get("model", model) != model:
        raise ValueError(f"preset={preset!r} is for {model}, not {values['model']}")
    return {**values, **{k: v for k, v in fields.items() if k not in given}, "preset": preset}


def canonical(value: str | None, choices) -> str | None:
    """The one of ``choices`` that ``value`` names, ignoring case; ``value``
    itself when it names none (for the check to refuse)."""
    if not isinstance(value, str):
        return value
    return next((choice for choice in choices if choice.lower() == value.lower()), value)


def check_run_name(run_name: str) -> None:
    """ValueError for a run name that would leave its folder: one with a path
    separator or ``..`` (a run's files are ``<folder>/<run_name>.*``)."""
    separators = {"/", os.sep, os.altsep} - {None}
    if any(sep in run_name for sep in separators) or ".." in run_name:
        raise ValueError(f"run_name must be a plain file name (no path separator, no '..'), "
                         f"got {run_name!r}")


def parse_list(name: str, text: str, kind=float) -> list:
    """Parses ``"64,32,16,8"`` or ``"[64,32,16,8]"`` into a list of ``kind`` (int
    or float); ValueError naming ``name`` and the value for anything else."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    items = [item.strip() for item in body.split(",")] if body.strip() else []
    try:
        if kind is int and not all(re.fullmatch(r"[+-]?\d+", item) for item in items):
            raise ValueError
        return [kind(item) for item in items]
    except ValueError:
        raise ValueError(f"{name} must be a comma-separated list of "
                         f"{'integers' if kind is int else 'numbers'} such as "
                         f"[64,32,16,8], got {text!r}") from None


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; written whole into its run record.

    Defaults are the authors'. ``learner=None`` means Adam, except SGD for a
    pretrained NeuMF (paper, sec. 3.4.1); ``reg_layers=None`` one 0 per layer.
    ``model`` and ``learner`` are taken in any case.
    """

    model: str
    path: str = "Data/"
    dataset: str = "ml-1m"
    epochs: int = 100
    batch_size: int = 256
    num_factors: int = 8
    regs: list = dataclasses.field(default_factory=lambda: [0.0, 0.0])
    layers: list = dataclasses.field(default_factory=lambda: [64, 32, 16, 8])
    reg_layers: list | None = None
    reg_mf: float = 0.0
    num_neg: int = 4
    lr: float = 0.001
    learner: str | None = None
    verbose: int = 1
    out: int = 1
    pretrain: bool = False
    mf_pretrain: str = ""
    mlp_pretrain: str = ""
    alpha: float = 0.5
    pretrain_mismatch_ok: bool = False
    seed: int = 0
    topk: int = 10
    device: str = "auto"
    weights: str = ""
    model_dir: str = "runs/models/"
    results_dir: str = "runs/"
    run_name: str = ""
    tensorboard: str = ""
    progress: bool = False
    distribute: str = "none"
    selection: str = "test"
    validation_split: str = "latest"
    full_ranking: bool = False
    lazy_adam: bool = False
    adam: str = "auto"
    precision: str = "float32"
    adam_betas: list = dataclasses.field(default_factory=lambda: list(ADAM_BETAS))
    dropout: float = 0.0
    early_stop: int = 0
    preset: str = ""

    def __post_init__(self):
        self.model = canonical(self.model, MODELS)
        self.learner = canonical(self.learner, LEARNERS)
        if self.reg_layers is None:
            self.reg_layers = [0.0] * len(self.layers)

    @property
    def pretrained(self) -> bool:
        """NeuMF initialised from GMF and MLP."""
        return self.model == "NeuMF" and bool(self.pretrain or self.mf_pretrain
                                              or self.mlp_pretrain)

    @property
    def resolved_learner(self) -> str:
        return self.learner or ("sgd" if self.pretrained else "adam")

    def table_floats(self, num_users: int, num_items: int) -> int:
        """The floats of the model's embedding tables."""
        width = {"GMF": self.num_factors, "MLP": self.layers[0] // 2,
                 "NeuMF": self.num_factors + self.layers[0] // 2}[self.model]
        return (num_users + num_items) * width

    def step_flops(self) -> int:
        """A training step's FLOPs beyond the embeddings: 2 x the tower's and output
        layer's multiply-adds, forward and twice backward (input and kernel)."""
        tower = list(zip(self.layers, self.layers[1:])) if self.model != "GMF" else []
        output = {"GMF": self.num_factors, "MLP": self.layers[-1],
                  "NeuMF": self.num_factors + self.layers[-1]}[self.model]
        return 3 * 2 * self.batch_size * (sum(a * b for a, b in tower) + output)

    def resolved_adam(self, num_users: int, num_items: int) -> str:
        """``adam`` with ``"auto"`` decided (``"deferred"`` where the tables hold
        :data:`DEFER_MIN_FLOATS` or more); ``"dense"`` for another learner, lazy
        Adam and mixed precision, whose loss scaling may skip an update that
        the deferred rows were already caught up for."""
        if self.resolved_learner != "adam" or self.lazy_adam or self.precision != "float32":
            return "dense"
        if self.adam != "auto":
            return self.adam
        return ("deferred" if self.table_floats(num_users, num_items) >= DEFER_MIN_FLOATS
                else "dense")

    def fast_mode(self) -> list[str]:
        """What this run changes beyond the authors' mathematics for speed
        (empty: faithful)."""
        changes = [(self.lazy_adam, "lazy Adam (embedding rows updated only when in the batch)"),
                   (self.precision != "float32", f"{self.precision} precision"),
                   (self.batch_size > max(PAPER_BATCH_SIZES),
                    f"batch {self.batch_size} (the paper searched "
                    f"{min(PAPER_BATCH_SIZES)}..{max(PAPER_BATCH_SIZES)}), lr {self.lr:g}")]
        return [change for on, change in changes if on]

    def beyond_authors(self) -> list[str]:
        """Opt-in training aids the authors' code does not have (empty: none)."""
        betas = ", ".join(f"{b:g}" for b in self.adam_betas)
        changes = [(self.dropout, f"dropout {self.dropout:g} after each MLP layer"),
                   (self.early_stop, f"early stopping after {self.early_stop} evaluations "
                                     f"without a better HR on the {self.selection} set"),
                   (self.resolved_learner == "adam" and list(self.adam_betas) != list(ADAM_BETAS),
                    f"Adam betas {betas} (Keras 1's: 0.9, 0.999)")]
        return [change for on, change in changes if on]

    def describe(self) -> str:
        """The model part of file names, as the authors name their files."""
        tower = "-".join(str(size) for size in self.layers)
        if self.model == "GMF":
            return f"GMF_{self.num_factors}"
        if self.model == "MLP":
            return f"MLP_{tower}"
        return f"NeuMF_{self.num_factors}_{tower}" + ("_pretrain" if self.pretrained else "")

    def run_key(self) -> str:
        """The default run name: data, model and every setting that changes
        results, e.g. ``ml-1m_NeuMF_8_64-32-16-8_pretrain_e20_s0``; stable, so
        that the same command finds (and resumes) its own interrupted run."""
        d = TrainConfig(model=self.model)
        regs = (self.regs if self.model == "GMF" else self.reg_layers
                + ([self.reg_mf] if self.model == "NeuMF" else []))
        tags = [(self.pretrained and self.alpha != d.alpha, f"alpha{self.alpha:g}"),
                (self.num_neg != d.num_neg, f"neg{self.num_neg}"),
                (self.batch_size != d.batch_size, f"b{self.batch_size}"),
                (self.lr != d.lr, f"lr{self.lr:g}"),
                (self.learner, self.learner),
                (self.lazy_adam, "lazy"),
                (self.precision != d.precision, self.precision.replace("mixed_", "")),
                (list(self.adam_betas) != list(d.adam_betas),
                 "betas" + "-".join(f"{b:g}" for b in self.adam_betas)),
                (self.dropout, f"dropout{self.dropout:g}"),
                (self.early_stop, f"es{self.early_stop}"),
                (any(regs), "reg" + "-".join(f"{r:g}" for r in regs)),
                (self.weights, "from-" + os.path.basename(self.weights).split(".")[0]),
                (self.selection == "validation", f"val-{self.validation_split}")]
        return "_".join([self.dataset, self.describe(), *(tag for on, tag in tags if on),
                         f"e{self.epochs}", f"s{self.seed}"])

    def validate(self) -> None:
        """Range checks; ValueError naming the field and the value."""
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        checks = [
            ("epochs", self.epochs >= 0, "an integer >= 0"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("num_neg", self.num_neg >= 1, "an integer >= 1"),
            ("verbose", self.verbose >= 1, "an integer >= 1"),
            ("topk", self.topk >= 1, "an integer >= 1"),
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a positive finite number"),
            ("seed", self.seed >= 0, "an integer >= 0"),
            ("alpha", 0.0 <= self.alpha <= 1.0, "a number in [0, 1]"),
            ("num_factors", self.num_factors >= 1, "an integer >= 1"),
            ("reg_mf", math.isfinite(self.reg_mf) and self.reg_mf >= 0, "a finite number >= 0"),
            ("regs", len(self.regs) == 2 and all(math.isfinite(r) and r >= 0 for r in self.regs),
             "two finite numbers >= 0"),
            ("reg_layers", all(math.isfinite(r) and r >= 0 for r in self.reg_layers),
             "finite numbers >= 0"),
            ("adam_betas", len(self.adam_betas) == 2
             and all(0 <= b < 1 for b in self.adam_betas), "two numbers in [0, 1)"),
            ("dropout", 0 <= self.dropout < 1, "a number in [0, 1)"),
            ("early_stop", self.early_stop >= 0, "an integer >= 0"),
            ("selection", self.selection in ("test", "validation"), "test or validation"),
            ("validation_split", self.validation_split in ("latest", "random"),
             "latest or random"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")
        if self.learner is not None and self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {', '.join(LEARNERS)}; got {self.learner!r}")
        if self.adam not in ("auto", *ADAM_KINDS):
            raise ValueError(f"adam must be one of auto, {', '.join(ADAM_KINDS)}; "
                             f"got {self.adam!r}")
        if self.adam == "deferred" and self.precision != "float32":
            raise ValueError(f"adam='deferred' needs precision='float32', got "
                             f"{self.precision!r} (its loss scaling may skip updates)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; "
                             f"got {self.precision!r}")
        if self.dropout and self.model == "GMF":
            raise ValueError("dropout is for the MLP tower of MLP and NeuMF; GMF has none")
        if self.preset and self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.lazy_adam and self.resolved_learner != "adam":
            why = "" if self.learner else " (the default after pretraining; pass learner='adam')"
            raise ValueError(f"lazy_adam needs learner='adam', got "
                             f"{self.resolved_learner!r}{why}")
        if bool(self.mf_pretrain) != bool(self.mlp_pretrain):
            raise ValueError("mf_pretrain and mlp_pretrain must be given together")
        check_run_name(self.run_name)
        if self.pretrained and self.weights:
            raise ValueError("weights and pretrain or mf_pretrain exclude each other")
