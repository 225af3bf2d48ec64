"""Fixtures for tests against real things.

Docker: ``docker_client`` and ``test_image`` give a live engine and the local
busybox test image that ``scripts/docker-test-engine.sh`` builds. Where they
are missing, a test using them is skipped with the reason, except under
``CI=true``: there a missing engine fails the test, so that a CI run can never
pass by silently skipping every Docker test.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterator
from typing import NoReturn

import docker
import docker.errors
import pytest

TEST_IMAGE = os.environ.get("NEBULA_TEST_IMAGE", "nebula-test/busybox:latest")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _docker_unavailable(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where Docker tests are required to run."""
    hint = "run scripts/docker-test-engine.sh (or `just test`)"
    if _in_ci():
        pytest.fail(
            f"{reason}; CI=true forbids skipping Docker tests: {hint}", pytrace=False
        )
    pytest.skip(f"{reason}; {hint}")


def _connect() -> docker.DockerClient | str:
    """A connected client, or the reason there is none."""
    with warnings.catch_warnings():
        # When the engine is unreachable the SDK drops its probe socket
        # without closing it; the ResourceWarning would turn the skip into an
        # error under filterwarnings=error. Collect it here, inside the filter.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return docker.from_env(timeout=30)
        except docker.errors.DockerException as exc:
            reason = f"no Docker engine answers: {exc}"
        gc.collect()
    return reason


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client for the engine at DOCKER_HOST or the local socket."""
    client = _connect()
    if isinstance(client, str):
        _docker_unavailable(client)

    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def test_image(docker_client: docker.DockerClient) -> str:
    """The tag of the local busybox test image (env NEBULA_TEST_IMAGE)."""
    try:
        docker_client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        _docker_unavailable(f"test image {TEST_IMAGE} is missing")
    return TEST_IMAGE
