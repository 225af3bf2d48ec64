"""Structured logging on the standard library.

Every subsystem logs through a stable logger name: ``nebula.api``,
``nebula.rpc``, ``nebula.supervisor``, ``nebula.identity``,
``nebula.containers``, ``nebula.metrics``, ``nebula.files``,
``nebula.plugins``, ``nebula.db``, ``nebula.config``. The message is the event
name, and key-value fields ride in ``extra``::

    log = logging.getLogger("nebula.plugins")
    log.warning("plugin.restarted", extra={"fields": {"plugin": "x", "n": 2}})

:func:`configure_logging` installs one handler on the root logger, so
third-party records come out in the same shape. The output is a JSON object
per line (``ts``, ``level``, ``logger``, ``event``, then the fields) when the
stream is not a terminal or the format is ``json``, and a readable
``ts level logger event k=v ...`` line on a terminal or with ``console``.
A JSON record is always one line, and so is a console record apart from
an indented traceback: newlines inside events and values are escaped, so a
value cannot forge a record of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback
from collections.abc import Mapping
from typing import IO, Any

from nebula.errors import ConfigError

#: Levels by the names the configuration uses.
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

#: Third-party loggers held at WARNING at least: their INFO is noise here.
QUIET_LOGGERS: tuple[str, ...] = (
    "hypercorn.error",
    "grpc",
    "docker",
    "urllib3",
    "quart",
    "trio_websocket",
)

#: Turned off entirely: nebula logs one line per request itself.
SILENT_LOGGERS: tuple[str, ...] = ("hypercorn.access",)

#: Keys of every JSON line; a field with one of these names gets a ``_`` suffix.
RESERVED = ("ts", "level", "logger", "event")


def configure_logging(level: str, fmt: str, stream: IO[str] | None = None) -> None:
    """Send all logging to ``stream`` (default: stderr) in nebula's format.

    ``fmt`` is ``auto`` (JSON unless ``stream`` is a terminal), ``json`` or
    ``console``. Calling again replaces the handler this module installed;
    handlers installed by others (pytest's capture, say) are left alone.
    """
    out = sys.stderr if stream is None else stream
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _NebulaHandler)]:
        root.removeHandler(old)

    handler = _NebulaHandler(out)
    use_json = fmt == "json" or (fmt == "auto" and not _is_terminal(out))
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    root.addHandler(handler)

    for name in SILENT_LOGGERS:
        logging.getLogger(name).disabled = True

    set_level(level)


def set_level(level: str) -> None:
    """Change the level live (SIGHUP) without touching the format."""
    number = _level_number(level)
    root = logging.getLogger()
    root.setLevel(number)
    for handler in root.handlers:
        if isinstance(handler, _NebulaHandler):
            # Propagated records skip ancestors' logger levels but not the
            # handler's, so the handler carries the level too: that keeps a
            # quiet logger held at WARNING from leaking past an ERROR setting.
            handler.setLevel(number)

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(number, logging.WARNING))


def _level_number(level: str) -> int:
    try:
        return LEVELS[level.lower()]
    except KeyError:
        expected = ", ".join(repr(name) for name in LEVELS)
        problem = f"log.level: expected one of {expected}, got {level!r}"
        raise ConfigError([problem]) from None


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class _NebulaHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module owns, so reconfiguring replaces only it."""


# -- formatting ------------------------------------------------------------------


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The key-value fields a record carries, including a formatted exception."""
    fields = getattr(record, "fields", None)
    found: dict[str, Any] = dict(fields) if isinstance(fields, Mapping) else {}
    if record.exc_info and record.exc_info[0] is not None:
        found["exc"] = "".join(traceback.format_exception(*record.exc_info))
    if record.stack_info:
        found["stack"] = record.stack_info
    return found


def _timestamp(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, event, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            line[f"{key}_" if key in RESERVED else str(key)] = value
        return json.dumps(line, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``ts level logger event k=v ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        exc = fields.pop("exc", None)
        parts = [
            _timestamp(record),
            f"{record.levelname.lower():<8}",
            record.name,
            _escape(record.getMessage()),
        ]
        parts.extend(f"{key}={_console_value(value)}" for key, value in fields.items())
        line = " ".join(parts)
        if exc:
            # A traceback reads best as itself, indented under its record.
            line += "\n" + "\n".join("    " + row for row in exc.rstrip().splitlines())
        return line


def _console_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    needs_quotes = (
        text == "" or any(c in text for c in ' "=\\') or not text.isprintable()
    )
    return json.dumps(text, ensure_ascii=False) if needs_quotes else text


def _escape(text: str) -> str:
    return text if text.isprintable() else json.dumps(text, ensure_ascii=False)[1:-1]
