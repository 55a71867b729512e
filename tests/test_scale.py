"""bin/benchmark --section scale on a tiny shape: generated files the loader
accepts, every stage measured, and the growth-exponent fit."""

import numpy as np

from ncf_tf.bench import scale
from ncf_tf.data.loader import load_dataset


def test_generated_files_follow_the_protocol(tmp_path):
    shape = scale.Shape("tiny", 120, 90, 4000)
    scale.write_files(str(tmp_path), "t", shape)
    ds = load_dataset(str(tmp_path), "t")
    assert ds.num_users == 120 and ds.train.nnz + len(ds.test_users) <= 4000
    held = np.bincount(ds.test_users, minlength=120)
    assert (np.diff(ds.train.indptr) + held >= scale.MIN_PER_USER).all()
    # Held-out items are not training items of their user; negatives never seen.
    train = ds.train.tocsr()
    assert not train[ds.test_users, ds.test_items].any()
    rows = np.repeat(ds.test_users, ds.test_negatives.shape[1])
    assert not np.asarray(train[rows, ds.test_negatives.reshape(-1)]).any()
    assert not (ds.test_negatives == ds.test_items[:, None]).any()


def test_every_stage_is_measured(tmp_path):
    out = scale.measure(scale.Shape("tiny", 80, 60, 2500), str(tmp_path))
    for stage in scale.STAGES:
        assert out[stage]["s"] > 0 and out[stage]["rss"] > 0 and out[stage]["cpu_s"] >= 0
    assert out["membership"] == "BitsetMembership" and out["step_batch"] < scale.STEP_BATCH


def test_growth_exponents():
    results = {name: {"train_interactions": n, "load": {"s": 2e-6 * n}, "epoch": {"s": 1e-9 * n**1.5}}
               for name, n in (("a", 10**6), ("b", 10**7), ("c", 10**8))}
    fitted = scale.exponents(results)
    assert abs(fitted["load"] - 1) < 1e-9 and abs(fitted["epoch"] - 1.5) < 1e-9
    assert "step" not in fitted


def test_the_gpu_figures_run_small_on_any_device(tmp_path, capsys):
    from ncf_tf.bench import gpu
    gpu.run(str(tmp_path), batch=512, steps=1, users=300, items=100)
    out = capsys.readouterr().out
    assert "M samples/s" in out and "999 negatives" in out and "no ml-1m files" in out
