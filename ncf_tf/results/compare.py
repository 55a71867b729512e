"""``bin/reproduce --compare runs/``: one's own GMF, MLP and NeuMF runs beside the
paper's numbers and the mean ± sd of the committed runs of the same configuration."""

from __future__ import annotations

import os

from ncf_tf.results.cells import (NCF_ORDER, Cells, cell_of, factors_of, hidden_of,
                                  is_standard, load_records, mean_sd, metric, pair, paper_of,
                                  published, setting_of)


def lines(folder: str, results: str) -> list[str]:
    """The comparison, as lines; ValueError where ``folder`` holds no finished NCF run."""
    own = sorted((r for r in load_records(folder) if r.kind == "train"),
                 key=lambda r: (NCF_ORDER.index(r.model), r.name))
    if not own:
        raise ValueError(f"folder={folder!r} holds no finished GMF, MLP or NeuMF run record")
    paper = published(os.path.join(results, "published_results.csv"))
    cells = Cells(load_records(os.path.join(results, "runs")))
    table = [("run", "HR@10", "NDCG@10", "paper HR / NDCG",
              f"{os.path.join(results, 'runs')} HR@10 (seeds)", "NDCG@10 (seeds)")]
    for record in own:
        # the committed runs are planned with the standard settings
        committed = cells.ncf.get(cell_of(record), []) if is_standard(record, lr=None) else []
        ref = paper_of(paper, record.dataset, record.model, factors_of(record),
                       setting_of(record), hidden_of(record))
        table.append((record.name, f"{record.best['hr']:.4f}", f"{record.best['ndcg']:.4f}",
                      pair(*ref, 3) if ref else "–",
                      mean_sd(metric(committed, "hr")), mean_sd(metric(committed, "ndcg"))))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [f"Your runs in {folder} beside the paper's and the committed runs' "
            "(mean ± sd over seeds; – where there is none):"] + [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in table]
