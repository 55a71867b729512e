"""Fold-in of new users (ncf_tf.serve.fold_in): a step against finite
differences of each user's loss, a user that is learnt from its items, the
frozen model, iALS's closed form, and bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

from ncf_tf.baselines.ials import IALS
from ncf_tf.models import gmf
from ncf_tf.serve import fold_in as F
from trained_models import SPECS, numpy_logits, spread_model

USERS, ITEMS = 6, 13


def with_user_rows(copy, rows: dict, j: int):
    """``copy`` (a copy of the model) with the ``j``-th of the fitted ``rows`` as user 0."""
    for name, r in rows.items():
        table = copy.get_layer(name).get_weights()[0]
        table[0] = r[j]
        copy.get_layer(name).set_weights([table])
    return copy


def log_loss(copy, rows: dict, j: int, positives, negative, reg: float) -> float:
    """L_u of the module docstring in float64 numpy: ``positives`` label 1 and
    as many copies of ``negative`` label 0, with the ``j``-th of ``rows``."""
    items = np.array(list(positives) + [negative] * len(positives))
    labels = np.repeat([1.0, 0.0], len(positives))
    s = numpy_logits(with_user_rows(copy, rows, j), np.zeros(len(items), int), items)
    return (np.mean(np.logaddexp(0.0, s) - labels * s)
            + reg * sum(np.sum(r[j].astype(np.float64) ** 2) for r in rows.values()))


def gradient(copy, rows: dict, j: int, positives, negative, reg: float, eps=1e-4) -> dict:
    """Central finite differences of :func:`log_loss` in the ``j``-th rows."""
    out = {}
    for name in rows:
        out[name] = np.zeros(rows[name].shape[1])
        for index in range(len(out[name])):
            up, down = ({k: v.astype(np.float64) for k, v in rows.items()} for _ in range(2))
            up[name][j, index] += eps
            down[name][j, index] -= eps
            out[name][index] = (log_loss(copy, up, j, positives, negative, reg)
                                - log_loss(copy, down, j, positives, negative, reg)) / (2 * eps)
    return out


@pytest.mark.parametrize("kind", list(SPECS))
def test_two_steps_are_adams_on_each_users_loss(kind):
    """Each user has every item but one, so its negatives are that item and
    L_u is known: two steps from zero rows are Keras 1's Adam on dL_u/drow
    (finite differences), whatever the other user does (a strong reg makes
    the users' weighting show); the losses are L_u and the scores are the
    model's logits with the fitted rows."""
    model, copy = (spread_model(kind, USERS, ITEMS, seed=3) for _ in range(2))
    for m in (model, copy):   # logits of a few units: no sigmoid saturates to 0 or 1
        m.set_weights([w / 2 for w in m.get_weights()])
    lists, negatives, reg, lr = [range(12), range(1, 13)], [12, 0], 2.0, 0.01
    batch = F.fold_in_users(model, lists, ITEMS, np.random.default_rng(0), steps=2, num_neg=1,
                            lr=lr, reg=reg, init_std=0.0)
    for j in range(2):
        rows = {name: np.zeros_like(r, np.float64) for name, r in batch.rows.items()}
        moments = {name: (0.0, 0.0) for name in rows}
        for t in (1, 2):
            loss = log_loss(copy, rows, j, lists[j], negatives[j], reg)
            np.testing.assert_allclose(batch.losses[t - 1, j], loss, rtol=1e-5)
            for name, g in gradient(copy, rows, j, lists[j], negatives[j], reg).items():
                m, v = moments[name]
                m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g ** 2
                moments[name] = m, v
                rows[name][j] -= lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (
                    np.sqrt(v) + 1e-8)
        for name in rows:
            np.testing.assert_allclose(batch.rows[name][j], rows[name][j], rtol=1e-3, atol=1e-6)
        want = numpy_logits(with_user_rows(copy, batch.rows, j), np.zeros(ITEMS, int),
                            np.arange(ITEMS))
        np.testing.assert_allclose(batch.scores[j], want, rtol=1e-5, atol=1e-5)


def two_group_gmf():
    """GMF-2 whose items 0..5 point one way and 6..11 the other; item 12 in
    between. Only the first factor is weighed (h = (1, 0)), so items of a
    group tie."""
    model = gmf.build(USERS, ITEMS, 2)
    item = np.zeros((ITEMS, 2), np.float32)
    item[:6, 0], item[6:12, 0] = 1.0, -1.0
    model.get_layer("item_embedding").set_weights([item])
    model.get_layer("prediction").set_weights([np.array([[1.0], [0.0]], np.float32),
                                               np.zeros(1, np.float32)])
    return model


def test_a_new_user_is_learnt_from_its_items():
    model = two_group_gmf()
    result = F.fold_in(model, [0, 2, 1], ITEMS, np.random.default_rng(0), steps=100, lr=0.05)
    np.testing.assert_array_equal(result.items, [0, 1, 2])
    assert result.rows["user_embedding"][0] > 0.5         # the side of items 0..5
    assert result.losses[-1] < result.losses[0] - 0.05   # negatives include items 3..5
    items, scores = result.top_k(3)
    assert items.tolist() == [3, 4, 5] and scores[0] == scores[2]   # ties: lower id first
    assert result.top_k(3, exclude_seen=False)[0].tolist() == [0, 1, 2]
    assert result.top_k(11)[0].tolist() == [3, 4, 5, 12, 6, 7, 8, 9, 10, 11, -1]
    # the scores are the model's logits with the fitted row
    p = result.rows["user_embedding"]
    q = model.get_layer("item_embedding").get_weights()[0]
    np.testing.assert_allclose(result.scores, q @ (p * [1.0, 0.0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(SPECS))
def test_model_is_left_untouched_and_loss_falls(kind):
    model = spread_model(kind, USERS, ITEMS, seed=4)
    before = [w.copy() for w in model.get_weights()]
    batch = F.fold_in_users(model, [[1, 2, 3], [4, 5, 6, 7, 8]], ITEMS,
                            np.random.default_rng(1), steps=60, lr=0.05)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert batch.scores.shape == (2, ITEMS) and batch.losses.shape == (60, 2)
    assert np.all(batch.losses[-10:].mean(axis=0) < batch.losses[:10].mean(axis=0))
    one = batch.user(1)
    assert one.items.tolist() == [4, 5, 6, 7, 8] and one.optimizer == "adam"
    for name, rows in batch.rows.items():
        assert rows.shape[0] == 2 and one.rows[name].shape == rows.shape[1:]


def test_same_rng_same_rows():
    model = spread_model("NeuMF", USERS, ITEMS, seed=5)
    a = F.fold_in(model, [1, 2], ITEMS, np.random.default_rng(7), steps=5)
    b = F.fold_in(model, [2, 1, 2], ITEMS, np.random.default_rng(7), steps=5)
    for name in a.rows:
        np.testing.assert_array_equal(a.rows[name], b.rows[name])


@pytest.mark.parametrize("exponent", [0.0, 1.0])
def test_ials_closed_form_is_the_user_sweep(exponent):
    rng = np.random.default_rng(0)
    dense = (rng.random((20, 15)) < 0.3).astype(np.float64)
    dense[np.arange(20), np.arange(20) % 15] = 1.0   # every user has an item
    train = sp.csr_matrix(dense)
    model = IALS(num_factors=4, alpha=2.0, reg=0.5, reg_exponent=exponent, epochs=3).fit(
        train, rng, log=lambda line: None)
    # The exact minimiser over x_u with Y fixed is one user sweep's row.
    expected = model._sweep(model._train, model.item_factors, model.user_factors,
                            model._user_reg)
    for u in (0, 7):
        items = train.indices[train.indptr[u]:train.indptr[u + 1]]
        result = F.fold_in(model, items, 15)
        assert result.optimizer == "closed form"
        np.testing.assert_allclose(result.rows["user_factors"], expected[u], rtol=1e-8)
        np.testing.assert_allclose(result.scores, expected[u] @ model.item_factors.T, rtol=1e-5)


def test_bad_input_is_named():
    model = two_group_gmf()
    rng = np.random.default_rng(0)
    with pytest.raises(F.FoldInError, match="has no items to fold in from"):
        F.fold_in(model, [], ITEMS, rng)
    with pytest.raises(F.FoldInError, match=r"item 13 of the new user is not in 0\.\.12"):
        F.fold_in(model, [1, 13], ITEMS, rng)
    with pytest.raises(F.FoldInError, match="item -1 of new user 1 is not in"):
        F.fold_in_users(model, [[1], [-1]], ITEMS, rng)
    with pytest.raises(F.FoldInError, match="has every one of the 13 items"):
        F.fold_in(model, range(ITEMS), ITEMS, rng)
    with pytest.raises(F.FoldInError, match="can be paired with only 1 items"):
        F.fold_in(model, range(12), ITEMS, rng, num_neg=2)
    with pytest.raises(F.FoldInError, match="expected integer item ids"):
        F.fold_in(model, [1.5], ITEMS, rng)
    with pytest.raises(F.FoldInError, match="rng .* is required"):
        F.fold_in(model, [1], ITEMS)
    with pytest.raises(F.FoldInError, match="num_items is 12, but the GMF model has 13 items"):
        F.fold_in(model, [1], 12, rng)
    with pytest.raises(F.FoldInError, match="steps must be a positive integer, got 0"):
        F.fold_in(model, [1], ITEMS, rng, steps=0)
    with pytest.raises(F.FoldInError, match="lr must be a positive number, got -1"):
        F.fold_in(model, [1], ITEMS, rng, lr=-1)
    with pytest.raises(F.FoldInError, match="cannot fold a user into str"):
        F.fold_in("model", [1], ITEMS, rng)
    with pytest.raises(F.FoldInError, match="the IALS model is not fitted"):
        F.fold_in(IALS(num_factors=2), [1], ITEMS)
    with pytest.raises(F.FoldInError, match=r"k must be an integer in 1\.\.13, got 0"):
        F.fold_in(model, [1], ITEMS, rng, steps=1).top_k(0)


# ----------------------------------------------------------------------------
# bin/recommend --fold_in


@pytest.fixture
def saved_neumf(tmp_path):
    from conftest import write_dataset
    from trained_models import save_model
    from ncf_tf.data.loader import load_dataset
    info = write_dataset(tmp_path / "data")
    data = load_dataset(info["folder"], info["name"])
    model = spread_model("NeuMF", data.num_users, data.num_items, seed=2)
    _, record = save_model(model, tmp_path / "runs", "NeuMF", info)
    return info, data, model, record


def run_recommend(argv, capsys):
    from ncf_tf.cli import recommend as recommend_cli
    code = recommend_cli.main(["recommend", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_recommend_fold_in_file(saved_neumf, tmp_path, capsys):
    info, data, model, record = saved_neumf
    listed = tmp_path / "new.txt"
    listed.write_text("3 5, 7\n# a comment\n\n5 11\n")
    code, out, err = run_recommend(["--record", record, "--fold_in", str(listed), "--topk", "4",
                                    "--fold_in_steps", "30"], capsys)
    assert code == 0, err
    assert "Fold-in of a new user from 4 items (30 Adam steps" in err
    lines = out.strip().splitlines()
    assert lines[0] == "user,rank,item,score" and len(lines) == 5
    rows = [line.split(",") for line in lines[1:]]
    want = F.fold_in(model, [3, 5, 7, 11], data.num_items, np.random.default_rng(0), steps=30)
    items, scores = want.top_k(4)
    assert [r[0] for r in rows] == ["new"] * 4 and [r[1] for r in rows] == ["1", "2", "3", "4"]
    assert [int(r[2]) for r in rows] == items.tolist()
    assert not {3, 5, 7, 11} & {int(r[2]) for r in rows}
    np.testing.assert_allclose([float(r[3]) for r in rows], scores, atol=2e-6)


def test_recommend_fold_in_raw_ids_and_json(saved_neumf, tmp_path, capsys):
    import json
    from trained_models import write_id_maps
    info, data, model, record = saved_neumf
    _, item_ids = write_id_maps(info["folder"], info["name"], data.num_users, data.num_items)
    listed = tmp_path / "new.txt"
    listed.write_text(f"{item_ids[3]}\n{item_ids[8]}\n")
    output = tmp_path / "top.json"
    code, out, err = run_recommend(["--record", record, "--fold_in", str(listed), "--topk", "3",
                                    "--fold_in_steps", "10", "--output", str(output)], capsys)
    assert code == 0, err
    written = json.loads(output.read_text())
    assert written["fold_in"]["items"] == 2 and written["fold_in"]["steps"] == 10
    (only,) = written["recommendations"]
    want = F.fold_in(model, [3, 8], data.num_items, np.random.default_rng(0), steps=10)
    assert only["user"] == "new"
    assert only["items"] == [item_ids[i] for i in want.top_k(3)[0]]


def test_recommend_fold_in_bad_input(saved_neumf, tmp_path, capsys):
    from trained_models import write_id_maps
    info, data, model, record = saved_neumf
    empty, unknown, missing = tmp_path / "empty.txt", tmp_path / "unknown.txt", tmp_path / "no.txt"
    empty.write_text("# nothing\n\n")
    unknown.write_text("3 x9\n")
    cases = [
        (["--fold_in", str(empty)], r"--fold_in .*empty\.txt: lists no item id"),
        (["--fold_in", str(unknown)], r"--fold_in .*unknown\.txt: 'x9' is not a item id"),
        (["--fold_in", str(missing)], r"--fold_in .*no\.txt: cannot read it \(FileNotFoundError"),
        (["--fold_in", str(unknown), "--users", "1"], r"give either --users .* or --fold_in"),
        (["--fold_in", str(unknown), "--fold_in_steps", "0"],
         r"--fold_in_steps must be a positive integer, got 0"),
    ]
    for argv, message in cases:
        output = tmp_path / "out.csv"
        code, out, err = run_recommend(["--record", record, *argv, "--output", str(output)],
                                       capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (argv, err)
        assert lines[0].startswith("recommend: error: ") and re.search(message, lines[0]), lines
        assert not output.exists()
    write_id_maps(info["folder"], info["name"], data.num_users, data.num_items)
    unknown.write_text("m5\nm10\nm7\n")
    code, _, err = run_recommend(["--record", record, "--fold_in", str(unknown)], capsys)
    assert code == 2 and re.search(r"--fold_in .*unknown\.txt: unknown item id 'm7'", err), err


# ----------------------------------------------------------------------------
# The ml-1m experiment, on a toy data set


def test_fold_in_experiment_records_every_stage_once(tmp_path):
    from conftest import write_dataset
    from ncf_tf.core import records
    from ncf_tf.serve import fold_in_experiment as X
    info = write_dataset(tmp_path / "data")
    settings = X.FoldInExperiment(path=info["folder"], dataset=info["name"], model="GMF",
                                  epochs=2, held_out=6, fold_in_steps=5,
                                  results_dir=str(tmp_path / "runs"),
                                  model_dir=str(tmp_path / "models"))
    lines = []
    results = X.run(settings, log=lines.append)
    held = X.held_out_users(40, 6, 0)
    np.testing.assert_array_equal(held, X.held_out_users(40, 6, 0))
    without = records.read_json(settings.record_path("without"))
    assert without["status"] == "finished" and without["held_out_users"] == held.tolist()
    assert without["num_train"] == 536 - sum(len(np.flatnonzero(r)) for r in
                                             _rows(info, held))
    record = results["GMF"]
    for name in ("folded_in", "trained_with", "untouched_rows"):
        part = getattr(record, name)
        assert part["n_users"] == 6 and set(part) >= {"hr", "ndcg", "auc"}
    assert results["iALS"].fold_in["optimizer"] == "closed form"
    again = []
    X.run(settings, log=again.append)
    assert sum("already recorded" in line for line in again) == 4


def _rows(info, users):
    train = np.zeros((info["num_users"], info["num_items"]))
    for u, i in info["train"]:
        train[u, i] = 1
    return train[users]


def test_held_out_rows_are_emptied():
    from ncf_tf.serve import fold_in_experiment as X
    train = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0], [1, 1, 1]], np.float64))
    emptied = X.without_users(train, np.array([0, 2]))
    assert emptied.shape == (3, 3) and emptied.toarray().tolist() == [[0, 0, 0], [0, 1, 0],
                                                                       [0, 0, 0]]
    with pytest.raises(ValueError, match=r"held_out must be in 1\.\.2, got 3"):
        X.held_out_users(3, 3, 0)


@pytest.mark.parametrize("model", ["GMF", "NeuMF"])
def test_experiment_builds_the_seeded_model_of_the_scripts(model):
    from ncf_tf.models import neumf
    from ncf_tf.serve import fold_in_experiment as X
    built = X.build(X.FoldInExperiment(model=model, seed=3), 7, 9)
    direct = (gmf.build(7, 9, 8, (0.0, 0.0), 3) if model == "GMF" else
              neumf.build(7, 9, 8, [64, 32, 16, 8], [0, 0, 0, 0], 0.0, 3))
    assert [w.name for w in built.weights] == [w.name for w in direct.weights]
    for got, want in zip(built.get_weights(), direct.get_weights()):
        np.testing.assert_array_equal(got, want)
