"""sd_notify: telling systemd (or whoever set ``NOTIFY_SOCKET``) our state.

The protocol is one datagram per message on a Unix socket whose path comes in
``NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). The watchdog
period comes in ``WATCHDOG_USEC``; when ``WATCHDOG_PID`` is set and names
another process, the watchdog is not ours to pet.

Written here rather than taken from a library: the protocol is a handful of
lines, and the libraries for it either need libsystemd or are unmaintained.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("nebula.systemd")


class Notifier:
    """Sends sd_notify messages; every method is a no-op without a socket.

    A send never blocks: the socket is non-blocking, and a message that
    cannot be sent (systemd gone, queue full) is logged at WARNING and lost,
    because nothing the daemon could do would make it arrive.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None):
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        #: Between READY=1 and STOPPING=1: the only time the watchdog is fed.
        self.running = False
        self.sent = 0
        self.failed = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        """The notifier systemd asked for through the environment."""
        return cls(
            environ.get("NOTIFY_SOCKET") or None,
            watchdog_usec=_watchdog_usec(environ),
        )

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half the period systemd allows,
        as sd_watchdog_enabled(3) advises; None when there is no watchdog."""
        if self._address is None or not self._watchdog_usec:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self) -> None:
        self.send(f"READY=1\nMAINPID={os.getpid()}")
        self.running = True

    def stopping(self) -> None:
        self.running = False
        self.send("STOPPING=1")

    def reloading(self) -> None:
        self.send("RELOADING=1")

    def status(self, text: str) -> None:
        # A newline would start a new assignment in the message.
        self.send("STATUS=" + text.replace("\n", " "))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            self.failed += 1
            log.warning(
                "sd_notify_failed",
                extra={"fields": {"message": message.split("=")[0], "error": str(exc)}},
            )
            return
        self.sent += 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def _watchdog_usec(environ: Mapping[str, str]) -> int | None:
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None
