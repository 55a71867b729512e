"""Evaluation: HR@K / NDCG@K, leave-one-out with sampled negatives, full ranking."""
