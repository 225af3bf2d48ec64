"""The command line: ``python -m nebula [--config PATH] [COMMAND]``.

Commands:

- ``serve`` (the default): run the daemon until a stop signal;
- ``check-config``: print the effective configuration, secrets masked, as
  YAML (exit 0), or each problem on its own line on stderr (exit 2);
- ``admin ...``: break-glass commands, registered by :mod:`nebula.cli_admin`.

Every command loads the configuration first, so a bad one exits 2 with its
problems on stderr before anything is opened or bound. ``--config`` may come
before or after the command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

import yaml

from nebula import cli_admin
from nebula.config import Config, load_config, resolve_config_path
from nebula.errors import ConfigError
from nebula.logs import configure_logging

#: Exit status for a configuration or usage problem (argparse uses it too).
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace, Config], int]

log = logging.getLogger("nebula.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the process exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    args.config_path = resolve_config_path(args.config, os.environ)
    try:
        config = load_config(args.config_path, os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE

    handler: Handler = args.handler
    return handler(args, config)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree, admin commands included."""
    parser = argparse.ArgumentParser(
        prog="nebula",
        description="Backend daemon of a server control panel.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="serviceconfig.yaml to read (default: $NEBULA_CONFIG, else none)",
    )
    parser.set_defaults(handler=_serve)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the daemon (the default)")
    serve.set_defaults(handler=_serve)
    check = commands.add_parser(
        "check-config", help="print the effective configuration, or its problems"
    )
    check.set_defaults(handler=_check_config)
    admin = commands.add_parser("admin", help="break-glass commands for operators")
    admin.set_defaults(handler=_usage(admin))
    cli_admin.register(admin.add_subparsers(title="admin commands", metavar="COMMAND"))

    for sub in (serve, check, admin):
        # SUPPRESS: when absent after the command, keep the global --config.
        sub.add_argument(
            "--config", metavar="PATH", default=argparse.SUPPRESS, help="as above"
        )
    return parser


def _serve(args: argparse.Namespace, config: Config) -> int:
    configure_logging(config.log.level, config.log.format)
    log.info(
        "config.loaded",
        extra={"fields": {"path": args.config_path, "environment": config.environment}},
    )
    # Imported here so that check-config and admin commands never pay for
    # (or depend on) the server stack.
    daemon = importlib.import_module("nebula.daemon")
    code: int = daemon.run(config, args.config_path)
    return code


def _check_config(args: argparse.Namespace, config: Config) -> int:
    source = args.config_path or "no file: defaults and environment"
    print(f"# effective configuration ({source})")
    print(yaml.safe_dump(config.masked(), sort_keys=False), end="")
    return 0


def _usage(parser: argparse.ArgumentParser) -> Handler:
    """A handler for a command group run without a command: its help, exit 2."""

    def handler(args: argparse.Namespace, config: Config) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    return handler


if __name__ == "__main__":
    sys.exit(main())
