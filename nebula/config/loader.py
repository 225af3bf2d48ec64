"""Reading the file and the environment, and checking every value."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
import yaml

from nebula.config.kinds import Invalid, Kind, show
from nebula.config.model import SECRET_KEYS, Config
from nebula.config.rules import cross_checks
from nebula.errors import ConfigError

_converter = cattrs.Converter(forbid_extra_keys=True)

_NAMED_ENV: dict[str, str] = {
    "NEBULA_ENV": "environment",
    "NEBULA_HOST": "server.host",
    "NEBULA_PORT": "server.port",
    "NEBULA_DATA_DIR": "data_dir",
    "NEBULA_CORS_ORIGINS": "cors_origins",
    "NEBULA_LOG_LEVEL": "log.level",
    "NEBULA_LOG_FORMAT": "log.format",
}
_TOKEN_ENV = "NEBULA_INSTALLER_TOKEN"
_TOKEN_FILE_ENV = "NEBULA_INSTALLER_TOKEN_FILE"


def resolve_config_path(
    path: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The file to read: ``path`` if given, else ``NEBULA_CONFIG``, else none."""
    env = os.environ if environ is None else environ
    return path or env.get("NEBULA_CONFIG") or None


def load_config(
    path: str | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the file and the environment into a :class:`Config`.

    Raises :class:`ConfigError` listing every problem found.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    file_path = resolve_config_path(path, env)
    raw = _read_yaml(file_path, problems) if file_path else {}

    # installer_token_file is a source, not a key: settle the token first.
    token_file = raw.pop("installer_token_file", None)
    base_dir = Path(file_path).parent if file_path else Path.cwd()
    sources: dict[str, str] = {}  # dotted key -> the variable that set it
    _apply_token(raw, token_file, base_dir, env, sources, problems)
    _apply_env(raw, env, sources, problems)

    bad: set[str] = set()
    checked = _check_section(Config, raw, "", sources, problems, bad)
    # Only values that passed their check reach cattrs, with defaults for
    # the rest, so this cannot fail and the cross-key rules still run.
    config = _converter.structure(checked, Config)
    problems.extend(cross_checks(config, bad))

    if problems:
        raise ConfigError(problems)
    return config


def _read_yaml(file_path: str, problems: list[str]) -> dict[str, Any]:
    try:
        text = Path(file_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{file_path}: config file not found")
        return {}
    except OSError as exc:
        problems.append(f"{file_path}: cannot read config file: {exc.strerror}")
        return {}
    except UnicodeDecodeError:
        problems.append(f"{file_path}: config file is not UTF-8 text")
        return {}
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file_path}:{mark.line + 1}:{mark.column + 1}" if mark else file_path
        problems.append(f"{where}: invalid YAML: {exc.problem or exc.context}")
        return {}
    except yaml.YAMLError as exc:
        problems.append(f"{file_path}: invalid YAML: {exc}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{file_path}: expected a mapping of keys, got {show(data)}")
        return {}
    return data


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping.

    Plain ``safe_load`` keeps the last of two equal keys without a word, which
    hides exactly the kind of mistake a config check is for.
    """


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> Any:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue  # unhashable: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _apply_token(
    raw: dict[str, Any],
    token_file: Any,
    base_dir: Path,
    env: Mapping[str, str],
    sources: dict[str, str],
    problems: list[str],
) -> None:
    """Settle ``installer_token`` from the four places it may come from.

    The environment replaces whatever the file says. Within one place, a
    token and a token file together are refused: which one wins would be a
    guess.
    """
    env_token = env.get(_TOKEN_ENV) or None
    env_file = env.get(_TOKEN_FILE_ENV) or None
    file_both = token_file is not None and raw.get("installer_token") is not None
    if file_both:
        problems.append(
            "installer_token and installer_token_file are both set; set one"
        )
    if env_token and env_file:
        problems.append(f"{_TOKEN_ENV} and {_TOKEN_FILE_ENV} are both set; set one")
    elif env_token:
        raw["installer_token"] = env_token
        sources["installer_token"] = _TOKEN_ENV
    elif env_file:
        raw.pop("installer_token", None)
        _read_token(raw, Path(env_file), _TOKEN_FILE_ENV, sources, problems)
    elif token_file is not None and not file_both:
        if not isinstance(token_file, str) or not token_file.strip():
            problems.append(
                "installer_token_file: expected a path to a file, "
                f"got {show(token_file)}"
            )
        else:
            path = base_dir / token_file
            _read_token(raw, path, "installer_token_file", sources, problems)


def _read_token(
    raw: dict[str, Any],
    path: Path,
    source: str,
    sources: dict[str, str],
    problems: list[str],
) -> None:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        problems.append(f"{source}: cannot read installer token file {path}: {reason}")
        return
    if not token:
        problems.append(f"{source}: installer token file {path} is empty")
        return
    raw["installer_token"] = token
    sources["installer_token"] = f"{source} {path}"


def _env_entries(env: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
    """Yield ``(variable, dotted key, value)`` for each variable that sets a key,
    lowest precedence first."""
    top_level = {f.name for f in attrs.fields(Config) if "kind" in f.metadata}
    if env.get("DOCKER_HOST"):
        yield "DOCKER_HOST", "docker.host", env["DOCKER_HOST"]
    for name in sorted(env):
        value = env[name]
        if not value or not name.startswith("NEBULA_") or name.startswith(_TOKEN_ENV):
            continue
        rest = name[len("NEBULA_") :].lower()
        if name in _NAMED_ENV:
            yield name, _NAMED_ENV[name], value
        elif "__" in rest:
            yield name, rest.replace("__", "."), value
        elif rest in top_level:
            yield name, rest, value


def _apply_env(
    raw: dict[str, Any],
    env: Mapping[str, str],
    sources: dict[str, str],
    problems: list[str],
) -> None:
    for name, key, value in _env_entries(env):
        kind = _kind_at(key)
        if kind is None:
            problems.append(f"{name}: {key!r} is not a configuration key")
            continue
        earlier = sources.get(key)
        if earlier and earlier.startswith("NEBULA_"):
            problems.append(f"{key}: set by both {earlier} and {name}; set one")
            continue
        *parents, leaf = key.split(".")
        section = raw
        for part in parents:
            child = section.setdefault(part, {})
            if not isinstance(child, dict):
                break  # the file's bad section is reported by the check
            section = child
        else:
            section[leaf] = kind.from_env(value)
            sources[key] = name


def _kind_at(key: str) -> Kind | None:
    """The :class:`Kind` of a dotted leaf key, or None if there is no such key."""
    cls: type = Config
    *parents, leaf = key.split(".")
    for part in parents:
        field = _fields(cls).get(part)
        if field is None or "section" not in field.metadata:
            return None
        cls = field.metadata["section"]
    field = _fields(cls).get(leaf)
    if field is None or "kind" not in field.metadata:
        return None
    kind: Kind = field.metadata["kind"]
    return kind


def _fields(cls: type) -> dict[str, attrs.Attribute[Any]]:
    return {f.name: f for f in attrs.fields(cls)}


def _check_section(
    cls: type,
    raw: Mapping[Any, Any],
    prefix: str,
    sources: Mapping[str, str],
    problems: list[str],
    bad: set[str],
) -> dict[str, Any]:
    """Check ``raw`` against ``cls``'s keys; return the good values only.

    Bad values are reported and left out, so the defaults stand in for them
    and the remaining checks can still run.
    """
    fields = _fields(cls)
    for key in raw:
        if key not in fields:
            problems.append(_unknown(prefix, key, fields))
    checked: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in raw:
            continue
        where = prefix + name
        value = raw[name]
        if "section" in field.metadata:
            if value is None:
                continue  # "server:" with nothing under it
            if not isinstance(value, dict):
                problems.append(f"{where}: expected a mapping, got {show(value)}")
                bad.add(where)
                continue
            checked[name] = _check_section(
                field.metadata["section"], value, where + ".", sources, problems, bad
            )
            continue
        kind: Kind = field.metadata["kind"]
        try:
            checked[name] = kind.check(value)
        except Invalid as exc:
            problems.append(_mismatch(where, sources.get(where), kind, value, exc))
            bad.add(where)
    return checked


def _unknown(prefix: str, key: Any, fields: Mapping[str, Any]) -> str:
    message = f"{prefix}{key}: unknown key"
    close = difflib.get_close_matches(str(key), list(fields), n=1)
    if close:
        message += f"; did you mean {prefix}{close[0]}?"
    return message


def _mismatch(
    where: str, source: str | None, kind: Kind, value: Any, exc: Invalid
) -> str:
    origin = f" (from {source})" if source else ""
    shown = "***" if where in SECRET_KEYS else show(value)
    reason = f" ({exc.reason})" if exc.reason else ""
    return f"{where}{origin}: expected {kind.expected}, got {shown}{reason}"
