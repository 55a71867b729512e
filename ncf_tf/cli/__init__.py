"""The command-line layer: every module that parses flags, and nothing else.

Each ``bin/`` script imports its command's ``main`` and exits with its code; the
same functions are the package's ``console_scripts`` (setup.cfg). A ``main``
parses ``sys.argv`` (or the list it is given) and calls the library.
"""
