"""bin/reproduce: the plans, and the runner (skip recorded, dependencies first, failures)."""

import dataclasses
import json
import os
import re
import sys

import numpy as np
import pytest

from conftest import REPO, write_dataset
from ncf_tf.core.records import RunRecord
from ncf_tf.results import reproduce
from ncf_tf.cli import reproduce as reproduce_cli
from ncf_tf.cli.reproduce import program


@pytest.mark.parametrize("experiment", [*reproduce.EXPERIMENTS, "all"])
def test_plans_are_consistent(experiment):
    jobs = reproduce.plan(experiment, "ml-1m")
    names = [job.name for job in jobs]
    assert len(names) == len(set(names))
    everything = {job.name for job in reproduce.plan("all", "ml-1m")}
    if experiment in reproduce.OUTSIDE_ALL:
        # Its own runs are not the paper's; the runs they need may be.
        needed = {d for job in jobs for d in job.needs}
        assert needed <= everything and not everything & (set(names) - needed)
        assert all(config_of(job).run_key() == job.name for job in jobs)
        everything |= set(names)
    if experiment == "pretrain_adam":
        assert [(config_of(j).learner, config_of(j).pretrained) for j in jobs if j.needs] == [
            ("adam", True)] * len(reproduce.PRETRAIN_ADAM_FACTORS)
    if experiment == "fast":
        assert all(config_of(job).fast_mode() for job in jobs)
    if experiment == "long":
        assert [(config_of(job).layers, config_of(job).epochs) for job in jobs] == [
            ([16, 8], 100), ([32, 16, 8], 100)]
    for job in jobs:
        assert job.estimate_s > 0 and job.name in everything
        for dependency in job.needs:
            assert dependency in everything
            assert dependency.endswith(job.name[job.name.rindex("_s"):])  # same seed
        assert job.shell().startswith(f"bin/{job.script} ")


def config_of(job):
    """The config a planned NCF job's flags describe."""
    from ncf_tf.cli import train as cli
    model = job.script.split("_")[1].upper().replace("NEUMF", "NeuMF")
    fv = cli.define_flags(model)
    fv(["prog", *job.flags, *(["--pretrain"] if job.needs else [])])
    return cli.config_from_flags(model, fv)


def test_table2_has_every_cell_with_three_seeds():
    jobs = reproduce.plan("table2", "ml-1m", seeds=3)
    neumf = [j for j in jobs if "_NeuMF_" in j.name]
    assert len(neumf) == 4 * 2 * 3
    pretrained = [j for j in neumf if j.needs]
    assert {j.name for j in pretrained} == {
        f"ml-1m_NeuMF_{f}_{8*f}-{4*f}-{2*f}-{f}_pretrain_e20_s{s}"
        for f in (8, 16, 32, 64) for s in range(3)}
    assert reproduce.tower(8, 0) == [8] and reproduce.tower(16, 4) == [256, 128, 64, 32, 16]


def test_seeds_default_per_experiment_and_more_can_be_asked_for():
    def names(experiment, seeds=None):
        return {job.name for job in reproduce.plan(experiment, "ml-1m", seeds)}

    assert names("all") == names("all", 3) and names("table2") == names("table2", 3)
    table3 = names("table3")
    assert len(table3) == 4 * 5 and all(name.endswith("_s0") for name in table3)
    more = names("table3", 3)
    assert len(more) == 3 * 20 and {n for n in more if n.endswith("_s0")} == table3
    assert "ml-1m_MLP_16-8_e20_s2" in more
    fig7 = reproduce.plan("fig7", "ml-1m", 2)
    neumf = [j for j in fig7 if j.name == "ml-1m_NeuMF_16_128-64-32-16_pretrain_neg3_e20_s1"]
    assert len(neumf) == 1 and set(neumf[0].needs) <= {j.name for j in fig7}
    assert names("fig4", 3) == names("fig4")  # Table 2's seed 0 with the baselines
    # `all` keeps one seed of the single-seed experiments whatever Table 2's seeds.
    assert table3 <= names("all", 5) and "ml-1m_MLP_16-8_e20_s1" not in names("all", 5)


