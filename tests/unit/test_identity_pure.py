"""The pure pieces of identity: throttle, client address, TOTP, policies,
the permission catalogue."""

from __future__ import annotations

import pytest

from nebula.errors import InvalidInput, RateLimited
from nebula.services.identity import clientaddr, passwords, totp
from nebula.services.identity import permissions as perms
from nebula.services.identity.throttle import LoginThrottle, account_key, address_key


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- throttle ----------------------------------------------------------------


def make_throttle(clock: FakeClock, **kw: float) -> LoginThrottle:
    opts = {"max_failures": 3, "window_s": 60.0, "lockout_s": 120.0, **kw}
    return LoginThrottle(clock=clock, **opts)  # type: ignore[arg-type]


def test_throttle_locks_a_key_after_max_failures_within_the_window() -> None:
    clock = FakeClock()
    throttle = make_throttle(clock)
    keys = [account_key("alice"), address_key("10.0.0.1")]
    for _ in range(2):
        throttle.check(keys)
        throttle.record_failure(keys)
    throttle.check(keys)  # two failures: still allowed
    throttle.record_failure(keys)
    with pytest.raises(RateLimited) as info:
        throttle.check(keys)
    assert info.value.retry_after_s == 120
    assert info.value.details["retry_after_s"] == 120


def test_throttle_forgets_failures_older_than_the_window() -> None:
    clock = FakeClock()
    throttle = make_throttle(clock)
    key = account_key("alice")
    throttle.record_failure([key])
    throttle.record_failure([key])
    clock.now += 61
    throttle.record_failure([key])
    throttle.check([key])
    assert throttle.failures(key) == 1


def test_throttle_lockout_ends_after_lockout_s_and_retry_after_counts_down() -> None:
    clock = FakeClock()
    throttle = make_throttle(clock)
    key = address_key("10.0.0.1")
    throttle.record_failure([key] * 3)
    clock.now += 100
    with pytest.raises(RateLimited) as info:
        throttle.check([key])
    assert info.value.retry_after_s == 20
    clock.now += 20
    throttle.check([key])


def test_throttle_success_clears_the_account_but_not_the_address() -> None:
    clock = FakeClock()
    throttle = make_throttle(clock)
    acct, addr = account_key("alice"), address_key("10.0.0.1")
    assert addr is not None
    throttle.record_failure([acct, addr])
    throttle.record_failure([acct, addr])
    throttle.record_success(acct)
    assert throttle.failures(acct) == 0
    assert throttle.failures(addr) == 2


def test_throttle_locked_address_refuses_every_account() -> None:
    clock = FakeClock()
    throttle = make_throttle(clock)
    addr = address_key("10.0.0.9")
    for name in ("a1", "a2", "a3"):
        throttle.record_failure([account_key(name), addr])
    with pytest.raises(RateLimited):
        throttle.check([account_key("fresh"), addr])


def test_throttle_account_key_ignores_case() -> None:
    assert account_key("Alice") == account_key("alice")


def test_throttle_bounds_memory_by_forgetting_the_oldest_key() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(
        max_failures=3, window_s=60, lockout_s=60, clock=clock, max_keys=2
    )
    for name in ("a", "b", "c"):
        throttle.record_failure([account_key(name)])
    assert throttle.statistics()["tracked_keys"] == 2
    assert throttle.failures(account_key("a")) == 0


def test_throttle_unknown_address_is_not_a_key() -> None:
    clock = FakeClock()
    throttle = make_throttle(clock, max_failures=1)
    throttle.record_failure([address_key(None)])
    throttle.check([address_key(None)])


# -- client address ----------------------------------------------------------

TRUSTED = ("10.0.0.0/8", "192.168.1.1")


def test_client_address_ignores_forwarded_for_from_an_untrusted_peer() -> None:
    got = clientaddr.client_address("203.0.113.7", "1.2.3.4", TRUSTED)
    assert got == "203.0.113.7"


def test_client_address_honours_forwarded_for_from_a_trusted_proxy() -> None:
    got = clientaddr.client_address("10.1.2.3", "198.51.100.20", TRUSTED)
    assert got == "198.51.100.20"


def test_client_address_takes_the_rightmost_untrusted_hop() -> None:
    # The client prepended a spoofed entry; the proxy appended the real one.
    got = clientaddr.client_address(
        "10.0.0.5", "6.6.6.6, 198.51.100.20, 192.168.1.1", TRUSTED
    )
    assert got == "198.51.100.20"


def test_client_address_stops_at_garbage_and_keeps_the_nearest_trusted_hop() -> None:
    got = clientaddr.client_address("10.0.0.5", "evil, 10.0.0.6", TRUSTED)
    assert got == "10.0.0.6"


def test_client_address_all_trusted_gives_the_leftmost() -> None:
    got = clientaddr.client_address("10.0.0.5", "10.0.0.7, 10.0.0.6", TRUSTED)
    assert got == "10.0.0.7"


def test_client_address_without_peer_is_unknown_whatever_the_header() -> None:
    assert clientaddr.client_address(None, "1.2.3.4", TRUSTED) is None


def test_client_address_without_trusted_proxies_is_always_the_peer() -> None:
    assert clientaddr.client_address("10.0.0.5", "1.2.3.4", ()) == "10.0.0.5"


