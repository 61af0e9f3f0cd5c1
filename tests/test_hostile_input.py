"""Inputs schemathesis found answering 500, each now a clear 4xx in the error shape: forged
tokens with non-ASCII characters, a JSON field of the wrong type, form posts without a
multipart boundary, and NUL bytes in a query string."""

from __future__ import annotations

import pytest

from tests.clients_support import bearer


async def status_and_body(response) -> tuple[int, dict | str]:
    if response.content_type == "application/json":
        return response.status, await response.json()
    return response.status, await response.text()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/files/%09.%C2%AA"),
        ("POST", "/unsubscribe/%C3%AC%F2%A4%BF%9F.%C3%AC"),
        ("GET", "/badges/1-%C3%AC.svg"),
    ],
)
async def test_forged_tokens_with_non_ascii_characters_are_refused(client, stack, method, path):
    async with client.request(method, f"{stack.url}{path}") as response:
        status, _ = await status_and_body(response)
    assert status in (403, 404)


async def test_a_credential_kind_of_the_wrong_type_is_a_422(client, stack, account):
    async with client.post(
        f"{stack.url}/api/keys", json={"kind": {}, "name": ""}, headers=bearer(account["token"])
    ) as response:
        status, body = await status_and_body(response)
    assert 400 <= status < 500 and status != 401
    assert isinstance(body, dict) and body["error"]["code"] in {"bad_request", "invalid_request"}


@pytest.mark.parametrize("path", ["/signup", "/signin", "/oauth/authorize"])
async def test_a_form_without_a_multipart_boundary_is_a_400(client, stack, path):
    async with client.post(
        f"{stack.url}{path}",
        data=b"--x\r\n",
        headers={"Content-Type": "multipart/form-data"},
    ) as response:
        assert response.status == 400


async def test_a_nul_byte_in_the_query_is_a_400(client, stack):
    async with client.get(
        f"{stack.url}/oauth/authorize?client_id=%C3%9F%C2%80%00x&response_type=code"
    ) as response:
        status, _ = await status_and_body(response)
    assert status == 400
