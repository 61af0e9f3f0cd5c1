"""Authentication through the gateway, as a client sees it: every credential kind, every way
to get it wrong, revocation, request ids, CORS and the internal boundary."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

import aiohttp
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from services.auth import repo
from services.auth.domain import sign_jwt
from shared.http import ANONYMOUS, sign_principal
from shared.runtime import POOL
from tests import gateway_support


def basic(key: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{key}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def get_user(http: aiohttp.ClientSession, stack, headers: dict[str, str]):
    async with http.get(f"{stack.url}/user", headers=headers) as response:
        return response.status, await response.json(), response.headers


async def count_writes(stack) -> tuple[int, ...]:
    pool = stack.apps["auth"][POOL]
    return tuple(
        [
            await pool.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("accounts", "users", "api_keys", "api_tokens", "sessions", "outbox")
        ]
    )


async def test_user_answers_for_basic_jwt_and_token(http, stack, account):
    expected = {"id": account["user_id"], "name": account["name"], "email": account["email"]}
    legacy_jwt = sign_jwt(account["api_key"], account["api_secret"])  # no exp, as happo.io v13
    expiring_jwt = sign_jwt(
        account["api_key"], account["api_secret"], {"exp": int(time.time()) + 300}
    )
    for headers in (
        basic(account["api_key"], account["api_secret"]),
        bearer(legacy_jwt),
        bearer(expiring_jwt),
        bearer(account["token"]),
    ):
        status, body, _ = await get_user(http, stack, headers)
        assert (status, body) == (200, expected), headers


async def test_happo_v13_token_bytes_are_accepted(http, stack, account):
    # Exactly what happo.io v13 sends: header {"alg":"HS256","kid":key}, payload {"key":key}.
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "kid": account["api_key"]}, separators=(",", ":")).encode()
    ).rstrip(b"=")
    payload = base64.urlsafe_b64encode(
        json.dumps({"key": account["api_key"]}, separators=(",", ":")).encode()
    ).rstrip(b"=")
    signing_input = header + b"." + payload
    signature = base64.urlsafe_b64encode(
        hmac.new(account["api_secret"].encode(), signing_input, hashlib.sha256).digest()
    ).rstrip(b"=")
    token = (signing_input + b"." + signature).decode()
    status, body, _ = await get_user(http, stack, bearer(token))
    assert status == 200 and body["id"] == account["user_id"]


def hs256(header: dict, payload: dict, secret: str) -> str:
    """A JWS signed with HS256 by hand, whatever its header says: the attacker's tool."""
    signing_input = f"{b64url(header)}.{b64url(payload)}".encode()
    mac = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def kid_injections(key: str, secret: str) -> dict[str, dict[str, str]]:
    """Tokens whose ``kid`` tries to steer the key lookup (path traversal, SQL, size, type)
    or whose header brings its own key, each signed with a secret the attacker knows."""
    known = "attacker-chosen-secret"
    kids: dict[str, object] = {
        "path traversal": "../../../../etc/passwd",
        "path traversal to the key": f"../{key}",
        "SQL quote": "' OR '1'='1",
        "SQL comment": f"{key}'--",
        "SQL union": "x' UNION SELECT secret FROM api_keys--",
        "NUL byte": f"{key}\u0000",
        "very long": "k" * 4000,
        "a number": 1,
        "a list": [key],
        "an object": {"$ne": None},
        "empty": "",
    }
    found = {
        f"kid {name}": bearer(hs256({"alg": "HS256", "kid": kid}, {"key": key}, known))
        for name, kid in kids.items()
    }
    # The real kid, but the header names a key the attacker holds (RFC 7515 jwk / jku / x5u).
    own_key = {"kty": "oct", "k": base64.urlsafe_b64encode(known.encode()).decode().rstrip("=")}
    for name, extra in (
        ("jwk", {"jwk": own_key}),
        ("jku", {"jku": "https://evil.example/keys.json"}),
        ("x5u", {"x5u": "https://evil.example/cert.pem"}),
    ):
        header = {"alg": "HS256", "kid": key, **extra}
        found[f"header {name} brings its own key"] = bearer(hs256(header, {"key": key}, known))
    # The real secret under an alg spelling that is not exactly HS256.
    for alg in ("hs256", "HS256 ", "none", "None", "NONE", "nOnE"):
        found[f"alg {alg!r}"] = bearer(hs256({"alg": alg, "kid": key}, {"key": key}, secret))
    return found


