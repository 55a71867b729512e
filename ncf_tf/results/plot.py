"""Per-epoch curves of run records (``bin/plot_run``): loss (equation 7), HR@K, NDCG@K.

One PNG, three panels, one line per record. The x axis counts epochs trained:
the initial model at 0, the logs' "Iteration e" at e + 1; the best epoch is
starred. Matplotlib's object API: no display, no pyplot state.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ncf_tf.core.files import atomic_path
from ncf_tf.core.records import load_json


class PlotError(ValueError):
    """A run record is unusable or the output file is refused."""


@dataclasses.dataclass(frozen=True)
class Curves:
    """One run's per-epoch values; NaN where an epoch was not evaluated.

    Attributes:
        label: the legend entry.
        topk: the K of HR@K and NDCG@K.
        trained: ``(n,)`` epochs trained after each entry (``epoch + 1``).
        loss, hr, ndcg: ``(n,)`` values of each epoch.
        init_hr, init_ndcg: the initial model's, or None.
        best: epochs trained at the best epoch, or None (0: the initial model).
    """

    label: str
    topk: int
    trained: np.ndarray
    loss: np.ndarray
    hr: np.ndarray
    ndcg: np.ndarray
    init_hr: float | None
    init_ndcg: float | None
    best: int | None


def _number(value, path: str, where: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlotError(f"{path}: {where} must be a number or null, got {value!r}")
    return float(value)


def read_curves(path: str, label: str | None = None) -> Curves:
    """The curves of the run record ``path`` (``label`` defaults to its file name).

    Raises:
        PlotError: unreadable JSON, no ``epochs`` list, or an entry without an
            integer ``epoch`` or with a non-numeric ``loss``, ``hr``, ``ndcg``.
    """
    record = load_json(path, PlotError)
    epochs = record.get("epochs") if isinstance(record, dict) else None
    if not isinstance(epochs, list):
        raise PlotError(f"{path}: not a run record (expected an 'epochs' list of "
                        "{epoch, loss, hr, ndcg, ...})")
    trained, values = [], {key: [] for key in ("loss", "hr", "ndcg")}
    for number, entry in enumerate(epochs):
        where = f"epochs[{number}]"
        if not isinstance(entry, dict) or isinstance(entry.get("epoch"), bool) or \
                not isinstance(entry.get("epoch"), int):
            raise PlotError(f"{path}: {where} must be an object with an integer 'epoch'")
        trained.append(entry["epoch"] + 1)
        for key, column in values.items():
            column.append(_number(entry.get(key), path, f"{where}.{key}"))
    init = record.get("init") or {}
    init_hr, init_ndcg = (None if init.get(key) is None else _number(init[key], path, f"init.{key}")
                          for key in ("hr", "ndcg"))
    if not trained and init_hr is None:
        raise PlotError(f"{path}: nothing to plot: no epoch and no initial evaluation")
    best = record.get("best_epoch")
    return Curves(label=label or os.path.basename(path).removesuffix(".json"),
                  topk=int((record.get("config") or {}).get("topk", 10)),
                  trained=np.asarray(trained, int),
                  **{key: np.asarray(column) for key, column in values.items()},
                  init_hr=init_hr, init_ndcg=init_ndcg,
                  best=best + 1 if isinstance(best, int) and not isinstance(best, bool) else None)


def check_output(path: str, overwrite: bool = False) -> None:
    """Refuses a name not ending in .png, a missing folder, or an existing file."""
    if not path.lower().endswith(".png"):
        raise PlotError(f"--output {path}: expected a file name ending in .png")
    if os.path.exists(path) and not overwrite:
        raise PlotError(f"--output {path}: exists; refusing to replace it (--overwrite)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise PlotError(f"--output {path}: folder {folder} does not exist")


LEGEND_COLUMNS = 3
LINE_STYLES = ("-", "--", ":", "-.")
"""After the ten colours, the next ten runs are dashed, and so on."""


def figure(runs: list[Curves], title: str | None = None):
    """A matplotlib Figure with the loss, HR and NDCG panels of ``runs``, legend below."""
    # Imported here: bin/plot_run's flag errors need not wait for matplotlib.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    legend_rows = -(-len(runs) // LEGEND_COLUMNS)
    fig = Figure(figsize=(13, 4 + 0.25 * legend_rows), layout="constrained")
    panels = fig.subplots(1, 3)
    ks = sorted({run.topk for run in runs})
    k = str(ks[0]) if len(ks) == 1 else "K"
    for index, run in enumerate(runs):
        style = dict(color=f"C{index % 10}", linestyle=LINE_STYLES[index // 10 % 4])
        panels[0].plot(run.trained, run.loss, marker=".", label=run.label, **style)
        for panel, values, init in ((panels[1], run.hr, run.init_hr),
                                    (panels[2], run.ndcg, run.init_ndcg)):
            x, y = run.trained, values
            if init is not None:
                x, y = np.concatenate([[0], x]), np.concatenate([[init], y])
            shown = ~np.isnan(y)
            panel.plot(x[shown], y[shown], marker=".", **style)
            if run.best is not None and run.best in set(x[shown].tolist()):
                panel.plot([run.best], [y[x == run.best][0]], color=style["color"],
                           marker="*", markersize=14, linestyle="none")
    for panel, name in zip(panels, ("training loss", f"HR@{k}", f"NDCG@{k}")):
        panel.set_title(name)
        panel.set_xlabel("epochs trained (0: initial model)")
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.grid(alpha=0.3)
    fig.legend(*panels[0].get_legend_handles_labels(), loc="outside lower center",
               ncols=LEGEND_COLUMNS, fontsize="small", frameon=False)
    fig.suptitle(title or f"{len(runs)} run{'s' if len(runs) != 1 else ''}; "
                 "star: best epoch (test HR)")
    return fig


def plot(runs: list[Curves], path: str, title: str | None = None,
         overwrite: bool = False) -> None:
    """Draws ``runs`` into the PNG ``path``, written atomically."""
    if not runs:
        raise PlotError("no run to plot")
    check_output(path, overwrite)
    fig = figure(runs, title)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
