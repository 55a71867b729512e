"""results/ is computed from records: mean ± sd, n, paper and Δ; missing cells listed."""

import os

import pytest

from ncf_tf.results import beyond, cells, report, reproduce
from ncf_tf.core.records import RunRecord, intra_op_threads, write_json


def record(seed, hr, ndcg, pretrain=True, factors=8):
    layers = [8 * factors, 4 * factors, 2 * factors, factors]
    return {"kind": "train", "status": "finished", "model": "NeuMF", "dataset": "ml-1m",
            "seed": seed,
            "config": {"num_factors": factors, "layers": layers, "epochs": 20, "pretrain": pretrain,
                       "mf_pretrain": "", "batch_size": 256, "lr": 0.001, "learner": None,
                       "reg_layers": [0, 0, 0, 0], "num_neg": 4, "alpha": 0.5},
            "best": {"hr": hr, "ndcg": ndcg,
                     "topk": {str(k): {"hr": hr * k / 10, "ndcg": ndcg * k / 10}
                              for k in range(1, 11)}},
            "init": {"hr": 0.1, "ndcg": 0.05}, "best_epoch": 3, "learner": "sgd", "wall_s": 60.0,
            "epochs": [{"epoch": 0, "loss": 0.3, "hr": hr, "ndcg": ndcg, "sample_s": 1.0,
                        "train_s": 10.0, "eval_s": 0.5}],
            "machine": {"cpu_count": 2}, "device": "cpu:0",
            "git": {"commit": "abc", "dirty": False},
            "versions": {"keras": "3", "backend": "tensorflow"}}


def written(tmp_path, *paper_rows):
    """results/README.md as report.write makes it from tmp_path/runs and these
    rows of published_results.csv."""
    (tmp_path / "published_results.csv").write_text(
        "source,dataset,model,setting,factors,note,hr@10,ndcg@10\n"
        + "".join(row + "\n" for row in paper_rows))
    report.write(str(tmp_path))
    return (tmp_path / "README.md").read_text()


def test_cells_from_records(tmp_path):
    runs = tmp_path / "runs"
    for seed, hr in ((0, 0.68), (1, 0.69), (2, 0.70)):
        write_json(str(runs / f"r{seed}.json"), record(seed, hr, 0.40))
    write_json(str(runs / "scratch.json"), record(0, 0.65, 0.38, pretrain=False, factors=16))
    write_json(str(runs / "unfinished.json"), {**record(9, 0.99, 0.99), "status": "running"})
    write_json(str(runs / "pop.json"), {
        **record(0, 0.4531, 0.2541), "kind": "baseline", "model": "ItemPop", "params": {},
        "config": {"model": "ItemPop"}, "fit_s": 0.1})
    text = written(tmp_path, "paper Table 2,ml-1m,NeuMF,pretrained,8,,0.684,0.403",
                   "paper Table 2,ml-1m,NeuMF,from scratch,16,,0.696,0.420")
    row = next(line for line in text.splitlines() if line.startswith("| 8 | 0.6900"))
    assert row.startswith("| 8 | 0.6900 ± 0.0100 (3) | 0.684 | +0.006 | 0.4000 ± 0.0000 (3) "
                          "| 0.403 | -0.003 |")
    row16 = next(line for line in text.splitlines() if line.startswith("| 16 | –"))
    assert "| 0.6500 (1) | 0.696 | -0.046 |" in row16
    assert "Table 2, ml-1m, NeuMF-16 from scratch, HR@10: ours 0.6500 (n = 1), paper 0.696" in text
    assert "0.99" not in text
    assert "| ItemPop | – | 0.4531 | 0.2541 |" in text
    assert "| `runs/r0.json` | NeuMF | 0 | SGD | faithful | 1.0 min | 2 CPU, cpu:0 |" in text
    assert "**Not run here**: pinterest-20" in text
    assert "bin/reproduce --only table2 --dataset pinterest-20" in text
    assert (tmp_path / "plots" / "fig4_ml-1m.png").stat().st_size > 1000
    assert (tmp_path / "tables" / "table2_ml-1m.csv").read_text().startswith("F,pretrained HR@10")


