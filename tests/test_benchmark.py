"""bin/benchmark's arithmetic (its timings are printed, never asserted)."""

from ncf_tf.bench import benchmark
from ncf_tf.models import mlp, neumf


def test_scoring_flops_count_the_factored_work():
    # NeuMF, 3 users x 4 items, F = 2, tower [8, 4, 2]: layer1's halves once
    # per user and item, 2 x 7 rows x (4 x 4); per pair layer2 2 x 4 x 2, the
    # GMF product 2 x 2 and the tower's part of the output layer 2 x 2.
    model = neumf.build(3, 4, 2, [8, 4, 2], [0, 0, 0])
    assert benchmark.scoring_flops(model, 10) == 2 * 7 * 4 * 4 + 10 * (16 + 4 + 4)
    # MLP-0: separable, only the output's two terms per pair (2 x 1 each side).
    assert benchmark.scoring_flops(mlp.build(3, 4, [8], [0]), 10) == 10 * 2
