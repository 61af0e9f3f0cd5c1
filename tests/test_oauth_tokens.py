"""The OAuth 2.0 token endpoint and what its tokens may do (Progimage dialect), through the
gateway: client authentication, refresh rotation and replay, revocation (RFC 7009), codes and
refresh tokens bound to their client, expiry, no credential management with an OAuth token,
telling the bearer kinds apart, the per-token rate limit and CORS."""

from __future__ import annotations

import hashlib

import httpx2
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from services.auth import domain
from shared import errors
from shared.runtime import POOL
from tests import oauth_support
from tests.oauth_support import (
    REDIRECT,
    assert_seed_answer,
    basic,
    bearer,
    exchange,
    get_code,
    loopback,
    register,
    user_status,
)

user = oauth_support.user
developer = oauth_support.developer
app_client = oauth_support.app_client


async def test_client_authentication_failures_are_401_invalid_client(
    stack, client, user, app_client
):
    code = await get_code(stack, user, app_client)
    wrong = {**app_client, "client_secret": "0" * 64}
    status, answer, headers = await exchange(client, stack, wrong, code=code)
    assert status == 401 and answer["error"] == "invalid_client"
    assert headers["WWW-Authenticate"].startswith("Basic")
    async with client.post(
        f"{stack.url}/oauth/token", data={"code": code}, headers=basic(wrong)
    ) as r:
        assert r.status == 401 and (await r.json())["error"] == "invalid_client"
    unknown = {"client_id": "nobody", "client_secret": app_client["client_secret"]}
    assert (await exchange(client, stack, unknown, code=code))[0] == 401
    async with client.post(f"{stack.url}/oauth/token", data={"code": code}) as r:
        assert r.status == 401 and (await r.json())["error"] == "invalid_client"
    # Two methods at once is a malformed request.
    async with client.post(
        f"{stack.url}/oauth/token",
        data={"code": code, "client_secret": app_client["client_secret"]},
        headers=basic(app_client),
    ) as r:
        assert r.status == 400 and (await r.json())["error"] == "invalid_request"
    async with client.post(
        f"{stack.url}/oauth/token",
        data={"grant_type": "password", "username": "x", "password": "y"},
        headers=basic(app_client),
    ) as r:
        assert r.status == 400 and (await r.json())["error"] == "unsupported_grant_type"
    # Failed client authentication spent nothing: the right client still redeems the code.
    async with client.post(
        f"{stack.url}/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        headers=basic(app_client),
    ) as r:
        assert r.status == 200
        assert_seed_answer(await r.json())