async def test_bad_credentials_are_refused_and_write_nothing(http, stack, account, resilience):
    key, secret = account["api_key"], account["api_secret"]
    other = stack.create_account("Mallory")
    now = int(time.time())
    rsa = RSAKey.generate_key(2048)
    forged_rs256 = jwt.encode({"alg": "RS256", "kid": key}, {"key": key}, rsa, algorithms=["RS256"])
    hs512 = jwt.encode(
        {"alg": "HS512", "kid": key},
        {"key": key},
        OctKey.import_key(secret.encode()),
        algorithms=["HS512"],
    )
    alg_none = f"{b64url({'alg': 'none', 'kid': key})}.{b64url({'key': key})}."
    good = sign_jwt(key, secret)
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    cases = {
        "no header": {},
        "empty bearer": {"Authorization": "Bearer "},
        "unknown scheme": {"Authorization": f"Token {account['token']}"},
        "basic not base64": {"Authorization": "Basic %%%"},
        "basic without colon": {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()},
        "wrong secret": basic(key, "0" * 64),
        "unknown key": basic("f" * 32, secret),
        "other account's secret": basic(key, other["api_secret"]),
        "jwt signed with another secret": bearer(sign_jwt(key, other["api_secret"])),
        "jwt kid of another key": bearer(
            jwt.encode(
                {"alg": "HS256", "kid": other["api_key"]},
                {"key": key},
                OctKey.import_key(other["api_secret"].encode()),
            )
        ),
        "jwt key claim differs from kid": bearer(
            jwt.encode(
                {"alg": "HS256", "kid": key},
                {"key": other["api_key"]},
                OctKey.import_key(secret.encode()),
            )
        ),
        "jwt expired": bearer(sign_jwt(key, secret, {"exp": now - 3600})),
        "jwt not yet valid": bearer(sign_jwt(key, secret, {"nbf": now + 3600})),
        "jwt alg none": bearer(alg_none),
        "jwt RS256 (key confusion)": bearer(forged_rs256),
        "jwt HS512": bearer(hs512),
        "jwt tampered signature": bearer(tampered),
        "jwt garbage": bearer("a.b.c"),
        "token unknown": bearer("drk_" + "x" * 43),
        "token truncated": bearer(account["token"][:-1]),
        **kid_injections(key, secret),
    }
    before = await count_writes(stack)
    answers = {name: await get_user(http, stack, headers) for name, headers in cases.items()}
    written = sum(abs(a - b) for a, b in zip(await count_writes(stack), before, strict=True))
    accepted = sorted(name for name, (status, _, _) in answers.items() if status < 400)
    resilience.row(
        "auth",
        "forged and malformed credentials: alg none, RS/HS confusion, kid injection",
        injected=f"{len(cases)} credentials on GET /user: alg none (5 spellings), RS256 signed"
        " with an attacker's key (key confusion), HS512, kid path traversal / SQL / NUL /"
        " 4000 chars / wrong types, jwk/jku/x5u header keys, expired, not yet valid, tampered,"
        " other account's secret or kid, Basic and token malformations",
        observed="401 bad_credentials to every one, nothing written"
        if not accepted and not written
        else f"accepted: {accepted}; rows written: {written}",
        accepted=len(accepted),
        effects=written,
        errors_5xx=sum(status >= 500 for status, _, _ in answers.values()),
    )
    for name, (status, body, response_headers) in answers.items():
        assert status == 401, name
        assert body["error"]["code"] == "bad_credentials", name
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], name
        assert response_headers["Content-Type"].startswith("application/json")
    assert written == 0


async def test_unknown_routes_and_internal_paths_are_404(http, stack, account):
    for path in ("/nope", "/internal/resolve", "/api/nothing-here"):
        async with http.get(stack.url + path, headers=bearer(account["token"])) as response:
            assert response.status == 404, path
            assert (await response.json())["error"]["code"] == "not_found"
    async with http.post(stack.url + "/internal/resolve", json={"authorization": "x"}) as response:
        assert response.status == 404


