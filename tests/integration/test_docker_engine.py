"""The Docker engine the integration tests rely on really works.

These are checks of the test environment itself (engine, local image, port
publishing), so that a broken set-up shows up here by name rather than as
confusing failures in the container service's tests.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import httpx
import pytest
from docker.models.containers import Container

pytestmark = pytest.mark.docker

TEST_LABEL = "nebula.test"
HTTP_DEADLINE_S = 20.0

RunContainer = Callable[..., Container]


@pytest.fixture
def run_container(
    docker_client: docker.DockerClient, test_image: str
) -> Iterator[RunContainer]:
    """Start detached containers of the test image; remove them all after."""
    started: list[Container] = []

    def run(command: list[str], **kwargs: Any) -> Container:
        container = docker_client.containers.run(
            test_image,
            command,
            detach=True,
            labels={TEST_LABEL: "test_docker_engine"},
            **kwargs,
        )
        started.append(container)
        return container

    yield run

    for container in started:
        # NotFound: already gone (auto-remove, or the test removed it).
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def test_engine_answers_ping_and_version(docker_client: docker.DockerClient) -> None:
    """The engine answers a ping and reports an API version."""
    assert docker_client.ping() is True
    assert docker_client.version()["ApiVersion"]


def test_image_runs_echo(docker_client: docker.DockerClient, test_image: str) -> None:
    """The busybox test image runs a command and returns its output."""
    output = docker_client.containers.run(
        test_image, ["echo", "ok"], remove=True, labels={TEST_LABEL: "echo"}
    )
    assert output == b"ok\n"


def test_published_httpd_port_is_served_on_localhost(
    run_container: RunContainer,
) -> None:
    """A port published to 127.0.0.1 reaches busybox httpd in the container."""
    token = secrets.token_hex(8)
    script = (
        f"mkdir -p /srv && echo {token} > /srv/index.html"
        " && exec httpd -f -p 8080 -h /srv"
    )
    container = run_container(
        ["sh", "-c", script], ports={"8080/tcp": ("127.0.0.1", None)}
    )

    container.reload()
    binding = container.ports["8080/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1"
    url = f"http://127.0.0.1:{binding['HostPort']}/index.html"

    assert _get_with_deadline(url, HTTP_DEADLINE_S).text == f"{token}\n"


def test_containers_are_removed_after_use(
    docker_client: docker.DockerClient, run_container: RunContainer
) -> None:
    """Removing a container by force takes it out of the engine's list."""
    container = run_container(["sleep", "300"])
    container.remove(force=True)

    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container.id)


def _get_with_deadline(url: str, deadline_s: float) -> httpx.Response:
    """GET url until it answers 200; httpd needs a moment to listen."""
    give_up_at = time.monotonic() + deadline_s
    while True:
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 200:
            return response
        if time.monotonic() > give_up_at:
            pytest.fail(f"{url} did not answer 200 within {deadline_s}s")
        time.sleep(0.1)
