"""serviceconfig.example.yaml documents every key at its default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from nebula.config import Config, load_config
from nebula.errors import ConfigError

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


def env_name(key: str) -> str:
    return "NEBULA_" + key.replace(".", "__").upper()


def default_at(key: str) -> Any:
    value: Any = Config()
    for part in key.split("."):
        value = getattr(value, part)
    return value


SCALAR_KEYS = sorted(
    k
    for k in leaf_keys(Config)
    if k != "installer_token" and not isinstance(default_at(k), tuple | type(None))
)


@pytest.mark.parametrize("key", SCALAR_KEYS)
def test_every_key_is_settable_by_its_generic_variable(key: str) -> None:
    """NEBULA_<PATH> with the default written as text parses back to it."""
    default = default_at(key)
    text = str(default).lower() if isinstance(default, bool) else str(default)
    assert load_config(None, {env_name(key): text}) == Config()


@pytest.mark.parametrize("key", SCALAR_KEYS)
def test_every_key_refuses_a_list_and_names_itself(key: str, tmp_path: Path) -> None:
    """A value of the wrong shape is reported against the key's own path."""
    *sections, leaf = key.split(".")
    text = "".join(f"{'  ' * i}{s}:\n" for i, s in enumerate(sections))
    text += f"{'  ' * len(sections)}{leaf}: [1, 2]\n"
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert [p.split(":")[0] for p in info.value.problems] == [key]