def test_training_after_pretraining_sgd_and_adam(tmp_path):
    runs = tmp_path / "runs"
    at_blend = {**record(0, 0.70, 0.41), "best_epoch": -1, "init": {"hr": 0.70, "ndcg": 0.41}}
    at_blend["epochs"] = [{**at_blend["epochs"][0], "hr": 0.68}]
    write_json(str(runs / "sgd0.json"), at_blend)
    write_json(str(runs / "sgd1.json"), {**record(1, 0.69, 0.40), "init": {"hr": 0.66, "ndcg": 0.4}})
    adam = record(0, 0.72, 0.43)
    adam["config"] = {**adam["config"], "learner": "adam"}
    write_json(str(runs / "adam.json"), {**adam, "best_epoch": 7})
    text = written(tmp_path, "paper Table 2,ml-1m,NeuMF,pretrained,8,,0.684,0.403")
    # (0.68 - 0.70 + 0.69 - 0.66) / 2 = +0.005; the Adam run stays out of Table 2.
    assert ("in 1 of the 2 pretrained runs above the best epoch is -1, the alpha = 0.5 blend "
            "of GMF and MLP before any update; 20 epochs of vanilla SGD at lr 0.001 change "
            "test HR by +0.0050 on average") in text
    assert "| 8 | 0.6950 ± 0.0071 (2) | 0.684 |" in text
    assert ("| 8 | 0.7200 (1) | 0.6950 ± 0.0071 (2) | 0.684 | +0.036 | 0.4300 (1) | "
            "0.4050 ± 0.0071 (2) | 0.403 | +0.027 | 7 |") in text


def test_fast_mode_runs_stay_out_of_the_paper_tables(tmp_path):
    runs = tmp_path / "runs"
    for seed, hr in ((0, 0.68), (1, 0.70)):
        write_json(str(runs / f"ml-1m_NeuMF_8_64-32-16-8_e20_s{seed}.json"),
                   record(seed, hr, 0.40, pretrain=False))
    fast = record(0, 0.60, 0.35, pretrain=False)
    fast["config"]["lazy_adam"] = True
    fast["epochs"][0]["train_s"] = 4.5
    fast.update(mode="fast", fast_mode=["lazy Adam (embedding rows updated only when in the batch)"])
    write_json(str(runs / "ml-1m_NeuMF_8_64-32-16-8_lazy_e20_s0.json"), fast)
    text = written(tmp_path, "paper Table 2,ml-1m,NeuMF,from scratch,8,,0.688,0.410")
    # Table 2 averages the two faithful runs only (the fast run's 0.60 would pull it to 0.66).
    assert "| 0.6900 ± 0.0141 (2) | 0.688 | +0.002 |" in text
    row = next(line for line in text.splitlines() if "`ml-1m_NeuMF_8_64-32-16-8_lazy_e20`" in line)
    assert row == ("| `ml-1m_NeuMF_8_64-32-16-8_lazy_e20`: lazy Adam (embedding rows updated only "
                   "when in the batch) | 0.6000 (1) | 0.3500 (1) | -0.090 | 5.5 | x2.0 |")
    assert text.count("| SGD | faithful |") == 2 and text.count("| SGD | fast |") == 1


def test_beyond_names_the_model_best_on_validation_not_on_test(tmp_path):
    runs = tmp_path / "runs"
    for model, validation, test in (("NeuMF", 0.72, 0.60), ("GMF", 0.65, 0.66)):
        r = record(0, test, 0.35, pretrain=False)
        r.update(model=model, selection="validation", best_validation={"hr": validation, "ndcg": 0.4})
        write_json(str(runs / f"{model}.json"), r)
    text = written(tmp_path)
    assert ("Best model on validation: NeuMF-8, test HR@10 0.6000, NDCG@10 0.3500; the best "
            "published number under this protocol is 0.731 / 0.452 (difference -0.1310 / "
            "-0.1020). One binomial standard error of an HR@10 of 0.60 over 6,040 test users "
            "is 0.0063.") in text
    assert "Short of it by 0.1310 HR@10, 20.8 standard errors." in text


def test_longer_training_shows_the_best_within_20_epochs_and_overall(tmp_path):
    runs = tmp_path / "runs"
    r = record(0, 0.63, 0.37, pretrain=False)
    r["model"] = "MLP"
    r["config"].update(layers=[16, 8], epochs=100, reg_layers=[0, 0])
    r["best_epoch"] = 57
    r["epochs"] = [{"epoch": e, "loss": 0.3, "hr": 0.5 + e / 1000, "ndcg": 0.3, "sample_s": 1.0,
                    "train_s": 1.0, "eval_s": 0.1} for e in range(100)]
    write_json(str(runs / "ml-1m_MLP_16-8_e100_s0.json"), r)
    text = written(tmp_path, "paper Tables 3-4,ml-1m,MLP-1,from scratch,8,,0.628,0.359")
    assert ("| MLP-1, F = 8, seed 0 | 0.5190 / 0.3000 (19) | 0.6300 / 0.3700 (57) "
            "| 0.628 / 0.359 |") in text
    assert "| 0.6300 (1) vs 0.628 |" not in text   # a 100-epoch run stays out of Table 3


