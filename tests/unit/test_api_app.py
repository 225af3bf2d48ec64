"""The REST face over a small registry: errors, auth, params, CORS, docs."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from quart_trio import QuartTrio

from nebula.api.app import ApiContext, ApiSettings, create_app
from nebula.api.table import Route
from nebula.errors import RateLimited
from nebula.ops import PUBLIC, Caller, Dispatcher, Principal, Registry

TOKEN = "secret-token"
READER = Principal("session", "reader", frozenset({"things.read"}), user_id=1)


@attrs.frozen
class Thing:
    id: int
    name: str
    count: int = 0


@attrs.frozen
class ListParams:
    limit: int = 10
    active: bool | None = None


def build() -> QuartTrio:
    registry = Registry()

    @registry.operation("things.health", permission=PUBLIC, summary="public")
    async def health(caller: Caller, params: None) -> dict[str, str]:
        return {"status": "ok"}

    @registry.operation(
        "things.create",
        permission="things.write",
        summary="create",
        params=Thing,
        result=Thing,
        mutates=True,
    )
    async def create(caller: Caller, params: Thing) -> Thing:
        return params

    @registry.operation(
        "things.list", permission="things.read", summary="list", params=ListParams
    )
    async def list_(caller: Caller, params: ListParams) -> dict[str, Any]:
        return {"limit": params.limit, "active": params.active}

    @registry.operation("things.throttled", permission=PUBLIC, summary="429")
    async def throttled(caller: Caller, params: None) -> None:
        raise RateLimited("Too many tries.", retry_after_s=2.5)

    async def check(token: str) -> Principal | None:
        return READER if token == TOKEN else None

    ctx = ApiContext(
        dispatcher=Dispatcher(registry),
        routes=[
            Route("GET", "/health", "things.health"),
            Route("POST", "/things/<int:id>", "things.create", status=201),
            Route("GET", "/things", "things.list"),
            Route("POST", "/throttled", "things.throttled"),
        ],
        check_credentials=check,
        settings=ApiSettings(cors_origins=frozenset({"https://panel.example"})),
        client_address=lambda peer, xff, trusted: peer,
        max_body_bytes=1024,
    )
    return create_app(ctx)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def error_of(response: Any) -> dict[str, Any]:
    body = await response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.anyio
async def test_public_route_answers_without_credentials() -> None:
    client = build().test_client()
    response = await client.get("/health")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}
    assert response.headers["X-Request-Id"]


@pytest.mark.anyio
async def test_incoming_request_id_is_echoed() -> None:
    client = build().test_client()
    response = await client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthenticated"),
        ({"Authorization": "Bearer wrong"}, 401, "unauthenticated"),
        ({"Authorization": "Basic Zm9v"}, 401, "unauthenticated"),
        (AUTH, 200, None),
    ],
)
async def test_protected_route_needs_valid_credentials(
    headers: dict[str, str], status: int, code: str | None
) -> None:
    client = build().test_client()
    response = await client.get("/things", headers=headers)
    assert response.status_code == status
    if code:
        assert (await error_of(response))["code"] == code
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.anyio
async def test_session_cookie_is_a_credential() -> None:
    client = build().test_client()
    response = await client.get(
        "/things", headers={"Cookie": f"nebula_session={TOKEN}"}
    )
    assert response.status_code == 200


@pytest.mark.anyio
async def test_missing_permission_is_403_naming_it() -> None:
    client = build().test_client()
    response = await client.post("/things/1", json={"name": "a"}, headers=AUTH)
    assert response.status_code == 403
    error = await error_of(response)
    assert error["details"]["permission"] == "things.write"


@pytest.mark.anyio
async def test_query_values_are_converted_by_field_type() -> None:
    client = build().test_client()
    response = await client.get("/things?limit=5&active=false", headers=AUTH)
    assert await response.get_json() == {"limit": 5, "active": False}


@pytest.mark.anyio
async def test_bad_query_value_is_422_with_its_path() -> None:
    client = build().test_client()
    response = await client.get("/things?limit=lots", headers=AUTH)
    assert response.status_code == 422
    error = await error_of(response)
    assert error["details"]["errors"][0]["path"] == "$.limit"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "method", "status", "code"),
    [
        ("/nope", "GET", 404, "not_found"),
        ("/health", "DELETE", 405, "method_not_allowed"),
    ],
)
async def test_unknown_routes_and_methods_get_json_errors(
    path: str, method: str, status: int, code: str
) -> None:
    client = build().test_client()
    response = await client.open(path, method=method)
    assert response.status_code == status
    assert (await error_of(response))["code"] == code


@pytest.mark.anyio
async def test_rate_limit_sets_retry_after() -> None:
    client = build().test_client()
    response = await client.post("/throttled")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"


@pytest.mark.anyio
async def test_oversized_body_is_413() -> None:
    client = build().test_client()
    response = await client.post(
        "/throttled", data=b"{" + b" " * 5000 + b"}", headers=AUTH
    )
    assert response.status_code == 413
    assert (await error_of(response))["code"] == "too_large"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"\xff\xfe", 400),
        (b"[]", 422),
        (b'{"name": 5}', 422),
        (b'{"name": "a", "extra": 1}', 422),
        (b'{"name": "a", "id": 2}', 422),
    ],
)
async def test_malformed_bodies_are_4xx_never_500(body: bytes, status: int) -> None:
    writer = Principal("session", "w", frozenset({"things.write"}))
    app = build()
    ctx: ApiContext = app.extensions["nebula"]

    async def check(token: str) -> Principal | None:
        return writer

    ctx.check_credentials = check
    client = app.test_client()
    response = await client.post("/things/1", data=body, headers=AUTH)
    assert response.status_code == status
    await error_of(response)


@pytest.mark.anyio
async def test_cors_headers_only_for_configured_origins() -> None:
    client = build().test_client()
    allowed = await client.get("/health", headers={"Origin": "https://panel.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://panel.example"
    other = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = await client.options(
        "/things",
        headers={
            "Origin": "https://panel.example",
            "Access-Control-Request-Method": "GET",
        },
    )
    assert preflight.status_code == 204
    refused = await client.options(
        "/things",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "GET",
        },
    )
    assert refused.status_code == 403


@pytest.mark.anyio
async def test_openapi_document_lists_routes_with_permissions() -> None:
    client = build().test_client()
    doc = await (await client.get("/openapi.json")).get_json()
    assert doc["openapi"].startswith("3.1")
    create = doc["paths"]["/things/{id}"]["post"]
    assert create["x-permission"] == "things.write"
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = doc["components"]["schemas"][body_ref.split("/")[-1]]
    assert "id" not in body["properties"]
    assert doc["paths"]["/health"]["get"]["security"] == []
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert b"/openapi.json" in await docs.get_data()
