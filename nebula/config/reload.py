"""What a reload changed, and which of it applies without a restart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import attrs

from nebula.config.model import LIVE_KEYS, Config


def diff(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """Every dotted key whose value differs, mapped to ``(old, new)``.

    Secret values are the real ones: log the keys, never the values.
    """
    before = _flatten(attrs.asdict(old))
    after = _flatten(attrs.asdict(new))
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}


class ConfigChanges(NamedTuple):
    """What a reload changed, split by whether it applies live.

    Unpacks as ``live, restart = live_changes(old, new)``; each maps a dotted
    key to ``(old, new)``.
    """

    live: dict[str, tuple[Any, Any]]
    restart: dict[str, tuple[Any, Any]]


def live_changes(old: Config, new: Config) -> ConfigChanges:
    """Split the changes into those SIGHUP applies now (:data:`LIVE_KEYS`) and
    those that wait for a restart."""
    changed = diff(old, new)
    return ConfigChanges(
        live={k: v for k, v in changed.items() if k in LIVE_KEYS},
        restart={k: v for k, v in changed.items() if k not in LIVE_KEYS},
    )


def restart_changes(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """The changes that only take effect after a restart."""
    return {k: v for k, v in diff(old, new).items() if k not in LIVE_KEYS}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
