"""Rules that tie keys together, checked after each key is checked alone."""

from __future__ import annotations

from nebula.config.model import (
    PRODUCTION_ARGON2_MIN_MEMORY_KIB,
    PRODUCTION_MIN_TOKEN_CHARS,
    Config,
)


def cross_checks(config: Config, bad: set[str]) -> list[str]:
    """Rules that tie keys together. A rule is skipped when a key it reads
    was already reported bad (its default would make the report misleading).
    """
    found: list[str] = []
    plugins, auth = config.plugins, config.auth
    production = config.environment == "production"

    def rule(keys: set[str], broken: bool, message: str) -> None:
        if broken and not keys & bad:
            found.append(message)

    # 1. A default above the cap would be cut down silently on every call.
    rule(
        {"plugins.default_timeout_s", "plugins.max_timeout_s"},
        plugins.default_timeout_s > plugins.max_timeout_s,
        "plugins.default_timeout_s: expected at most plugins.max_timeout_s "
        f"({plugins.max_timeout_s}), got {plugins.default_timeout_s}",
    )
    # 2. The in-process host shares the daemon's memory: development only.
    rule(
        {"environment", "plugins.in_process_enabled"},
        production and plugins.in_process_enabled,
        "plugins.in_process_enabled: expected false when environment is "
        "'production', got true",
    )
    # 3. An idle timeout past the absolute lifetime can never fire.
    rule(
        {"auth.session_idle_s", "auth.session_ttl_s"},
        auth.session_idle_s > auth.session_ttl_s,
        "auth.session_idle_s: expected at most auth.session_ttl_s "
        f"({auth.session_ttl_s}), got {auth.session_idle_s}",
    )
    # 4. argon2 itself needs 8 KiB per lane.
    rule(
        {"auth.argon2_memory_kib", "auth.argon2_parallelism"},
        auth.argon2_memory_kib < 8 * auth.argon2_parallelism,
        "auth.argon2_memory_kib: expected at least 8 * auth.argon2_parallelism "
        f"({8 * auth.argon2_parallelism}), got {auth.argon2_memory_kib}",
    )
    # 5. Cheap hashing is fine for tests, not for real passwords.
    rule(
        {"environment", "auth.argon2_memory_kib"},
        production and auth.argon2_memory_kib < PRODUCTION_ARGON2_MIN_MEMORY_KIB,
        "auth.argon2_memory_kib: expected at least "
        f"{PRODUCTION_ARGON2_MIN_MEMORY_KIB} in production, "
        f"got {auth.argon2_memory_kib}",
    )
    # 6. Requiring cgroups while turning them off cannot both hold.
    rule(
        {"plugins.cgroup_required", "plugins.cgroup_enabled"},
        plugins.cgroup_required and not plugins.cgroup_enabled,
        "plugins.cgroup_required: expected false when plugins.cgroup_enabled "
        "is false, got true",
    )
    # 7. A short installer token can be guessed; it opens the first admin.
    token = config.installer_token
    rule(
        {"environment", "installer_token"},
        production and token is not None and len(token) < PRODUCTION_MIN_TOKEN_CHARS,
        f"installer_token: expected at least {PRODUCTION_MIN_TOKEN_CHARS} "
        f"characters in production, got {len(token or '')}",
    )
    return found