def test_fig7_varies_negatives_at_16_factors():
    jobs = reproduce.plan("fig7", "ml-1m")
    gmf = sorted(j.name for j in jobs if "_GMF_" in j.name)
    assert gmf[0] == "ml-1m_GMF_16_e20_s0" or "neg" in gmf[0]
    assert {f"ml-1m_GMF_16_neg{n}_e20_s0" for n in (1, 2, 3, 5, 10)} <= set(gmf)
    assert any("_BPR_" in j.name for j in jobs)


def toy_jobs(small: list[str]) -> list[reproduce.Job]:
    """GMF, MLP and the pretrained NeuMF that needs them, on the toy data set."""
    return [reproduce.Job("toy_gmf", "train_gmf", small + ["--num_factors", "4"]),
            reproduce.Job("toy_mlp", "train_mlp", small + ["--layers", "8,4", "--reg_layers", "0,0"]),
            reproduce.Job("toy_neumf", "train_neumf",
                          small + ["--num_factors", "4", "--layers", "8,4", "--reg_layers", "0,0"],
                          needs=("toy_gmf", "toy_mlp"))]


def test_execute_runs_dependencies_first_and_skips_recorded(tmp_path):
    data = write_dataset(tmp_path / "data")
    small = ["--dataset", "toy", "--epochs", "1", "--batch_size", "64"]
    gmf, mlp, neumf = toy_jobs(small)
    broken = reproduce.Job("toy_broken", "train_gmf", small + ["--num_factors", "0"])
    after_broken = reproduce.Job("toy_after", "train_neumf", small, needs=("toy_broken", "toy_mlp"))
    runs, logs = tmp_path / "runs", []
    failed = reproduce.execute([neumf, gmf, mlp, broken, after_broken], program=program,
                               results_dir=str(runs),
                               model_dir=str(tmp_path / "models"), data_path=data["folder"],
                               parallel=2, log=logs.append, logs_dir=str(tmp_path / "logs"))
    assert sorted(failed) == ["toy_after", "toy_broken"]
    record = json.loads((runs / "toy_neumf.json").read_text())
    assert record["status"] == "finished"
    assert record["start_from"]["mf_pretrain"].endswith("toy_gmf.weights.h5")
    assert record["learner"] == "sgd"
    assert "error: --num_factors must be an integer >= 1" in (tmp_path / "logs" / "toy_broken.log").read_text()

    again = []
    failed = reproduce.execute([gmf, mlp, neumf], program=program, results_dir=str(runs),
                               model_dir=str(tmp_path / "models"), data_path=data["folder"],
                               log=again.append, logs_dir=str(tmp_path / "logs"))
    assert failed == [] and again == ["3 of 3 runs already recorded; 0 to run, 1 at a time"]


def test_execute_skips_every_run_downstream_of_a_failed_one(tmp_path):
    """A run skipped because its dependency failed must block the runs that need it
    in the same pass, not let them start."""
    jobs = [reproduce.Job("a", "train_gmf", []), reproduce.Job("b", "train_gmf", [], needs=("a",)),
            reproduce.Job("c", "train_gmf", [], needs=("b",))]
    logs = []
    failed = reproduce.execute(jobs, program=lambda script: [sys.executable, "-c", "exit(1)"],
                               results_dir=str(tmp_path / "runs"),
                               model_dir=str(tmp_path / "models"), data_path=str(tmp_path),
                               log=logs.append, logs_dir=str(tmp_path / "logs"))
    assert failed == ["a", "b", "c"]
    assert [line for line in logs if line.startswith(("start", "skipped"))] == [
        "start: a (estimated 0 min)", "skipped: b (a run it needs failed)",
        "skipped: c (a run it needs failed)"]


