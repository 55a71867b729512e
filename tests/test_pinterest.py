"""pinterest-20 at its full size, on generated files in the authors' format.

The real training and negative files are not available on the machines
that run these tests; these tests generate files of the same shape (55,187
users, 9,916 items, 1,445,622 training lines of ``user<TAB>item<TAB>1<TAB>0``,
one test line per user, 99 negatives per user) and run the loader, the
sampler, the evaluator, a training run and the planner on them. The real test
file is used in place of the generated one when ``Data/`` has it.
"""

import os
import shutil

import numpy as np
import pytest

from conftest import DATA
from ncf_tf.results import reproduce
from ncf_tf.cli import reproduce as reproduce_cli
from ncf_tf.train.config import TrainConfig
from ncf_tf.data.loader import load_dataset
from ncf_tf.train.experiment import run
from ncf_tf.data.sampling import NegativeSampler

pytestmark = pytest.mark.slow
USERS, ITEMS, TRAIN_LINES = 55187, 9916, 1445622


def write_lines(path, *columns):
    np.savetxt(path, np.column_stack(columns), fmt="%d", delimiter="\t")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    rng = np.random.default_rng(20)
    out = tmp_path_factory.mktemp("pinterest")
    real_test = os.path.join(DATA, "pinterest-20.test.rating")
    if os.path.isfile(real_test):
        shutil.copy(real_test, out / "pinterest-20.test.rating")
        test_items = np.loadtxt(real_test, dtype=np.int64, usecols=1)
    else:
        test_items = rng.integers(0, ITEMS, USERS)
        write_lines(out / "pinterest-20.test.rating", np.arange(USERS), test_items,
                    np.ones(USERS, int), np.zeros(USERS, int))
    # Every user at least 19 training items (pinterest-20 kept users with >= 20
    # interactions), the rest spread at random; every item occurs at least once.
    counts = np.full(USERS, 19)
    np.add.at(counts, rng.integers(0, USERS, TRAIN_LINES - counts.sum()), 1)
    users = np.repeat(np.arange(USERS), counts)
    items = rng.integers(0, ITEMS, TRAIN_LINES)
    items[:ITEMS] = np.arange(ITEMS)
    keys = np.unique(users * ITEMS + items)   # distinct pairs, then top up the lost ones
    while len(keys) < TRAIN_LINES:
        extra = rng.integers(0, USERS, TRAIN_LINES - len(keys)) * ITEMS + rng.integers(
            0, ITEMS, TRAIN_LINES - len(keys))
        keys = np.unique(np.concatenate([keys, extra]))
    keys = keys[:TRAIN_LINES]
    taken = np.zeros(USERS * ITEMS, bool)
    taken[keys] = True
    test_keys = np.arange(USERS) * ITEMS + test_items
    keys = keys[~np.isin(keys, test_keys)]
    write_lines(out / "pinterest-20.train.rating", keys // ITEMS, keys % ITEMS,
                np.ones(len(keys), int), np.zeros(len(keys), int))
    taken[test_keys] = True
    negatives = rng.integers(0, ITEMS, (USERS, 99))
    bad = taken[np.arange(USERS)[:, None] * ITEMS + negatives]
    while bad.any():
        negatives[bad] = rng.integers(0, ITEMS, bad.sum())
        bad = taken[np.arange(USERS)[:, None] * ITEMS + negatives]
    with open(out / "pinterest-20.test.negative", "w") as f:
        for user, item, row in zip(range(USERS), test_items, negatives):
            f.write(f"({user},{item})\t" + "\t".join(map(str, row)) + "\n")
    return str(out)


@pytest.fixture(scope="module")
def pinterest(folder):
    return load_dataset(folder, "pinterest-20")


def test_loads_at_the_papers_size(pinterest):
    assert (pinterest.num_users, pinterest.num_items) == (USERS, ITEMS)
    assert pinterest.num_test == USERS and pinterest.test_negatives.shape == (USERS, 99)
    assert pinterest.num_train + pinterest.num_test <= 1500809   # paper, Table 1


def test_sampler_at_full_size(pinterest):
    sampler = NegativeSampler(pinterest.train, 4)
    epoch = sampler.sample(np.random.default_rng(0)).shuffled(np.random.default_rng(1))
    assert len(epoch) == 5 * pinterest.num_train
    assert epoch.labels.sum() == pinterest.num_train
    negatives = epoch.labels == 0
    assert not sampler.is_positive(epoch.users[negatives], epoch.items[negatives]).any()


def test_one_epoch_of_gmf_and_the_run_record(folder, tmp_path):
    record = run(TrainConfig(model="GMF", path=folder, dataset="pinterest-20", epochs=1,
                             batch_size=4096, model_dir=str(tmp_path / "m"),
                             results_dir=str(tmp_path / "runs")), log=lambda line: None)
    assert record.status == "finished" and record.dataset == "pinterest-20"
    assert record.data["summary"].startswith(f"#user={USERS}, #item={ITEMS}")
    assert 0.0 <= record.best["hr"] <= 1.0 and len(record.epochs) == 1
    assert os.path.isfile(record.weights_file)


def test_every_experiment_plans_for_pinterest(capsys, tmp_path):
    for experiment in (*reproduce.EXPERIMENTS, "all"):
        jobs = reproduce.plan(experiment, "pinterest-20")
        assert jobs and all("--dataset pinterest-20" in job.shell() for job in jobs)
    assert reproduce_cli.main(["reproduce", "--only", "table2", "--dataset", "pinterest-20",
                               "--dry_run", "--results", str(tmp_path)]) == 0
    assert "0 of 48 recorded" in capsys.readouterr().out
