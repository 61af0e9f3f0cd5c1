"""The plain rules, without servers: routing, rate limits, the credential cache, credential
parsing, Happo JWT checks, secret sealing and configuration loading."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses

import pytest

from gateway import domain as gw
from gateway.config import GatewayConfig, parse_rate
from gateway.limiting import Limiter
from services.auth import domain as auth
from shared import errors
from shared.config import ConfigError, load
from shared.http import Principal
from shared.runtime import repeat


def test_routing_picks_the_most_specific_route():
    table = gw.RoutingTable(
        [
            gw.Route("/user", "auth", gw.REQUIRED, exact=True),
            gw.Route("/user/images", "processing", gw.REQUIRED),
            gw.Route("/keys", "auth", gw.OPTIONAL),
        ]
    )
    assert table.match("/user").service == "auth"
    assert table.match("/user/images/42").service == "processing"
    assert table.match("/user/other") is None  # exact: no prefix match
    assert table.match("/keys/1/revoke").service == "auth"
    assert table.match("/keysmith") is None  # a prefix is a path segment, not a string


async def test_oauth_limit_is_20_per_5_seconds_with_retry_after():
    # In memory (no REDIS_URL): a moving window, so the 21st waits for the 1st to age out.
    limiter = Limiter()
    waits = [await limiter.take("oauth:t", 20, 5.0) for _ in range(21)]
    assert waits[:20] == [0.0] * 20
    assert 4.0 < waits[20] <= 5.0
    assert await limiter.take("oauth:t", 20, 5.0) > 0  # refused still: no refill in between
    assert await limiter.take("oauth:other", 20, 5.0) == 0.0  # per credential
    assert not limiter.shared


def test_limit_classes():
    assert gw.limit_class(Principal("oauth", "a", "u", "c")) == "oauth"
    for kind in ("basic", "jwt", "token"):
        assert gw.limit_class(Principal(kind, "a", "u", "c")) == "api_key"
    assert gw.limit_class(Principal("session", "a", "u", "c")) == "session"
    assert gw.limit_class(Principal("anonymous")) == "anonymous"


def test_principal_cache_expires_and_evicts_by_credential():
    cache = gw.PrincipalCache(ttl=10)
    alice = Principal("token", "acct", "user", "cred-1")
    cache.put("k1", alice, now=0)
    cache.put("k2", alice, now=0)  # the same credential seen through two headers
    cache.put("k3", Principal("token", "acct", "user", "cred-2"), now=0)
    assert cache.get("k1", now=9.9) == alice
    assert cache.evict_credential("cred-1") == 2
    assert cache.get("k1", now=1) is None and cache.get("k2", now=1) is None
    assert cache.get("k3", now=1) is not None
    assert cache.get("k3", now=10) is None  # expired
    cache.clear()
    assert len(cache) == 0


def test_cache_keys_do_not_contain_the_secret():
    key = gw.cache_key("Bearer drk_secret", None)
    assert "drk_secret" not in key and key != gw.cache_key("Bearer drk_secreT", None)


def test_same_origin_check():
    allowed = {"http://127.0.0.1:8080"}
    assert gw.same_origin("http://127.0.0.1:8080", allowed)
    assert not gw.same_origin("http://127.0.0.1:8080.evil.example", allowed)
    assert not gw.same_origin(None, allowed)


def test_parse_authorization_kinds():
    basic = base64.b64encode(b"abc123abc1:s3cr:et").decode()
    assert auth.parse_authorization(f"Basic {basic}") == auth.BasicCredential(
        "abc123abc1", "s3cr:et"
    )
    assert isinstance(auth.parse_authorization("Bearer drk_abc"), auth.TokenCredential)
    jwt = auth.sign_jwt("abc123abc1", "secret-secret-secret")
    assert auth.parse_authorization(f"bearer {jwt}") == auth.JwtCredential("abc123abc1", jwt)
    for bad in ("", "Basic", "Bearer", "Digest x", "Bearer x" * 1000, "Bearer a.b"):
        with pytest.raises(errors.BadCredentials):
            auth.parse_authorization(bad)


def test_happo_jwt_rules():
    key, secret = "abc123abc1", "0123456789abcdef0123"
    legacy = auth.sign_jwt(key, secret)
    assert auth.verify_jwt(legacy, key, secret) == {"key": key}
    v6 = auth.sign_jwt(key, secret, {"exp": 1_000_300})
    assert auth.verify_jwt(v6, key, secret, now=1_000_000)["exp"] == 1_000_300
    with pytest.raises(errors.BadCredentials, match="expired"):
        auth.verify_jwt(v6, key, secret, leeway=30, now=1_000_331)
    early = auth.sign_jwt(key, secret, {"nbf": 2_000_000})
    with pytest.raises(errors.BadCredentials, match="not valid yet"):
        auth.verify_jwt(early, key, secret, now=1_000_000)
    with pytest.raises(errors.BadCredentials):
        auth.verify_jwt(legacy, key, "another-secret-entirely")
    with pytest.raises(errors.BadCredentials, match="kid"):
        auth.verify_jwt(auth.sign_jwt(key, secret), "otherkey12", secret)


def test_secret_box_round_trip_and_tamper_detection():
    box = auth.SecretBox(base64.b64encode(bytes(range(32))).decode())
    sealed = box.seal("the secret", b"key-id-1")
    assert b"the secret" not in sealed
    assert box.open(sealed, b"key-id-1") == "the secret"
    with pytest.raises(ValueError):
        box.open(sealed, b"key-id-2")  # a row's secret cannot be moved to another key
    with pytest.raises(ValueError):
        box.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), b"key-id-1")
    with pytest.raises(ValueError):
        auth.SecretBox(base64.b64encode(b"short").decode())


def test_passwords_hash_with_argon2_and_verify():
    hashed = auth.hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert auth.password_matches(hashed, "correct horse")
    assert not auth.password_matches(hashed, "Correct horse")
    assert not auth.password_matches("not-a-hash", "x")


def test_config_reads_env_files_and_refuses_missing_secrets(tmp_path):
    secret_file = tmp_path / "internal"
    secret_file.write_text("from-a-file\n")
    env = {
        "DARKROOM_INTERNAL_KEY_FILE": str(secret_file),
        "DARKROOM_RATE_OAUTH": "10/2",
        "DARKROOM_TRUST_FORWARDED": "yes",
        "DARKROOM_SECRETS_DIR": str(tmp_path / "none"),
    }
    config = load(GatewayConfig, env)
    assert config.internal_key == "from-a-file"
    assert config.rate_oauth == (10, 2.0) and config.trust_forwarded is True
    assert config.rate_api_key == (2000, 10.0)  # default
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.internal_key = "changed"  # type: ignore[misc]
    with pytest.raises(ConfigError, match="DARKROOM_INTERNAL_KEY"):
        load(GatewayConfig, {"DARKROOM_SECRETS_DIR": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="DARKROOM_PORT"):
        load(GatewayConfig, {**env, "DARKROOM_PORT": "eighty"})
    (tmp_path / "generated").mkdir()
    (tmp_path / "generated" / "darkroom_internal_key").write_text("generated\n")
    assert (
        load(GatewayConfig, {"DARKROOM_SECRETS_DIR": str(tmp_path / "generated")}).internal_key
        == "generated"
    )
    with pytest.raises(ValueError):
        parse_rate("0/5")
    with pytest.raises(ValueError, match="whole SECONDS"):
        parse_rate("20/2.5")  # budgets live in Redis keys that expire by the second


async def test_repeat_runs_again_after_a_failed_run_until_cancelled():
    runs: list[int] = []

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            raise RuntimeError("a database outage, say")

    task = asyncio.create_task(repeat(0.01, job, "test.job"))
    while len(runs) < 4:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled() and runs[:4] == [0, 1, 2, 3]
