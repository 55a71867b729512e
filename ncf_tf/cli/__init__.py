"""The command-line layer: every module that parses flags, and nothing else.

Each ``bin/`` script is ``run("<its name>")``: the module of :data:`COMMANDS`
parses ``sys.argv`` and calls the library; the exit code is the process's.
"""

from __future__ import annotations

import importlib
import sys

# bin/<name> -> (module of ncf_tf.cli, the arguments before argv of its main, whether
# it needs Keras: imported first, with TensorFlow's C++ start-up lines filtered out)
COMMANDS = {
    "train_gmf": ("train", ("GMF",), True),
    "train_mlp": ("train", ("MLP",), True),
    "train_neumf": ("train", ("NeuMF",), True),
    "train_baseline": ("baseline", (), False),
    "download_data": ("download", (), False),
    "prepare_data": ("prepare", (), False),
    "reproduce": ("reproduce", (), True),
    "recommend": ("recommend", (), True),
    "export": ("export", (), True),
    "plot_run": ("plot", (), False),
    "benchmark": ("benchmark", (), True),
}


def run(command: str) -> None:
    """Runs ``bin/<command>`` on ``sys.argv`` and exits with its code."""
    module, args, backend = COMMANDS[command]
    if backend:
        from ncf_tf.core import quiet
        quiet.import_backend(verbose=any(a in ("--tf_verbose", "--tf_verbose=true")
                                         for a in sys.argv[1:]))
    main = importlib.import_module(f"ncf_tf.cli.{module}").main
    sys.exit(main(*args, sys.argv))
