"""results/README.md is computed from records: mean ± sd, n, paper and Δ."""

import os

from ncf_tf import report
from ncf_tf.records import write_json


def record(seed, hr, ndcg, pretrain=True):
    return {"kind": "train", "status": "finished", "model": "NeuMF", "dataset": "ml-1m", "seed": seed,
            "config": {"num_factors": 8, "layers": [64, 32, 16, 8], "epochs": 20, "pretrain": pretrain,
                       "mf_pretrain": ""},
            "best": {"hr": hr, "ndcg": ndcg}, "best_epoch": 3, "learner": "sgd", "wall_s": 60.0,
            "epochs": [{"sample_s": 1.0, "train_s": 10.0, "eval_s": 0.5}],
            "machine": {"cpu_count": 2}, "device": "cpu:0",
            "git": {"commit": "abc", "dirty": False}, "versions": {"keras": "3", "backend": "tensorflow"}}


def test_cells_from_records(tmp_path):
    runs = tmp_path / "runs"
    for seed, hr in ((0, 0.68), (1, 0.69), (2, 0.70)):
        write_json(str(runs / f"r{seed}.json"), record(seed, hr, 0.40))
    write_json(str(runs / "unfinished.json"), {**record(9, 0.99, 0.99), "status": "running"})
    (tmp_path / "published_results.csv").write_text(
        "source,dataset,model,setting,factors,note,hr@10,ndcg@10\n"
        "paper Table 2,ml-1m,NeuMF,pretrained,8,,0.684,0.403\n")
    assert report.main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| ml-1m | NeuMF"))
    assert "| 8 | pretrained | 20 | 0.6900 ± 0.0100 (3) | 0.684 | +0.006 |" in row
    assert "| 0.4000 ± 0.0000 | 0.403 | -0.003 |" in row and "| 11.5 |" in row
    assert "0.99" not in text and "Not run here" in text