async def test_services_refuse_calls_that_bypass_the_gateway(http, stack, account):
    auth = stack.service_urls["auth"]
    async with http.get(
        f"{auth}/user", headers=basic(account["api_key"], account["api_secret"])
    ) as r:
        assert r.status == 403
        assert (await r.json())["error"]["code"] == "forbidden"
    # A principal signed with the wrong key is refused too.
    forged = sign_principal("not-the-key", "GET", "/user", ANONYMOUS, "rid")
    async with http.get(f"{auth}/user", headers=forged) as r:
        assert r.status == 403
    # Health stays open for probes.
    async with http.get(f"{auth}/healthz") as r:
        assert r.status == 200


async def test_revoked_key_and_token_are_refused_on_the_next_request(http, stack, resilience):
    owner = stack.create_account("Revoker")
    key_headers = basic(owner["api_key"], owner["api_secret"])
    token_headers = bearer(owner["token"])
    assert (await get_user(http, stack, key_headers))[0] == 200  # now cached in the gateway
    assert (await get_user(http, stack, token_headers))[0] == 200
    async with http.get(f"{stack.url}/api/keys", headers=token_headers) as r:
        listed = await r.json()
    key_id = listed["keys"][0]["id"]
    token_id = listed["tokens"][0]["id"]
    async with http.delete(f"{stack.url}/api/keys/{key_id}", headers=token_headers) as r:
        assert r.status == 200 and (await r.json())["kind"] == "api_key"
    after_key = {
        "Basic of the revoked key": await get_user(http, stack, key_headers),
        "JWT of the revoked key": await get_user(
            http, stack, bearer(sign_jwt(owner["api_key"], owner["api_secret"]))
        ),
        "JWT of the revoked key, with exp": await get_user(
            http,
            stack,
            bearer(sign_jwt(owner["api_key"], owner["api_secret"], {"exp": int(time.time()) + 60})),
        ),
    }
    # The token revokes itself: the next request with it is refused too.
    async with http.delete(f"{stack.url}/api/keys/{token_id}", headers=token_headers) as r:
        assert r.status == 200
    refused = {
        **after_key,
        "the revoked token": await get_user(http, stack, token_headers),
    }
    async with http.get(f"{stack.url}/api/keys", headers=key_headers) as r:
        listing = r.status
    accepted = sorted(name for name, (status, _, _) in refused.items() if status != 401)
    resilience.row(
        "auth",
        "credentials of revoked keys and tokens",
        injected="a key pair and a token, each used (and cached by the gateway), revoked, then"
        " used again: Basic, a legacy JWT, an expiring JWT, the token, and the key on the"
        " credentials API",
        observed="401 bad_credentials on the very next request of each"
        if not accepted and listing == 401
        else f"still accepted: {accepted}, /api/keys {listing}",
        accepted=len(accepted) + (listing != 401),
        errors_5xx=sum(status >= 500 for status, _, _ in refused.values()) + (listing >= 500),
    )
    for name, (status, body, _) in refused.items():
        assert status == 401 and body["error"]["code"] == "bad_credentials", name
    assert listing == 401


async def test_revocation_event_evicts_a_cached_credential_within_a_second(http, stack):
    """A revocation that did not pass through this gateway reaches it as an event."""
    owner = stack.create_account("Evicted")
    headers = bearer(owner["token"])
    assert (await get_user(http, stack, headers))[0] == 200
    pool = stack.apps["auth"][POOL]
    async with pool.acquire() as conn:
        token_id = await conn.fetchval(
            "SELECT id FROM api_tokens WHERE account_id = $1", uuid.UUID(owner["account_id"])
        )
        assert (
            await repo.revoke_credential(conn, uuid.UUID(owner["account_id"]), token_id) == "token"
        )
    deadline = time.monotonic() + 1.0
    status = 200
    while time.monotonic() < deadline:
        status = (await get_user(http, stack, headers))[0]
        if status == 401:
            break
        await asyncio.sleep(0.05)
    assert status == 401


async def test_another_accounts_credential_cannot_be_revoked(http, stack):
    alice, bob = stack.create_account("Alice"), stack.create_account("Bob")
    async with http.get(f"{stack.url}/api/keys", headers=bearer(bob["token"])) as r:
        bob_key = (await r.json())["keys"][0]["id"]
    async with http.delete(f"{stack.url}/api/keys/{bob_key}", headers=bearer(alice["token"])) as r:
        assert r.status == 404
    assert (await get_user(http, stack, basic(bob["api_key"], bob["api_secret"])))[0] == 200
    async with http.delete(f"{stack.url}/api/keys/not-a-uuid", headers=bearer(alice["token"])) as r:
        assert r.status == 404


