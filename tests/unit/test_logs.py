"""Structured logging: JSON lines, console lines, levels and quiet loggers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from nebula.errors import ConfigError
from nebula.logs import configure_logging, set_level


class Tty(io.StringIO):
    """A string stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger and the tuned loggers back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("hypercorn.access", "hypercorn.error", "urllib3", "docker", "grpc")
    saved = {
        n: (logging.getLogger(n).level, logging.getLogger(n).disabled) for n in names
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, (lvl, disabled) in saved.items():
        logging.getLogger(name).setLevel(lvl)
        logging.getLogger(name).disabled = disabled


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_event_and_fields() -> None:
    """A record becomes one JSON object: ts, level, logger, event, fields."""
    out = io.StringIO()
    configure_logging("info", "json", out)
    logging.getLogger("nebula.plugins").warning(
        "plugin.restarted", extra={"fields": {"plugin": "sample", "attempt": 2}}
    )
    (line,) = json_lines(out)
    assert line["event"] == "plugin.restarted"
    assert line["level"] == "warning"
    assert line["logger"] == "nebula.plugins"
    assert line["plugin"] == "sample"
    assert line["attempt"] == 2
    assert isinstance(line["ts"], str)
    assert line["ts"].endswith("Z")


def test_auto_format_is_json_when_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", out)
    logging.getLogger("nebula.api").info("request", extra={"fields": {"status": 200}})
    assert json_lines(out)[0]["status"] == 200


def test_auto_format_is_console_on_a_terminal() -> None:
    """On a terminal: `ts level logger event k=v` in one line."""
    out = Tty()
    configure_logging("info", "auto", out)
    logging.getLogger("nebula.rpc").info(
        "call.done", extra={"fields": {"method": "system.ping", "ms": 1.5}}
    )
    (line,) = out.getvalue().splitlines()
    parts = line.split()
    assert parts[1:] == [
        "info",
        "nebula.rpc",
        "call.done",
        "method=system.ping",
        "ms=1.5",
    ]
    assert parts[0].endswith("Z")


def test_console_quotes_values_with_spaces_and_escapes_newlines() -> None:
    """A value cannot break the line or fake another key."""
    out = io.StringIO()
    configure_logging("info", "console", out)
    logging.getLogger("nebula.api").info(
        "login.failed", extra={"fields": {"user": "bob x=1\nFAKE", "n": None}}
    )
    (line,) = out.getvalue().splitlines()
    assert line.endswith('user="bob x=1\\nFAKE" n=null')


def test_json_escapes_newlines_in_the_event() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    logging.getLogger("nebula.api").info("two\nlines")
    (line,) = json_lines(out)
    assert line["event"] == "two\nlines"


def test_reserved_field_names_do_not_overwrite_the_record() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    logging.getLogger("nebula.api").info("x", extra={"fields": {"event": "forged"}})
    (line,) = json_lines(out)
    assert line["event"] == "x"
    assert line["event_"] == "forged"


def test_exception_is_a_field() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("nebula.supervisor").exception("service.crashed")
    (line,) = json_lines(out)
    assert isinstance(line["exc"], str)
    assert "RuntimeError: boom" in line["exc"]


def test_unserialisable_values_are_written_as_text() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    logging.getLogger("nebula.db").info("x", extra={"fields": {"obj": object()}})
    assert str(json_lines(out)[0]["obj"]).startswith("<object object")


def test_level_filters_and_set_level_changes_it_live() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", out)
    log = logging.getLogger("nebula.api")
    log.info("hidden")
    set_level("debug")
    log.debug("shown")
    assert [line["event"] for line in json_lines(out)] == ["shown"]


def test_reconfiguring_replaces_only_its_own_handler() -> None:
    """Calling configure_logging twice does not duplicate lines, and a
    handler someone else installed stays."""
    other = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(other)
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", first)
    configure_logging("info", "json", second)
    logging.getLogger("nebula.api").info("once")
    assert first.getvalue() == ""
    assert len(json_lines(second)) == 1
    assert other in logging.getLogger().handlers


def test_third_party_noise_is_quiet() -> None:
    """hypercorn.access is off; hypercorn.error and urllib3 INFO are dropped,
    their warnings kept."""
    out = io.StringIO()
    configure_logging("debug", "json", out)
    logging.getLogger("hypercorn.access").warning("GET / 200")
    logging.getLogger("hypercorn.error").info("Running on ...")
    logging.getLogger("urllib3").debug("Starting new connection")
    logging.getLogger("hypercorn.error").warning("worker trouble")
    assert [line["event"] for line in json_lines(out)] == ["worker trouble"]


def test_quiet_logger_warnings_respect_a_stricter_level() -> None:
    """At level error, a quiet logger's warning is dropped too."""
    out = io.StringIO()
    configure_logging("error", "json", out)
    logging.getLogger("docker").warning("engine slow")
    assert out.getvalue() == ""


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"log\.level: .*got 'loud'"):
        set_level("loud")
