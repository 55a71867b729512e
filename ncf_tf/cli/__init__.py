"""The command-line layer: every module that parses flags, and nothing else. Each
``bin/`` script (and console_script) calls a ``main(argv=None)`` that returns the exit code."""