def test_learning_rates_beside_the_tables_runs_and_out_of_the_tables(tmp_path):
    runs = tmp_path / "runs"

    def mlp1(seed, hr, lr):
        r = record(seed, hr, 0.35, pretrain=False)
        r["model"] = "MLP"
        r["config"].update(layers=[16, 8], reg_layers=[0, 0], lr=lr)
        return r

    for name, r in (("a", mlp1(0, 0.60, 0.001)), ("b", mlp1(1, 0.62, 0.001)),
                    ("c", mlp1(0, 0.64, 0.005)), ("d", mlp1(0, 0.58, 0.0005))):
        write_json(str(runs / f"{name}.json"), r)
    text = written(tmp_path, "paper Tables 3-4,ml-1m,MLP-1,from scratch,8,,0.628,0.359")
    assert "| cell | lr 0.0005 | lr 0.001 | lr 0.005 | paper |" in text
    assert ("| MLP-1, F = 8 | 0.5800 / 0.3500 (1) | 0.6100 / 0.3500 (2) | 0.6400 / 0.3500 (1) "
            "| 0.628 / 0.359 |") in text
    assert "| 0.6100 ± 0.0141 (2) vs 0.628 |" in text   # Table 3: lr 0.001 only


def test_same_seed_across_commits_compares_the_epochs_both_ran(tmp_path):
    runs = tmp_path / "runs"
    short = record(0, 0.68, 0.40, pretrain=False)
    long = record(0, 0.69, 0.41, pretrain=False)
    long["config"].update(epochs=100, run_name="other name")
    long["git"] = {"commit": "def4567", "dirty": False}
    long["epochs"] = short["epochs"] + [{**short["epochs"][0], "epoch": 1, "hr": 0.5}]
    other_seed = {**record(1, 0.6, 0.3, pretrain=False), "git": {"commit": "fff", "dirty": False}}
    changed = record(0, 0.7, 0.4, pretrain=False)
    changed["git"] = {"commit": "0123456", "dirty": False}
    changed["epochs"] = [{**short["epochs"][0], "hr": 0.6805}]
    for name, r in (("a_e20", short), ("b_e100", long), ("c_s1", other_seed), ("d_e20", changed)):
        write_json(str(runs / f"{name}.json"), r)
    text = written(tmp_path)
    assert "| `a_e20` (abc) | `b_e100` (def4567) | 1 | 0 | 0 | 0 |" in text
    assert "| `a_e20` (abc) | `d_e20` (0123456) | 1 | 0 | 0.0005 | 0 |" in text
    assert "c_s1` (fff)" not in text


def test_a_seed_run_again_counts_once_in_its_cell(tmp_path):
    """The first record of a configuration and seed is the cell's; a rerun at
    a later commit is compared with it, not averaged in."""
    runs = tmp_path / "runs"
    first = {**record(0, 0.68, 0.40), "started": "2026-11-23T10:00:00+0000"}
    again = {**record(0, 0.60, 0.30), "started": "2026-11-24T10:00:00+0000",
             "git": {"commit": "def4567", "dirty": False}}
    write_json(str(runs / "a_rerun.json"), again)   # read first, started later
    write_json(str(runs / "b.json"), first)
    text = written(tmp_path, "paper Table 2,ml-1m,NeuMF,pretrained,8,,0.684,0.403")
    assert "| 8 | 0.6800 (1) | 0.684 | -0.004 |" in text
    assert "| `a_rerun` (def4567) | `b` (abc) | 1 |" in text


def test_estimates_use_the_newest_run_of_the_same_settings():
    """Earlier runs of a model may predate speed-ups: the newest one counts."""
    jobs = [reproduce.Job("ml-1m_GMF_8_e20_s2", "train_gmf", [], (), 7200.0),
            reproduce.Job("ml-1m_MLP_64-32-16-8_e20_s1", "train_mlp", [], (), 3600.0)]
    runs = [RunRecord("train", path="runs/ml-1m_GMF_8_e20_s1.json",
                      started="2026-11-20T00:00:00", wall_s=900.0),
            RunRecord("train", path="runs/ml-1m_GMF_8_e20_s0.json",
                      started="2026-11-01T00:00:00", wall_s=1800.0),
            RunRecord("baseline", path="runs/ml-1m_MLP_64-32-16-8_e20_s0.json", wall_s=1.0)]
    assert report.estimated_hours(jobs, runs) == (900.0 + 3600.0) / 3600


