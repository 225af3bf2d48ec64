"""Break-glass commands for operators on the host: ``nebula admin <command>``.

- ``create-user USERNAME [--admin] [--email E] [--password-stdin]``
- ``reset-password USERNAME [--password-stdin]`` (ends every session)
- ``revoke-sessions USERNAME [--tokens]`` (and API tokens with ``--tokens``)
- ``disable-2fa USERNAME``
- ``backup PATH [--overwrite]``

They open ``<data_dir>/nebula.sqlite3`` with their own connection
(:func:`nebula.db.connect_sync`) and work while the daemon runs: SQLite's
WAL and ``busy_timeout`` serialise the writes, and the daemon's credential
check reads each session or token row, with its user's security epoch, on
every request, so a revocation made here is seen by the daemon's very next
request. Each change is written to the audit log (face ``cli``) in the same
transaction.

Passwords come from a terminal prompt (twice, not echoed), or with
``--password-stdin`` from the first line of standard input; never from the
command line, where ``ps`` would show them.

The contract with :mod:`nebula.__main__`: each parser sets
``handler=fn(args, config) -> int``, the exit status: 0 done, 1 refused or
failed (the reason on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

from nebula.config import Config
from nebula.errors import NebulaError, NotFound

EXIT_OK = 0
EXIT_FAILED = 1

Handler = Callable[[argparse.Namespace, Config], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the admin commands to ``subparsers``."""
    create = subparsers.add_parser("create-user", help="create a user (or an admin)")
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="give the admin role")
    create.add_argument("--email", default=None)
    _password_option(create)
    create.set_defaults(handler=_guarded(cmd_create_user))

    reset = subparsers.add_parser(
        "reset-password", help="set a new password and end every session"
    )
    reset.add_argument("username")
    _password_option(reset)
    reset.set_defaults(handler=_guarded(cmd_reset_password))

    revoke = subparsers.add_parser("revoke-sessions", help="end a user's sessions")
    revoke.add_argument("username")
    revoke.add_argument(
        "--tokens", action="store_true", help="revoke the user's API tokens too"
    )
    revoke.set_defaults(handler=_guarded(cmd_revoke_sessions))

    totp_off = subparsers.add_parser("disable-2fa", help="turn off a user's TOTP")
    totp_off.add_argument("username")
    totp_off.set_defaults(handler=_guarded(cmd_disable_2fa))

    backup = subparsers.add_parser("backup", help="online copy of the database")
    backup.add_argument("path")
    backup.add_argument("--overwrite", action="store_true")
    backup.set_defaults(handler=cmd_backup)


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )


# -- commands ----------------------------------------------------------------


def cmd_create_user(args: argparse.Namespace, config: Config) -> int:
    from nebula.services.identity import passwords, users
    from nebula.services.identity.permissions import ADMIN_ROLE, USER_ROLE

    passwords.check_username(args.username, "username")
    users.check_email(args.email, "--email")
    password = _read_password(args.password_stdin, args.username)
    password_hash = _hasher(config).hash_sync(password)
    role_names = [ADMIN_ROLE] if args.admin else [USER_ROLE]

    def create(conn: sqlite3.Connection, now: float) -> int:
        user_id = users.insert(
            conn,
            username=args.username,
            email=args.email,
            password_hash=password_hash,
            role_names=role_names,
            active=True,
            now=now,
        )
        _audit(conn, "users.create", args.username, {"roles": role_names})
        return user_id

    user_id = _in_transaction(config, create)
    print(f"created user {args.username} (id {user_id}, roles {', '.join(role_names)})")
    return EXIT_OK


def cmd_reset_password(args: argparse.Namespace, config: Config) -> int:
    from nebula.services.identity import sessions, users

    _find_user(config, args.username)  # fail before asking for a password
    password = _read_password(args.password_stdin, args.username)
    password_hash = _hasher(config).hash_sync(password)

    def reset(conn: sqlite3.Connection, now: float) -> int:
        row = _user_row(conn, args.username)
        users.set_password(conn, row["id"], password_hash, now)
        ended = sessions.revoke_user(conn, row["id"])
        _audit(conn, "users.reset_password", args.username, {"sessions_ended": ended})
        return ended

    ended = _in_transaction(config, reset)
    print(f"password of {args.username} reset; {ended} session(s) ended")
    return EXIT_OK