def test_client_address_normalises_ipv6_forms_and_mapped_ipv4() -> None:
    assert clientaddr.client_address("::ffff:203.0.113.7", None, ()) == "203.0.113.7"
    assert clientaddr.client_address("[2001:db8::1]:443", None, ()) == "2001:db8::1"
    got = clientaddr.client_address("::1", "2001:db8::2", ("::1/128",))
    assert got == "2001:db8::2"


def test_client_address_ipv4_proxy_list_does_not_trust_ipv6_peers() -> None:
    assert clientaddr.client_address("::1", "1.2.3.4", ("10.0.0.0/8",)) == "::1"


# -- TOTP --------------------------------------------------------------------

RFC4226 = [
    "755224", "287082", "359152", "969429", "338314",
    "254676", "287922", "162583", "399871", "520489",
]  # fmt: skip


@pytest.mark.parametrize(("counter", "code"), list(enumerate(RFC4226)))
def test_hotp_matches_rfc4226_appendix_d(counter: int, code: str) -> None:
    assert totp.hotp(b"12345678901234567890", counter) == code


SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890" * 6 + b"1234",
}
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("now", "sha1", "sha256", "sha512"), RFC6238)
def test_totp_matches_rfc6238_appendix_b(
    now: int, sha1: str, sha256: str, sha512: str
) -> None:
    step = totp.step_at(now)
    for digest, code in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        assert totp.hotp(SEEDS[digest], step, digits=8, digest=digest) == code


def test_totp_verify_accepts_one_step_either_side_and_no_further() -> None:
    secret = totp.new_secret()
    now = 1_700_000_000.0
    code = totp.code_at(secret, now)
    assert totp.verify(secret, code, now) == totp.step_at(now)
    assert totp.verify(secret, code, now + 30) == totp.step_at(now)
    assert totp.verify(secret, code, now - 30) == totp.step_at(now)
    assert totp.verify(secret, code, now + 60) is None


def test_totp_verify_refuses_malformed_codes() -> None:
    secret = totp.new_secret()
    for bad in ("", "12345", "1234567", "abcdef", "12 34"):
        assert totp.verify(secret, bad, 1_700_000_000.0) is None


def test_totp_secret_round_trips_through_base32() -> None:
    secret = totp.new_secret()
    assert len(totp.decode_secret(secret)) == totp.SECRET_BYTES
    assert "=" not in secret


def test_totp_provisioning_uri_names_issuer_user_and_secret() -> None:
    uri = totp.provisioning_uri("ABCDEF", "alice")
    assert uri.startswith("otpauth://totp/nebula%3Aalice?")
    assert "secret=ABCDEF" in uri
    assert "issuer=nebula" in uri


# -- usernames and passwords --------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "alice", "a.b-c_d9", "a" * 32])
def test_username_policy_accepts(name: str) -> None:
    passwords.check_username(name)


@pytest.mark.parametrize("name", ["ab", "Alice", "1abc", "a" * 33, "al ice", "", "é"])
def test_username_policy_refuses_with_the_field_path(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        passwords.check_username(name)
    assert info.value.details["errors"][0]["path"] == "$.username"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 12"),
        ("x" * 1025, "at most 1024"),
        ("alice-is-great-1", "username"),
        ("ALICEalice123", "username"),
    ],
)
def test_password_policy_refuses_with_a_clear_422(password: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        passwords.check_password(password, "alice")
    error = info.value.details["errors"][0]
    assert error["path"] == "$.password"
    assert reason in error["message"]
    assert info.value.http_status == 422


def test_password_policy_accepts_a_long_enough_password() -> None:
    passwords.check_password("correct horse battery", "alice")


def test_password_hasher_verifies_rehashes_and_refuses_garbage() -> None:
    weak = passwords.PasswordHasher(time_cost=1, memory_kib=8, parallelism=1)
    strong = passwords.PasswordHasher(time_cost=2, memory_kib=16, parallelism=1)
    stored = weak.hash_sync("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert weak.verify_sync(stored, "correct horse battery")
    assert not weak.verify_sync(stored, "wrong horse battery")
    assert not weak.verify_sync("not a hash", "x")
    assert not weak.verify_sync(None, "nebula-dummy-password")
    assert not weak.needs_rehash(stored)
    assert strong.needs_rehash(stored)


# -- permissions -------------------------------------------------------------


def test_admin_holds_every_catalogue_permission_and_is_staff() -> None:
    admin = perms.BUILTIN_ROLES["admin"]
    assert admin.permissions == frozenset(perms.CATALOGUE)
    assert admin.staff


def test_user_role_is_a_non_staff_subset() -> None:
    user = perms.BUILTIN_ROLES["user"]
    assert user.permissions < frozenset(perms.CATALOGUE)
    assert not user.staff
    assert "containers.deploy" in user.permissions
    assert "users.read" not in user.permissions


def test_bootstrap_is_only_the_installers() -> None:
    assert perms.BOOTSTRAP not in perms.CATALOGUE
    assert all(
        perms.BOOTSTRAP not in r.permissions for r in perms.BUILTIN_ROLES.values()
    )
    assert perms.BOOTSTRAP in perms.INSTALLER_PERMISSIONS
    assert perms.unknown([perms.BOOTSTRAP]) == [perms.BOOTSTRAP]


def test_missing_names_what_a_holder_lacks() -> None:
    held = frozenset({"users.read", "roles.read"})
    assert perms.missing(["users.read"], held) == []
    assert perms.missing(["users.read", "users.write"], held) == ["users.write"]
    assert perms.missing(["users.write"], frozenset({"*"})) == []