def test_grid_edges_name_a_best_point_at_either_end_of_its_grid():
    def point(hr, **params):
        return RunRecord("baseline", params=params, best={"hr": hr})
    inside = [point(0.60, k_neighbors=10), point(0.66, k_neighbors=50),
              point(0.64, k_neighbors=200)]
    assert cells.grid_edges(inside) == []
    assert cells.grid_edges(inside[1:]) == ["k_neighbors=50, the smallest of 2 tried"]
    # Only the runs that differ from the best in that setting alone count.
    bpr = [point(0.60, lr=0.02, num_factors=8), point(0.63, lr=0.05, num_factors=8),
           point(0.61, lr=0.1, num_factors=8), point(0.62, lr=0.2, num_factors=16)]
    assert cells.grid_edges(bpr) == []
    assert cells.grid_edges(bpr[:2]) == ["lr=0.05, the largest of 2 tried"]
    assert cells.grid_edges([point(0.4)]) == cells.grid_edges([]) == []


def test_machine_names_the_cpu_and_threads_where_recorded():
    run = RunRecord.from_dict(record(0, 0.68, 0.40))
    assert beyond.machine_of(run) == "2 CPU, cpu:0"
    run.machine = {"cpu_count": 2, "cpu_model": "AMD EPYC", "intra_op_threads": 1}
    assert beyond.machine_of(run) == "2 CPU (AMD EPYC), 1 thread, cpu:0"
    run.machine["intra_op_threads"] = 2
    assert beyond.machine_of(run) == "2 CPU (AMD EPYC), 2 threads, cpu:0"


@pytest.mark.parametrize("value,threads", [("3", 3), ("", None), ("0", None), ("two", None)])
def test_a_record_takes_its_threads_from_the_environment_else_all_cores(
        monkeypatch, value, threads):
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", value)
    assert intra_op_threads() == (threads or os.cpu_count())


def test_headline_shows_mean_sd_beside_the_paper_and_updates_only_between_markers(tmp_path):
    results = tmp_path / "results"
    for seed, hr in ((0, 0.68), (1, 0.69), (2, 0.70)):
        write_json(str(results / "runs" / f"r{seed}.json"), record(seed, hr, 0.40))
    readme = tmp_path / "README.md"
    start, end = report.HEADLINE_MARKERS
    readme.write_text(f"# mine\n\nprose\n{start}\nstale\n{end}\nmore prose\n")
    written(results, "paper Table 2,ml-1m,NeuMF,pretrained,8,,0.684,0.403")
    text = readme.read_text()
    assert text.startswith(f"# mine\n\nprose\n{start}\n| ml-1m, HR@10 | F = 8 |")
    assert text.endswith(f"|\n{end}\nmore prose\n")
    assert "stale" not in text
    assert "| NeuMF (pretrained) | 0.6900 ± 0.0100 (3) vs 0.684 | – |" in text
    assert "| NeuMF (pretrained) | 0.4000 ± 0.0000 (3) vs 0.403 | – |" in text
    assert "| NeuMF (from scratch) | – | – | – | – |" in text
    readme.write_text("# no markers\n")
    assert not report.write_headline(str(readme), "table")
    assert readme.read_text() == "# no markers\n"


def test_the_committed_readme_headline_is_the_committed_records():
    """README.md's headline table is what `bin/reproduce --report` makes from
    results/runs/ now (run it after adding records)."""
    with open(os.path.join(cells.HERE, "README.md")) as f:
        text = f.read()
    start, end = report.HEADLINE_MARKERS
    committed = text[text.index(start) + len(start):text.index(end)].strip("\n")
    records = cells.load_records(os.path.join(cells.HERE, "results", "runs"))
    paper = cells.published(os.path.join(cells.HERE, "results", "published_results.csv"))
    assert committed == report.headline(records, paper)


def test_dense_and_deferred_adam_of_one_seed_are_compared_at_one_commit(tmp_path):
    runs = tmp_path / "runs"
    dense = record(0, 0.68, 0.40, pretrain=False)
    deferred = record(0, 0.68, 0.40, pretrain=False)
    deferred["config"].update(adam="deferred")
    deferred["epochs"] = [{**dense["epochs"][0], "ndcg": dense["epochs"][0]["ndcg"] + 1e-5}]
    again = record(0, 0.68, 0.40, pretrain=False)      # dense again at the same commit: not a pair
    for name, r in (("a_dense", dense), ("b_deferred", deferred), ("c_dense", again)):
        write_json(str(runs / f"{name}.json"), r)
    text = written(tmp_path)
    assert "| `a_dense` (abc) | `b_deferred` (abc, deferred Adam) | 1 | 0 | 0 | 1e-05 |" in text
    assert "| `a_dense` (abc) | `c_dense` (abc) |" not in text
