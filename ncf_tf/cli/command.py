"""What every ncf_tf command-line tool shares: --help, parsing, one-line errors.

Only absl here, so that light commands (bin/download_data, bin/prepare_data)
do not pay for importing Keras.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from absl import flags


def run_command(argv: list[str], default_program: str, about: str, fv: flags.FlagValues,
                body: Callable[[flags.FlagValues], None], errors: tuple = (ValueError,)) -> int:
    """The shape every ncf_tf command shares: ``--help``, parse, run, one-line errors.

    Args:
        argv: the command line, ``argv[0]`` the program.
        default_program: the name to print when ``argv`` is empty.
        about: one line saying what the command does, for ``--help``.
        fv: the command's flags.
        body: runs the command on the parsed flags.
        errors: the exceptions that mean bad input: printed as
            ``<program>: error: <first line>``, exit code 2.

    Returns:
        The exit code: 0, or 2 on bad input.
    """
    program = os.path.basename(argv[0]) if argv else default_program
    if any(arg in ("-h", "--help", "--helpfull") for arg in argv[1:]):
        print(f"{program}: {about}\n\n{fv.get_help()}")
        return 0
    try:
        rest = fv(argv)
        if len(rest) > 1:
            raise flags.Error(f"unexpected arguments {rest[1:]}; every option is a --flag")
        body(fv)
    except (flags.Error, *errors) as e:
        print(f"{program}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2
    return 0
