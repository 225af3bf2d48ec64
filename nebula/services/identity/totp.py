"""Time-based one-time passwords (RFC 6238 over RFC 4226), with stdlib hmac.

Codes are 6 digits over 30 s steps with HMAC-SHA1, which is what every
authenticator app speaks. A code is accepted in the step before, the current
step and the step after (clock skew), and :func:`verify` returns the step it
matched so that the caller can refuse the same code twice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import urllib.parse

STEP_S = 30
DIGITS = 6
#: Steps accepted on either side of the current one.
WINDOW = 1
#: 160 bits, the size RFC 4226 recommends for SHA-1.
SECRET_BYTES = 20


def new_secret() -> str:
    """A fresh random secret, base32 without padding."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def decode_secret(secret: str) -> bytes:
    text = secret.strip().replace(" ", "").upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def hotp(
    key: bytes, counter: int, *, digits: int = DIGITS, digest: str = "sha1"
) -> str:
    """The RFC 4226 code for ``counter``."""
    mac = hmac.new(key, struct.pack(">Q", counter), getattr(hashlib, digest)).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def step_at(now_s: float) -> int:
    return int(now_s // STEP_S)


def code_at(secret: str, now_s: float) -> str:
    return hotp(decode_secret(secret), step_at(now_s))


def verify(secret: str, code: str, now_s: float) -> int | None:
    """The step ``code`` is valid for around ``now_s``, or None."""
    candidate = code.strip().replace(" ", "")
    if len(candidate) != DIGITS or not candidate.isdigit():
        return None
    key = decode_secret(secret)
    current = step_at(now_s)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(hotp(key, step), candidate):
            return step
    return None


def provisioning_uri(secret: str, username: str, issuer: str = "nebula") -> str:
    """The ``otpauth://`` URI authenticator apps read from a QR code."""
    label = urllib.parse.quote(f"{issuer}:{username}")
    query = urllib.parse.urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_S,
        }
    )
    return f"otpauth://totp/{label}?{query}"