async def test_refresh_rotates_and_the_old_refresh_token_is_refused(
    stack, client, user, app_client
):
    code = await get_code(stack, user, app_client)
    first = (await exchange(client, stack, app_client, code=code))[1]
    assert await user_status(client, stack, first["access_token"]) == 200  # now cached
    status, second, _ = await exchange(
        client, stack, app_client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200, second
    assert_seed_answer(second)
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert await user_status(client, stack, second["access_token"]) == 200
    assert await user_status(client, stack, first["access_token"]) == 401
    # A replayed refresh token means it leaked: refused, and its grant is revoked.
    status, replay, _ = await exchange(
        client, stack, app_client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 400 and replay["error"] == "invalid_grant"
    assert await user_status(client, stack, second["access_token"]) == 401
    status, after, _ = await exchange(
        client, stack, app_client, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert status == 400 and after["error"] == "invalid_grant"


async def test_a_refresh_token_only_works_for_its_own_client(
    stack, client, user, developer, app_client
):
    other = register(stack, developer)
    first = (
        await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
    )[1]
    status, answer, _ = await exchange(
        client, stack, other, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 400 and answer["error"] == "invalid_grant"
    status, _, _ = await exchange(
        client, stack, app_client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200


async def test_revocation_takes_effect_at_once(stack, client, user, developer, app_client):
    transport = httpx2.AsyncHTTPTransport(local_address=loopback())
    async with AsyncOAuth2Client(
        app_client["client_id"], app_client["client_secret"], transport=transport
    ) as oauth_client:
        first = (
            await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
        )[1]
        assert await user_status(client, stack, first["access_token"]) == 200  # cached
        response = await oauth_client.revoke_token(
            f"{stack.url}/oauth/revoke", token=first["access_token"], token_type_hint="access_token"
        )
        assert response.status_code == 200
        assert await user_status(client, stack, first["access_token"]) == 401
        status, _, _ = await exchange(
            client,
            stack,
            app_client,
            grant_type="refresh_token",
            refresh_token=first["refresh_token"],
        )
        assert status == 400  # the pair went together

        # Revoking the refresh token ends the access token of its grant too.
        second = (
            await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
        )[1]
        assert await user_status(client, stack, second["access_token"]) == 200
        response = await oauth_client.revoke_token(
            f"{stack.url}/oauth/revoke", token=second["refresh_token"]
        )
        assert response.status_code == 200
        assert await user_status(client, stack, second["access_token"]) == 401

        # Unknown and already-revoked tokens: still 200 (RFC 7009 §2.2).
        for token in ("nope", first["access_token"]):
            response = await oauth_client.revoke_token(f"{stack.url}/oauth/revoke", token=token)
            assert response.status_code == 200

    # Another client cannot revoke this client's token (and learns nothing from the answer).
    third = (
        await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
    )[1]
    other = register(stack, developer)
    async with client.post(
        f"{stack.url}/oauth/revoke", data={"token": third["access_token"]}, headers=basic(other)
    ) as r:
        assert r.status == 200
    assert await user_status(client, stack, third["access_token"]) == 200
    async with client.post(f"{stack.url}/oauth/revoke", data={}, headers=basic(app_client)) as r:
        assert r.status == 400 and (await r.json())["error"] == "invalid_request"
    async with client.post(
        f"{stack.url}/oauth/revoke",
        data={"token": third["access_token"]},
        headers=basic({**app_client, "client_secret": "wrong"}),
    ) as r:
        assert r.status == 401 and (await r.json())["error"] == "invalid_client"
    assert await user_status(client, stack, third["access_token"]) == 200


async def test_a_code_cannot_be_exchanged_by_another_client(
    stack, client, user, developer, app_client
):
    other = register(stack, developer)
    code = await get_code(stack, user, app_client)
    status, answer, _ = await exchange(client, stack, other, code=code)
    assert status == 400 and answer["error"] == "invalid_grant"
    status, answer, _ = await exchange(client, stack, app_client, code=code)
    assert status == 200, answer


async def test_access_tokens_expire(stack, client, user, app_client):
    answer = (
        await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
    )[1]
    await stack.apps["auth"][POOL].execute(
        "UPDATE oauth_tokens SET expires_at = now() - interval '1 second' WHERE access_hash = $1",
        hashlib.sha256(answer["access_token"].encode()).digest(),
    )
    async with client.get(f"{stack.url}/user", headers=bearer(answer["access_token"])) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "bad_credentials"


async def test_oauth_tokens_cannot_manage_credentials(stack, client, user, app_client):
    answer = (
        await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
    )[1]
    headers = bearer(answer["access_token"])
    async with client.get(f"{stack.url}/api/keys", headers=headers) as r:
        assert r.status == 403
    async with client.post(f"{stack.url}/api/keys", json={"kind": "token"}, headers=headers) as r:
        assert r.status == 403
    async with client.post(
        f"{stack.url}/keys", data={"kind": "token"}, headers=headers, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"].startswith("/signin")


def test_bearer_values_are_told_apart():
    token = generate_token(64)
    assert isinstance(domain.parse_authorization(f"Bearer {token}"), domain.OAuthCredential)
    assert isinstance(domain.parse_authorization("Bearer drk_" + "a" * 43), domain.TokenCredential)
    jwt = domain.sign_jwt("ab" * 16, "cd" * 32)
    assert isinstance(domain.parse_authorization(f"Bearer {jwt}"), domain.JwtCredential)
    for value in (token[:-1], token + "a", token[:-1] + "-"):
        with pytest.raises(errors.BadCredentials):
            domain.parse_authorization(f"Bearer {value}")


async def test_progimage_rate_limit_is_20_requests_per_5_seconds_per_token(
    stack, client, app_client
):
    person = stack.create_account("Rate Limited Person")
    code = await get_code(stack, person, app_client)
    status, answer, _ = await exchange(client, stack, app_client, code=code)
    assert status == 200
    headers = bearer(answer["access_token"])
    statuses, refusal = [], None
    for _ in range(24):
        async with client.get(f"{stack.url}/user/images", headers=headers) as r:
            statuses.append(r.status)
            if r.status == 429 and refusal is None:
                refusal = (r.headers.get("Retry-After"), (await r.json())["error"]["code"])
    # The bucket refills at 4/s while the loop runs, so a few more than 20 may pass.
    assert 20 <= statuses.count(200) <= 23, statuses
    assert statuses[:20] == [200] * 20 and statuses[-1] == 429
    assert refusal is not None and int(refusal[0]) >= 1
    assert refusal[1] == "rate_limit_exceeded"


async def test_progimage_cors_works_from_any_origin(stack, client, user, app_client):
    origin = "https://photos.example.org"
    async with client.options(
        f"{stack.url}/user/images",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    ) as preflight:
        assert preflight.status in (200, 204)
        assert preflight.headers["Access-Control-Allow-Origin"] in ("*", origin)
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    code = await get_code(stack, user, app_client)
    _, answer, _ = await exchange(client, stack, app_client, code=code)
    async with client.get(
        f"{stack.url}/user/images",
        headers={**bearer(answer["access_token"]), "Origin": origin},
    ) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] in ("*", origin)
