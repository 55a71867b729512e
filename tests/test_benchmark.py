"""bin/benchmark's arithmetic (its timings are printed, never asserted)."""

from ncf_tf.bench import benchmark
from ncf_tf.models import mlp, neumf
from ncf_tf.train.config import TrainConfig


def test_scoring_flops_count_the_factored_work():
    # NeuMF, 3 users x 4 items, F = 2, tower [8, 4, 2]: layer1's halves once
    # per user and item, 2 x 7 rows x (4 x 4); per pair layer2 2 x 4 x 2, the
    # GMF product 2 x 2 and the tower's part of the output layer 2 x 2.
    model = neumf.build(3, 4, 2, [8, 4, 2], [0, 0, 0])
    assert benchmark.scoring_flops(model, 10) == 2 * 7 * 4 * 4 + 10 * (16 + 4 + 4)
    # MLP-0: separable, only the output's two terms per pair (2 x 1 each side).
    assert benchmark.scoring_flops(mlp.build(3, 4, [8], [0]), 10) == 10 * 2


def test_a_training_step_counts_the_tower_three_times():
    # NeuMF-1, tower [8, 4, 2, 1], batch 2: forward 2 x 2 x (8x4 + 4x2 + 2x1)
    # plus the output layer's 2 x 2 x (2 x 1); the backward twice that.
    assert benchmark.tower_shapes(1, batch=2) == [(2, 8, 4), (2, 4, 2), (2, 2, 1), (2, 2, 1)]
    assert benchmark.neumf_config(1, batch=2).step_flops() == 3 * 2 * 2 * (32 + 8 + 2 + 2)
    # GMF: only the output layer (F x 1); MLP: the tower and its last layer's output
    assert TrainConfig("GMF", num_factors=4, batch_size=2).step_flops() == 3 * 2 * 2 * 4
    assert TrainConfig("MLP", layers=[8, 4], batch_size=2).step_flops() == 3 * 2 * 2 * (32 + 4)


def test_a_dense_step_moves_the_model_and_a_sparse_one_the_batch_rows():
    # 1,000 parameters of which 900 in the tables; 4 batch rows of width 10;
    # 28 bytes a parameter at 28 bytes/s; no arithmetic (infinite rate).
    rate = float("inf")
    assert benchmark.table_floor_s("dense", 1000, 900, 10, 4, 8, 28.0, rate) == 1000
    assert benchmark.table_floor_s("deferred", 1000, 900, 10, 4, 8, 28.0, rate) == 40 + 100
    assert benchmark.table_floor_s("lazy", 1000, 900, 10, 4, 8, 28.0, rate) == 140
