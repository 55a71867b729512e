"""The Python API: :class:`~ncf_tf.api.recommender.Recommender` on pandas DataFrames,
above the training run, the evaluators, serving and fold-in, below the command line."""
