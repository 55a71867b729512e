"""What every ncf_tf command-line tool shares: --help, parsing, one-line errors.
Only absl here, so that light commands do not pay for importing Keras."""

from __future__ import annotations

import os
import re
import sys
from typing import Callable

from absl import flags

from ncf_tf.core import quiet
from ncf_tf.core.files import OutputError, check_output_dir, check_output_parent

# (flag, what it names): "dir" a folder the command writes into, "in" a file or a
# new folder, whose parent must be writable. Checked before any work is done.
Outputs = tuple[tuple[str, str], ...]
TRACEBACK_ENV = "NCF_TF_TRACEBACK"
_NAME = re.compile(r"[A-Za-z_]\w*(?=[\s\[:,]|$)")
_JOINT = re.compile(r", | and | or ")


def check_outputs(fv: flags.FlagValues, outputs: Outputs) -> None:
    """Raises OutputError, naming the flag, for an output that cannot be written."""
    for flag, kind in outputs:
        path = fv[flag].value
        if path:
            (check_output_dir if kind == "dir" else check_output_parent)(path, flag)


def in_flags(text: str, fv: flags.FlagValues, names: dict[str, str] | None = None) -> str:
    """A library message in the command's words: ``layers[0] must be even``, ``pass
    learner='adam'``, ``drop `path``` become ``--layers[0] must be even``, ``pass
    --learner adam``, ``drop --path``: leading parameter names, ``name=value`` with a
    quoted, numeric or True value, and backquoted names. ``names`` maps parameters
    whose flag is named otherwise; names that are no flag of ``fv`` stay as they are.
    """
    names = names or {}

    def flag(name: str) -> str | None:
        return names.get(name, name if name in fv else None)

    def assignment(match: re.Match) -> str:
        name, value = flag(match[1]), match[2].strip("'")
        return (f"--{name}" if match[2] == "True" else f"--{name} {value}") if name else match[0]

    def quoted(match: re.Match) -> str:
        return f"--{flag(match[1])}" if flag(match[1]) else match[0]

    text = re.sub(r"(?<![\w-])([A-Za-z_]\w*)=('[^']*'|True\b|[-+]?\d[\w.+-]*)", assignment,
                  text)
    text = re.sub(r"`([A-Za-z_]\w*)`", quoted, text)
    at = 0
    while (name := _NAME.match(text, at)) and flag(name[0]):   # "a and b must ..."
        text = f"{text[:at]}--{flag(name[0])}{text[name.end():]}"
        at += 2 + len(flag(name[0]))
        if not (joint := _JOINT.match(text, at)):
            break
        at = joint.end()
    return text


def _line(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, OSError) and e.strerror:
        text = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return text.splitlines()[0] if text else type(e).__name__


def run_command(argv: list[str] | None, default_program: str, about: str, fv: flags.FlagValues,
                body: Callable[[flags.FlagValues], None], errors: tuple = (ValueError,),
                outputs: Outputs = (), backend: bool = False,
                check: Callable[[flags.FlagValues], object] | None = None,
                names: dict[str, str] | None = None) -> int:
    """``--help``, parse, check, run, one-line errors: the shape every command shares.

    Args:
        argv: the command line, ``argv[0]`` the program; None: ``sys.argv``.
        default_program: the name to print when ``argv`` is empty.
        about: one line for ``--help``.
        fv: the command's flags; ``--tf_verbose`` is added to them.
        body: runs the command on the parsed flags.
        errors: the exceptions that mean bad input (exit code 2).
        outputs: the output flags, checked before ``body`` runs (:func:`check_outputs`).
        backend: import Keras before ``body``, TensorFlow's start-up lines filtered.
        check: checks the flags before Keras is imported; raises one of ``errors``.
        names: library parameters whose flag is named otherwise (:func:`in_flags`).

    Returns:
        The exit code: 0; 2 on bad input or an unwritable output; 1 on any other
        exception, also as one line (``NCF_TF_TRACEBACK=1`` re-raises it); 130
        when interrupted.
    """
    argv = sys.argv if argv is None else argv
    program = os.path.basename(argv[0]) if argv else default_program
    if "tf_verbose" not in fv:
        # Not --verbose: the training scripts' --verbose is the authors' evaluation interval.
        flags.DEFINE_boolean("tf_verbose", False, "Show TensorFlow's C++ start-up lines "
                             "(filtered out by default).", flag_values=fv)
    if any(arg in ("-h", "--help", "--helpfull") for arg in argv[1:]):
        print(f"{program}: {about}\n\n{fv.get_help()}")
        return 0
    try:
        rest = fv(argv)
        if len(rest) > 1:
            raise flags.Error(f"unexpected arguments {rest[1:]}; every option is a --flag")
        check_outputs(fv, outputs)
        if check is not None:
            check(fv)
        if backend:
            quiet.import_backend(verbose=fv.tf_verbose)
        with quiet.retracing_hidden(not fv.tf_verbose):
            body(fv)
    except (flags.Error, OSError, OutputError, *errors) as e:
        print(f"{program}: error: {in_flags(_line(e), fv, names)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line, unless asked
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"{program}: error: {type(e).__name__}: {_line(e)} (set {TRACEBACK_ENV}=1 "
              "for the traceback)", file=sys.stderr)
        return 1
    return 0
