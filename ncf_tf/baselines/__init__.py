"""Baselines: the paper's (sec. 4.1) and stronger ones from later work.

Random scores give the protocol's floor. The paper's: ItemPop, ItemKNN, BPR
and eALS. Stronger baselines that later work found to match or beat NeuMF
on the paper's own protocol: MF, a dot-product MF with biases and the log
loss (Rendle et al. 2020); iALS, weighted implicit ALS (Hu et al. 2008);
EASE, the closed-form linear item-item model EASE^R (Steck 2019).

numpy/scipy models with one interface (:class:`~ncf_tf.baselines.common.Baseline`),
so that the shared evaluator scores them as it scores GMF, MLP and NeuMF::

    model = BASELINES["eALS"](num_factors=8).fit(dataset.train, rng)
    LeaveOneOutEvaluator.for_dataset(dataset).evaluate(model.score)

MF, iALS and EASE also have ``score_all(users) -> (n, num_items)`` for
:mod:`ncf_tf.eval.full_ranking`.
"""

from ncf_tf.baselines.bpr import BPR
from ncf_tf.baselines.eals import EALS
from ncf_tf.baselines.ease import EASE
from ncf_tf.baselines.ials import IALS
from ncf_tf.baselines.itemknn import ItemKNN
from ncf_tf.baselines.itempop import ItemPop
from ncf_tf.baselines.mf import MF
from ncf_tf.baselines.rand import Random

PAPER_BASELINES = ("ItemPop", "ItemKNN", "BPR", "eALS")
"""The baselines of the paper's sec. 4.1, by the paper's names."""

BASELINES = {"Random": Random, "ItemPop": ItemPop, "ItemKNN": ItemKNN, "BPR": BPR, "eALS": EALS,
             "MF": MF, "iALS": IALS, "EASE": EASE}
"""The name of each baseline -> its class."""

__all__ = ["BASELINES", "BPR", "EALS", "EASE", "IALS", "ItemKNN", "ItemPop", "MF",
           "PAPER_BASELINES", "Random"]
