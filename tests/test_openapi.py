"""``GET /openapi.json``: a valid OpenAPI 3.1 document that lists exactly the public routes.

The routes are read from the running apps' routers (every service and the gateway), kept when
the gateway's routing table sends them to that service, and compared with the document both
ways, so a route added without documenting it, or a documented route removed, fails here.
"""

from __future__ import annotations

import aiohttp
import pytest
from openapi_spec_validator import validate

from gateway import openapi
from tests.routes_support import fold_trailing_slash, normalise, public_routes


def test_normalising_routes():
    assert normalise("/api/snap-requests/{id:[0-9]+}") == "/api/snap-requests/{id}"
    assert normalise("/f/{tail:.+}") == "/f/{tail}"
    folded = fold_trailing_slash({("POST", "/a/"), ("POST", "/a"), ("GET", "/b"), ("GET", "/")})
    assert folded == {("POST", "/a/"), ("GET", "/b"), ("GET", "/")}


def test_the_document_is_valid_openapi_3_1():
    document = openapi.build("https://darkroom.example")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "https://darkroom.example"}]
    schemes = document["components"]["securitySchemes"]
    assert schemes["basicAuth"]["scheme"] == "basic"
    assert schemes["happoJwt"]["bearerFormat"] == "JWT"
    assert schemes["apiToken"]["scheme"] == "bearer"
    flow = schemes["oauth2"]["flows"]["authorizationCode"]
    assert (flow["authorizationUrl"], flow["tokenUrl"]) == ("/oauth/authorize", "/oauth/token")
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    tags = {tag["name"] for tag in document["tags"]}
    for item in document["paths"].values():
        for operation in item.values():
            assert set(operation["tags"]) <= tags
            assert "404" in operation["responses"]


def test_a_broken_document_fails_validation():
    document = openapi.build("https://darkroom.example")
    document["paths"]["/user"]["get"]["responses"] = "nothing"
    with pytest.raises(Exception, match="nothing"):
        validate(document)


def test_every_public_route_is_documented_and_nothing_else(stack):
    real = public_routes(stack)
    documented = openapi.routes()
    missing = sorted(real - documented)
    stale = sorted(documented - real)
    print("routes missing from the document:", missing)
    print("documented routes that do not exist:", stale)
    assert not missing and not stale
    # the comparison has teeth: a few known routes of each dialect are in the real set
    for route in [
        ("GET", "/api/reports/{sha}"),
        ("GET", "/api/snap-requests/{id}"),
        ("POST", "/user/images"),
        ("POST", "/api/v1/login/"),
        ("DELETE", "/api/v1/companies/{company_id}/images/{image_id}/"),
        ("GET", "/f/{tail}"),
        ("GET", "/openapi.json"),
    ]:
        assert route in real
    assert not any(path.startswith("/internal") for _, path in real)


async def test_openapi_json_is_served_by_the_gateway(stack):
    async with (
        aiohttp.ClientSession() as client,
        client.get(stack.url + "/openapi.json") as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        document = await response.json()
    assert document["servers"] == [{"url": stack.url}]
    assert "/api/reports/{sha}" in document["paths"]
    validate(document)
