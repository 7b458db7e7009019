"""GET /openapi.json: an OpenAPI 3.1 document generated from the proxy's pydantic models."""

from __future__ import annotations

from typing import Any

import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.openapi import openapi_document
from swarm_supervisor.proxy.schemas import ChatRequest
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import UpstreamPool
from testkit.llama.inprocess import asgi_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    name = ref.rsplit("/", 1)[-1]
    schema: dict[str, Any] = doc["components"]["schemas"][name]
    return schema


async def test_served_and_describes_every_endpoint() -> None:
    app = create_app(UpstreamPool.from_urls([]))
    async with asgi_client(app) as client:
        r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    routes = {route.path.replace(":path}", "}") for route in app.routes}  # type: ignore[attr-defined]
    assert routes == set(doc["paths"])
    assert set(doc["paths"]["/v1/chat/completions"]) == {"post"}
    assert set(doc["paths"]["/v1/models"]) == {"get"}


def test_request_bodies_are_the_validating_models() -> None:
    doc = openapi_document()
    post = doc["paths"]["/v1/chat/completions"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    chat = _resolve(doc, ref)
    own = ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    own.pop("$defs", None)
    assert chat == own  # exactly the model the proxy validates with
    assert set(chat["properties"]) == set(ChatRequest.model_fields)
    assert chat["required"] == ["messages"]
    assert chat["properties"]["messages"]["minItems"] == 1
    # every $ref in the document points at a schema that exists
    text = str(doc)
    for name in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in doc["components"]["schemas"], name


def test_every_error_response_has_the_openai_shape() -> None:
    doc = openapi_document()
    err = doc["components"]["schemas"]["ErrorResponse"]
    assert err["required"] == ["error"]
    detail = _resolve(doc, err["properties"]["error"]["$ref"])
    assert {"message", "type", "param", "code"} <= set(detail["properties"])
    seen = 0
    for path, item in doc["paths"].items():
        for op in item.values():
            for status, resp in op["responses"].items():
                if int(status) >= 400 and path != "/health":
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorResponse"), (path, status)
                    seen += 1
    assert seen >= 15
    post = doc["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"400", "401", "413", "502", "503", "504"} <= set(post)
    assert set(post["200"]["content"]) == {"application/json", "text/event-stream"}


def test_a_key_is_declared_when_the_proxy_has_one() -> None:
    assert "security" not in openapi_document(ProxySettings())
    doc = openapi_document(ProxySettings(api_key="k"))
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/health"]["get"]["security"] == []
