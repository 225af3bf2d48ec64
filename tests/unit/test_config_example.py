"""serviceconfig.example.yaml documents every key at its default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import yaml

from nebula.config import Config, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "serviceconfig.example.yaml"


def leaf_keys(cls: type, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for field in attrs.fields(cls):
        if "section" in field.metadata:
            keys |= leaf_keys(field.metadata["section"], f"{prefix}{field.name}.")
        else:
            keys.add(prefix + field.name)
    return keys


def yaml_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict):
            keys |= yaml_keys(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_example_lists_every_key() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert yaml_keys(data) == leaf_keys(Config)


def test_example_values_are_the_defaults() -> None:
    assert load_config(str(EXAMPLE), {}) == Config()
