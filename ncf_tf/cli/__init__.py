"""The command-line layer: every module that parses flags, and nothing else.

Each ``bin/`` script is ``run("<its name>")``: the module of :data:`COMMANDS`
parses ``sys.argv`` and calls the library; the exit code is the process's.
"""

from __future__ import annotations

import importlib
import sys

# bin/<name> -> (module of ncf_tf.cli, the arguments before argv of its main). The
# modules import no Keras at import; those that need it say so to run_command, which
# imports it with TensorFlow's C++ start-up lines filtered out.
COMMANDS = {
    "train_gmf": ("train", ("GMF",)),
    "train_mlp": ("train", ("MLP",)),
    "train_neumf": ("train", ("NeuMF",)),
    "train_baseline": ("baseline", ()),
    "download_data": ("download", ()),
    "prepare_data": ("prepare", ()),
    "reproduce": ("reproduce", ()),
    "recommend": ("recommend", ()),
    "export": ("export", ()),
    "plot_run": ("plot", ()),
    "benchmark": ("benchmark", ()),
}


def run(command: str) -> None:
    """Runs ``bin/<command>`` on ``sys.argv`` and exits with its code."""
    module, args = COMMANDS[command]
    main = importlib.import_module(f"ncf_tf.cli.{module}").main
    sys.exit(main(*args, sys.argv))
