"""The paper's baselines (sec. 4.1): ItemPop, ItemKNN, BPR and eALS.

numpy/scipy models with one interface, so that the shared leave-one-out
evaluator scores them exactly as it scores GMF, MLP and NeuMF::

    model = BASELINES["eALS"](num_factors=8).fit(dataset.train, rng)
    LeaveOneOutEvaluator.for_dataset(dataset).evaluate(model.score)

Every class takes its hyper-parameters in ``__init__`` and has
``fit(train, rng, log) -> self``, ``score(users, items) -> (n,) scores``
(higher is better) and ``config() -> dict``.
"""

from ncf_tf.baselines.bpr import BPR
from ncf_tf.baselines.eals import EALS
from ncf_tf.baselines.itemknn import ItemKNN
from ncf_tf.baselines.itempop import ItemPop

BASELINES = {"ItemPop": ItemPop, "ItemKNN": ItemKNN, "BPR": BPR, "eALS": EALS}
"""The paper's name of each baseline -> its class."""

__all__ = ["BASELINES", "BPR", "EALS", "ItemKNN", "ItemPop"]