def test_execute_reruns_a_recorded_dependency_whose_weights_are_gone(tmp_path):
    """A fresh checkout has the records, not the weights: the GMF is run again
    (its record untouched) and its weights are used only if the rerun
    reproduces the record epoch by epoch."""
    record = RunRecord("train", status="finished", best_epoch=1,
                       epochs=[{"hr": 0.5, "ndcg": 0.3}, {"hr": 0.6, "ndcg": 0.4}])
    assert reproduce.rerun_gap(record, record) == 0.0
    close = dataclasses.replace(record, epochs=[{"hr": 0.5, "ndcg": 0.3},
                                                {"hr": 0.6, "ndcg": 0.4004}])
    running = dataclasses.replace(close, status="running")
    assert reproduce.rerun_gap(record, close) == pytest.approx(0.0004)
    assert reproduce.rerun_gap(record, running) == float("inf")
    assert reproduce.rerun_gap(record, dataclasses.replace(close, epochs=close.epochs[:1])) == \
        float("inf")
    assert reproduce.rerun_differs(record, close) == ""
    assert reproduce.rerun_differs(record, dataclasses.replace(close, best_epoch=0)) == \
        "its best epoch is 0, the record's 1"
    assert "did not finish the record's 2 epochs" in reproduce.rerun_differs(record, running)
    data = write_dataset(tmp_path / "data")
    gmf, mlp, neumf = toy_jobs(["--dataset", "toy", "--epochs", "2", "--batch_size", "64"])
    runs, models = tmp_path / "runs", tmp_path / "models"
    # Two at a time: one thread each, so that a rerun is bit for bit the run.
    kwargs = dict(program=program, results_dir=str(runs), model_dir=str(models),
                  data_path=data["folder"],
                  logs_dir=str(tmp_path / "logs"), parallel=2)
    assert reproduce.execute([gmf, mlp], log=lambda line: None, **kwargs) == []
    recorded = (runs / "toy_gmf.json").read_text()

    assert reproduce.to_restore([gmf, mlp, neumf], str(runs), str(models)) == set()
    (models / "toy_gmf.weights.h5").unlink()
    assert reproduce.to_restore([gmf, mlp, neumf], str(runs), str(models)) == {"toy_gmf"}
    assert reproduce.to_restore([gmf, mlp], str(runs), str(models)) == set()
    logs = []
    assert reproduce.execute([gmf, mlp, neumf], log=logs.append, **kwargs) == []
    assert logs[0] == "2 of 3 runs already recorded; 2 to run (1 again for their weights), 2 at a time"
    assert any(line.startswith("restore: toy_gmf") for line in logs)
    assert "toy_gmf: the rerun for its weights reproduces its record: weights used" in logs
    assert (runs / "toy_gmf.json").read_text() == recorded
    assert sorted(p.name for p in runs.iterdir()) == ["toy_gmf.json", "toy_mlp.json", "toy_neumf.json"]
    assert [p.name for p in (models / "restored").iterdir()] == ["toy_gmf.json"]
    start = json.loads((runs / "toy_neumf.json").read_text())["start_from"]
    assert start["mf_pretrain"] == str(models / "toy_gmf.weights.h5")

    # A rerun that does not reproduce the record is not used.
    (models / "toy_gmf.weights.h5").unlink()
    (runs / "toy_neumf.json").unlink()
    record = json.loads(recorded)
    record["epochs"][-1]["hr"] += 0.01
    (runs / "toy_gmf.json").write_text(json.dumps(record))
    logs = []
    assert sorted(reproduce.execute([gmf, mlp, neumf], log=logs.append, **kwargs)) == \
        ["toy_gmf", "toy_neumf"]
    assert any(line.startswith("toy_gmf: the rerun for its weights is not used: its HR/NDCG is 0.01")
               and "(more than 0.001); compare " in line for line in logs), logs
    assert not (models / "toy_gmf.weights.h5").exists()
    assert not (runs / "toy_neumf.json").exists()
    assert [p.name for p in (models / "restored").iterdir()] == ["toy_gmf.json"]

    # Nor is one that fails.
    broken = reproduce.Job(gmf.name, gmf.script, gmf.flags + ["--num_factors", "0"])
    logs = []
    assert sorted(reproduce.execute([broken, mlp, neumf], log=logs.append, **kwargs)) == \
        ["toy_gmf", "toy_neumf"]
    assert "toy_gmf: the rerun for its weights is not used: it failed (see its log); " \
        "delete the record to train it anew" in logs
    assert not (models / "toy_gmf.weights.h5").exists()
    assert [p.name for p in (models / "restored").iterdir()] == ["toy_gmf.json"]