def cmd_revoke_sessions(args: argparse.Namespace, config: Config) -> int:
    from nebula.services.identity import sessions, tokens, users

    def revoke(conn: sqlite3.Connection, now: float) -> tuple[int, int]:
        row = _user_row(conn, args.username)
        ended = sessions.revoke_user(conn, row["id"])
        revoked = tokens.revoke_user(conn, row["id"]) if args.tokens else 0
        users.bump_epoch(conn, row["id"], now)
        details = {"sessions_ended": ended, "tokens_revoked": revoked}
        _audit(conn, "users.revoke_sessions", args.username, details)
        return ended, revoked

    ended, revoked = _in_transaction(config, revoke)
    suffix = f" and {revoked} API token(s) revoked" if args.tokens else ""
    print(f"{ended} session(s) of {args.username} ended{suffix}")
    return EXIT_OK


def cmd_disable_2fa(args: argparse.Namespace, config: Config) -> int:
    from nebula.services.identity import users

    def disable(conn: sqlite3.Connection, now: float) -> bool:
        row = _user_row(conn, args.username)
        was_on = row["totp_secret"] is not None
        users.clear_totp(conn, row["id"], now)
        _audit(conn, "auth.totp_disable", args.username, {"was_enabled": was_on})
        return was_on

    was_on = _in_transaction(config, disable)
    state = "disabled" if was_on else "was not enabled; nothing to do"
    print(f"TOTP of {args.username} {state}")
    return EXIT_OK


def cmd_backup(args: argparse.Namespace, config: Config) -> int:
    from nebula.db.cli import cmd_backup as backup

    return backup(config, args.path, overwrite=args.overwrite)


# -- helpers -----------------------------------------------------------------


def _guarded(command: Handler) -> Handler:
    """Report a refusal (taken name, unknown user, policy) on stderr, exit 1."""

    def handler(args: argparse.Namespace, config: Config) -> int:
        try:
            return command(args, config)
        except NebulaError as exc:
            print(f"nebula: {exc.message}", file=sys.stderr)
            return EXIT_FAILED
        except sqlite3.Error as exc:
            print(f"nebula: database error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except (EOFError, KeyboardInterrupt):
            print("\nnebula: cancelled", file=sys.stderr)
            return EXIT_FAILED

    return handler


def _hasher(config: Config) -> Any:
    from nebula.services.identity.passwords import PasswordHasher

    return PasswordHasher(
        time_cost=config.auth.argon2_time_cost,
        memory_kib=config.auth.argon2_memory_kib,
        parallelism=config.auth.argon2_parallelism,
    )


def _read_password(from_stdin: bool, username: str) -> str:
    from nebula.errors import BadRequest
    from nebula.services.identity.passwords import check_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"New password for {username}: ")
        if getpass.getpass("Again: ") != password:
            raise BadRequest("The two passwords differ; nothing changed.")
    else:
        raise BadRequest(
            "No terminal to prompt on; pass --password-stdin and pipe the password."
        )
    check_password(password, username, "password")
    return password


def _connect(config: Config) -> sqlite3.Connection:
    from nebula.db import connect_sync, database_path

    return connect_sync(database_path(config.data_dir))


def _in_transaction(
    config: Config, fn: Callable[[sqlite3.Connection, float], Any]
) -> Any:
    from nebula.db import transaction

    conn = _connect(config)
    try:
        with transaction(conn):
            return fn(conn, dt.datetime.now(dt.UTC).timestamp())
    finally:
        conn.close()


def _user_row(conn: sqlite3.Connection, username: str) -> sqlite3.Row:
    from nebula.services.identity import users

    row = users.by_username(conn, username)
    if row is None:
        raise NotFound(f"There is no user named {username!r}.")
    return row


def _find_user(config: Config, username: str) -> None:
    conn = _connect(config)
    try:
        _user_row(conn, username)
    finally:
        conn.close()


def _audit(
    conn: sqlite3.Connection, action: str, target: str, details: dict[str, Any]
) -> None:
    """One audit row, in the command's own transaction (face ``cli``)."""
    from nebula.services.audit import utc_timestamp

    actor = f"cli:{_os_user()}"
    conn.execute(
        "INSERT INTO audit_log (ts, actor, actor_id, credential, client_addr,"
        " request_id, face, action, target, outcome, details)"
        " VALUES (?, ?, NULL, 'cli', NULL, NULL, 'cli', ?, ?, 'ok', ?)",
        (
            utc_timestamp(dt.datetime.now(dt.UTC)),
            actor,
            action,
            target,
            json.dumps(details, sort_keys=True),
        ),
    )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