async def test_create_credentials_through_the_api(http, stack, account):
    headers = bearer(account["token"])
    async with http.post(f"{stack.url}/api/keys", json={"kind": "key"}, headers=headers) as r:
        assert r.status == 201
        pair = await r.json()
    assert (await get_user(http, stack, basic(pair["api_key"], pair["api_secret"])))[0] == 200
    async with http.post(
        f"{stack.url}/api/keys", json={"kind": "token", "name": "ci"}, headers=headers
    ) as r:
        token = (await r.json())["token"]
    assert token.startswith("drk_")
    assert (await get_user(http, stack, bearer(token)))[0] == 200
    for bad in ({"kind": "root"}, {"kind": "token", "admin": True}, {"name": 5}):
        async with http.post(f"{stack.url}/api/keys", json=bad, headers=headers) as r:
            assert r.status == 422, bad
            assert (await r.json())["error"]["code"] == "invalid_request"
    async with http.post(f"{stack.url}/api/keys", data=b"{not json", headers=headers) as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "bad_request"
    async with http.get(f"{stack.url}/api/keys", headers=headers) as r:
        listed = await r.json()
    assert all("secret" not in json.dumps(k) for k in listed["keys"])
    assert any(t["prefix"] == token[:10] and t["name"] == "ci" for t in listed["tokens"])


async def test_request_id_is_echoed_or_made(http, stack, account):
    async with http.get(
        f"{stack.url}/user", headers={**bearer(account["token"]), "X-Request-Id": "trace-123"}
    ) as r:
        assert r.headers["X-Request-Id"] == "trace-123"
    async with http.get(f"{stack.url}/user") as r:
        assert len(r.headers["X-Request-Id"]) == 32


async def test_cors_preflight_and_simple_requests_from_any_origin(http, stack, account):
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with http.options(f"{stack.url}/user/images", headers=preflight) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()
    async with http.get(
        f"{stack.url}/user", headers={**bearer(account["token"]), "Origin": "https://x.example"}
    ) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "X-Request-Id" in r.headers["Access-Control-Expose-Headers"]
        assert "Access-Control-Allow-Credentials" not in r.headers
    async with http.get(f"{stack.url}/user", headers={"Origin": "https://x.example"}) as r:
        assert r.status == 401 and r.headers["Access-Control-Allow-Origin"] == "*"


async def test_oversized_headers_and_bodies_are_refused(http, stack, account):
    headers = {**bearer(account["token"]), "X-Padding": "x" * 20_000}
    async with http.get(f"{stack.url}/user", headers=headers) as r:
        assert r.status == 431
        assert (await r.json())["error"]["code"] == "headers_too_large"
    limit = int(stack.env["DARKROOM_MAX_BODY_BYTES"])
    big = b"x" * (limit + 1)
    async with http.post(f"{stack.url}/api/keys", data=big, headers=bearer(account["token"])) as r:
        assert r.status == 413
        assert (await r.json())["error"]["code"] == "payload_too_large"

    async def chunks():
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536

    before = await count_writes(stack)
    async with http.post(
        f"{stack.url}/api/keys", data=chunks(), headers=bearer(account["token"])
    ) as r:
        assert r.status == 413
    assert await count_writes(stack) == before


strict_gateway = gateway_support.strict_gateway


async def test_rate_limit_answers_429_with_retry_after(http, strict_gateway, account):
    statuses = []
    for _ in range(4):
        async with http.get(f"{strict_gateway}/user", headers=bearer(account["token"])) as r:
            statuses.append(r.status)
            last = r
            body = await r.json()
    assert statuses == [200, 200, 200, 429]
    assert body["error"]["code"] == "rate_limit_exceeded"
    # A moving window of 3 per 60 s: a slot frees when the first request is a minute old.
    assert 55 <= int(last.headers["Retry-After"]) <= 60
    # Anonymous callers (and failed sign-ins) are limited per address.
    anonymous = []
    for _ in range(3):
        async with http.get(f"{strict_gateway}/user", headers=bearer("drk_wrong")) as r:
            anonymous.append(r.status)
    assert anonymous == [401, 401, 429]
