"""TensorFlow's C++ start-up lines, kept out of a command's output.

Importing TensorFlow prints INFO lines from C++ (oneDNN, "Could not find cuda
drivers") to file descriptor 2 before ``TF_CPP_MIN_LOG_LEVEL`` applies;
:func:`import_backend` points it at a temporary file for the import, then
passes on every other line, so real errors still show.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import Iterator

# absl's C++ prefix of INFO and WARNING lines ("I0000 00:00:1796486603.246930 2861 port.cc:153]"),
# and the line it prints before its logging is set up.
NOISE = re.compile(r"^([IW]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\]"
                   r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                   # the second line of cpu_feature_guard's INFO notice
                   r"|To enable the following instructions: .*rebuild TensorFlow with)")


def filter_lines(text: str) -> str:
    """``text`` without TensorFlow's start-up INFO and WARNING lines."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.match(line))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Within the block, file descriptor 2 goes to a file; on leaving, its lines
    that are not start-up notices are written to the real stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = filter_lines(capture.read().decode(errors="replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


def import_backend(verbose: bool = False) -> None:
    """Imports Keras (and, on the TensorFlow backend, TensorFlow) now, with the
    start-up notices filtered unless ``verbose``; a no-op once imported."""
    if "keras" in sys.modules:
        return
    with contextlib.nullcontext() if verbose else filtered_stderr():
        import keras  # noqa: F401


class _NoRetracing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def retracing_hidden(hidden: bool = True) -> Iterator[None]:
    """Within the block (if ``hidden``), TensorFlow's warnings that a function
    was traced again are dropped: a second model in one process traces its own
    functions, which is expected, not a problem to report."""
    logger, quiet = logging.getLogger("tensorflow"), _NoRetracing()
    if hidden:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