def test_weights_are_looked_for_in_model_dir_first(tmp_path):
    (tmp_path / "runs").mkdir()
    elsewhere, own = tmp_path / "elsewhere.weights.h5", tmp_path / "models" / "x.weights.h5"
    (tmp_path / "runs" / "x.json").write_text(json.dumps({"kind": "train", "weights_file": str(elsewhere)}))
    where = lambda: reproduce.weights_file("x", str(tmp_path / "runs"), str(tmp_path / "models"))
    assert where() == str(own)         # neither there: where a rerun puts them
    elsewhere.touch()
    assert where() == str(elsewhere)   # saved by a run with another --model_dir
    own.parent.mkdir()
    own.touch()
    assert where() == str(own)


def test_cli_dry_run_and_bad_flags(tmp_path, capsys):
    assert reproduce_cli.main(["reproduce", "--only", "fig6", "--dry_run",
                               "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and "bin/train_gmf --dataset ml-1m --epochs 20 --seed 0" in out
    assert "0 of 3 recorded" in out
    assert reproduce_cli.main(["reproduce", "--only", "table9"]) == 2
    assert "--only must be one of" in capsys.readouterr().err
    assert reproduce_cli.main(["reproduce", "--jobs", "0"]) == 2
    assert reproduce_cli.main(["reproduce", "--seeds", "0"]) == 2
    assert "--seeds must be an integer >= 1, got 0" in capsys.readouterr().err
    assert reproduce_cli.main(["reproduce", "--only", "table3", "--seeds", "2", "--match",
                               "MLP_16-8_", "--dry_run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ml-1m_MLP_16-8_e20_s1\n" in out and "0 of 2 recorded" in out
    assert reproduce_cli.main(["reproduce", "--only", "table2", "--match", "NeuMF_16_128-64-32-16_pretrain_e20_s1",
                               "--dry_run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out   # the pretrained NeuMF and the GMF and MLP it needs
    assert "0 of 3 recorded" in out and "ml-1m_GMF_16_e20_s1" in out
    assert reproduce_cli.main(["reproduce", "--only", "fig6", "--match", "_eALS_"]) == 2
    assert "--match '_eALS_': no run planned by --only fig6" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "README.md")


@pytest.mark.parametrize("flags,message", [
    (["--max_runs", "-1"], "--max_runs must be an integer >= 0, got -1$"),
    (["--dataset", "foo", "--dry_run"],
     "--dataset foo: not one of ml-1m, pinterest-20, and .*foo.train.rating is not there$"),
    (["--dataset", "pinterest-20", "--only", "fig6"],
     "pinterest-20.train.rating: file not found .*bin/download_data --dataset pinterest-20"),
    (["--report", "--results", "{tmp}/nowhere"], "--results .*nowhere: no runs/ folder"),
])
def test_cli_bad_flags_write_nothing(tmp_path, capsys, flags, message):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    code = reproduce_cli.main(["reproduce", "--path", str(tmp_path), "--results",
                               str(tmp_path / "results"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("reproduce: error: ")
    assert re.search(message, err[0]), err[0]
    assert os.listdir(tmp_path) == []


def test_beyond_plans_seeds_of_the_point_chosen_on_validation(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    first = reproduce.plan("beyond", "ml-1m", seeds=3, results_dir=str(runs))
    assert not any(j.name.endswith("_s1") for j in first if j.script == "train_baseline")
    assert all("--selection" in j.flags for j in first)
    for i, params in enumerate(reproduce.TUNING_GRID["iALS"]):
        job = reproduce.tuned_baseline_job("iALS", params, "ml-1m", 0)
        # The test HR is best elsewhere: only validation may choose.
        (runs / f"{job.name}.json").write_text(json.dumps({
            "kind": "baseline", "status": "finished",
            "best_validation": {"hr": 0.5 + 0.1 * (i == 1)},
            "best": {"hr": 0.9 - 0.1 * (i == 1)}}))
    again = reproduce.plan("beyond", "ml-1m", seeds=3, results_dir=str(runs))
    chosen = reproduce.TUNING_GRID["iALS"][1]
    assert reproduce.chosen("iALS", "ml-1m", str(runs)) == chosen
    added = {j.name for j in again} - {j.name for j in first}
    assert added == {reproduce.tuned_baseline_job("iALS", chosen, "ml-1m", s, "none").name
                     for s in (0, 1, 2)}
    assert all("_val-" not in name for name in added)


def test_cli_runs_only_the_matched_runs_and_reports(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", name="ml-1m")
    results = tmp_path / "results"
    assert reproduce_cli.main(["reproduce", "--only", "fig4", "--match", "_ItemPop_",
                               "--path", data["folder"], "--results", str(results),
                               "--model_dir", str(tmp_path / "models")]) == 0, \
        capsys.readouterr().err
    assert [p.name for p in (results / "runs").iterdir()] == ["ml-1m_ItemPop_s0.json"]
    assert "| ItemPop | – |" in (results / "README.md").read_text()


def test_compare_puts_ones_runs_beside_the_papers_and_the_committed_means(tmp_path, capsys):
    committed = os.path.join(REPO, "results", "runs")
    names = ["ml-1m_GMF_8_e20_s1", "ml-1m_MLP_64-32-16-8_e20_s0",
             "ml-1m_NeuMF_8_64-32-16-8_pretrain_e20_s2"]
    own = tmp_path / "runs"
    own.mkdir()
    for name in names:
        record = json.load(open(os.path.join(committed, f"{name}.json")))
        if name.startswith("ml-1m_MLP"):
            record["config"]["epochs"] = 5   # not the committed runs' settings: no mean
        (own / f"{name}.json").write_text(json.dumps(record))
    assert reproduce_cli.main(["reproduce", "--compare", str(own),
                               "--results", os.path.join(REPO, "results")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"Your runs in {own} beside the paper's")
    rows = {line.split()[0]: line.split()[1:] for line in out[2:]}
    assert list(rows) == names

    def mean(name, key):
        values = [json.load(open(os.path.join(committed, f"{name}_e20_s{s}.json")))["best"][key]
                  for s in range(3)]
        return f"{np.mean(values):.4f}"

    gmf, mlp, neumf = (rows[name] for name in names)
    assert gmf[2] == "–" and gmf[3] == mean("ml-1m_GMF_8", "hr") and gmf[7] == \
        mean("ml-1m_GMF_8", "ndcg")
    assert mlp[2:5] == ["0.671", "/", "0.399"] and mlp[5] == "–"   # Table 3, MLP-3, F = 8
    assert neumf[2:5] == ["0.684", "/", "0.403"]                   # Table 2, pretrained, F = 8
    assert neumf[5] == mean("ml-1m_NeuMF_8_64-32-16-8_pretrain", "hr")


def test_compare_needs_a_run(tmp_path, capsys):
    assert reproduce_cli.main(["reproduce", "--compare", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"reproduce: error: --compare {tmp_path} holds no "
                                       "finished GMF, MLP or NeuMF run record\n")


def test_execute_keeps_a_diverged_run_as_a_result(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "toy_gmf.json").write_text(json.dumps({"kind": "train", "status": "diverged"}))
    job = reproduce.Job("toy_gmf", "train_gmf", ["--dataset", "toy"])

    def never(script):
        raise AssertionError(f"{script} started again")

    logs = []
    assert reproduce.execute([job], program=never, results_dir=str(runs),
                             model_dir=str(tmp_path / "models"), data_path=str(tmp_path),
                             log=logs.append, logs_dir=str(tmp_path / "logs")) == []
    assert logs == ["1 of 1 runs already recorded; 0 to run, 1 at a time"]


def test_large_tables_are_estimated_at_deferred_adams_step():
    """Pinterest's NeuMF-64 tables are deferred (a step: fixed + per tower
    MFLOP); ml-1m's NeuMF-8 tables stay dense (a step: fixed + per parameter)."""
    steps = 1445622 * 5 / 256
    mflops = 6 * 256 * (512 * 256 + 256 * 128 + 128 * 64 + 64 + 64) / 1e6
    fixed, per_mflop = reproduce.DEFERRED_STEP_MS
    assert reproduce.estimate_epoch_s("NeuMF", "pinterest-20", 64, [512, 256, 128, 64]) == (
        pytest.approx(steps * (fixed + per_mflop * mflops) / 1000))
    params_m = ((6040 + 3706) * (8 + 64) + 64 * 32 + 32 * 16 + 16 * 8) / 1e6
    assert reproduce.estimate_epoch_s("NeuMF", "ml-1m", 8, [64, 32, 16, 8]) == (
        pytest.approx(994169 * 5 / 256 * (0.15 + 1.7 * params_m) / 1000))
