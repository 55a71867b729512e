"""The Python API: :class:`~ncf_tf.api.recommender.Recommender` on pandas DataFrames.

The layer above the library's others and below the command line: it calls
the training run the scripts call (:func:`ncf_tf.train.experiment.run_dataset`),
the evaluators, top-K serving and fold-in. ``ncf_tf.Recommender`` is this
package's Recommender, imported on first use (it imports Keras).
"""
