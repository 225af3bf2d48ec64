"""Break-glass commands for operators on the host: ``nebula admin <command>``.

This is the registration point only; it adds no commands yet.

The contract with :mod:`nebula.__main__`: :func:`register` adds one parser per
command to the sub-parsers action it is given, and each parser calls
``set_defaults(handler=fn)`` where ``fn(args, config) -> int`` returns the
exit status. By the time ``fn`` runs, ``main`` has loaded and checked the
configuration (``--config``, ``NEBULA_CONFIG``, the environment), configured
logging to stderr, and put the file's path (or None) in ``args.config_path``.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the admin commands to ``subparsers``."""
