"""Neural Collaborative Filtering (He et al., WWW 2017) in TensorFlow 2 / Keras 3."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is not
# information for a user of the training scripts; real errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__all__ = ["Recommender", "leave_latest_out", "leave_random_out"]


def __getattr__(name: str):
    # Imported on first use: ``import ncf_tf`` stays light (no Keras), so the
    # command-line tools that need no model start fast.
    if name == "Recommender":
        from ncf_tf.core import quiet
        quiet.import_backend()   # without TensorFlow's start-up lines
        from ncf_tf.api.recommender import Recommender
        return Recommender
    if name in ("leave_latest_out", "leave_random_out"):
        from ncf_tf.api import frames
        return getattr(frames, name)
    raise AttributeError(f"module 'ncf_tf' has no attribute {name!r}")
