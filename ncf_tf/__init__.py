"""Neural Collaborative Filtering (He et al., WWW 2017) in TensorFlow 2 / Keras 3."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is not
# information for a user of the training scripts; real errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
