"""OAuth applications (Progimage dialect): registered with the operator CLI or on the
applications page, usable at once, listed and deleted only by their own tenant, and deleting
one revokes every token it holds."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from urllib.parse import urlencode

from services.auth import repo
from shared.runtime import POOL
from tests import oauth_support
from tests.oauth_support import (
    REDIRECT,
    Forms,
    browser,
    consent,
    exchange,
    get_code,
    query_of,
    register,
    sign_in,
    user_status,
)

user = oauth_support.user
developer = oauth_support.developer


async def test_the_cli_registers_a_working_client_and_refuses_bad_input(
    stack, client, user, developer
):
    registered = register(stack, developer, "http://127.0.0.1:9999/cb")
    assert re.fullmatch(r"[A-Za-z0-9]{64}", registered["client_secret"])
    query = {"client_id": registered["client_id"], "response_type": "code"}
    async with browser() as session:
        location = await consent(
            session, stack, user, f"{stack.url}/oauth/authorize?{urlencode(query)}"
        )
    assert location.startswith("http://127.0.0.1:9999/cb?code=")
    status, answer, _ = await exchange(client, stack, registered, code=query_of(location)["code"])
    assert status == 200 and await user_status(client, stack, answer["access_token"]) == 200
    stored = await stack.apps["auth"][POOL].fetchval(
        "SELECT secret_hash FROM oauth_clients WHERE client_id = $1", registered["client_id"]
    )
    assert stored == hashlib.sha256(registered["client_secret"].encode()).digest()
    for account_id, uri, message in (
        (str(uuid.uuid4()), REDIRECT, "no account"),
        ("not-a-uuid", REDIRECT, "UUID"),
        (developer["account_id"], "https://app.example/cb#frag", "fragment"),
        (developer["account_id"], "ftp://app.example/cb", "https"),
        (developer["account_id"], "http://app.example/cb", "https"),
        (developer["account_id"], "https://app.example;script-src/cb", "host name"),
    ):
        done = stack.cli(
            "oauth-client", "create", "--account", account_id, "--redirect-uri", uri, check=False
        )
        assert done.returncode == 1 and message in done.stderr, done.stderr
        assert done.stdout == ""


async def test_applications_page_registers_lists_and_deletes(stack, client, user, other_account):
    async with browser() as session:
        async with session.get(f"{stack.url}/applications", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/signin?next=/applications"
        assert await sign_in(session, stack, user, r.headers["Location"]) == "/applications"
        async with session.get(f"{stack.url}/applications") as r:
            assert r.status == 200
            form = Forms(await r.text()).form("/applications")
        csrf = form["fields"]["csrf"]
        fields = {"name": "Gallery Sync", "redirect_uri": REDIRECT}
        origin = {"Origin": stack.url}
        async with session.post(
            f"{stack.url}/applications", data={**fields, "csrf": "forged"}, headers=origin
        ) as r:
            assert r.status == 403
        async with session.post(
            f"{stack.url}/applications",
            data={**fields, "redirect_uri": "https://x.example/#f", "csrf": csrf},
            headers=origin,
        ) as r:
            assert r.status == 422 and "fragment" in await r.text()
        async with session.post(
            f"{stack.url}/applications", data={**fields, "csrf": csrf}, headers=origin
        ) as r:
            assert r.status == 201
            page = await r.text()
        client_id = re.search(r"Client ID: <code class=\"secret\">([A-Za-z0-9]+)</code>", page)[1]
        secret = re.search(r"Client secret: <code class=\"secret\">([A-Za-z0-9]{64})</code>", page)[
            1
        ]
        async with session.get(f"{stack.url}/applications") as r:
            listing = await r.text()
        assert client_id in listing and "Gallery Sync" in listing and secret not in listing
        delete_action = next(
            f["action"] for f in Forms(listing).forms if f["action"].endswith("/delete")
        )

        registered = {"client_id": client_id, "client_secret": secret}
        query = {"client_id": client_id, "response_type": "code", "state": "g"}
        location = await consent(
            session, stack, user, f"{stack.url}/oauth/authorize?{urlencode(query)}"
        )
        status, answer, _ = await exchange(
            client, stack, registered, code=query_of(location)["code"]
        )
        assert status == 200
        assert await user_status(client, stack, answer["access_token"]) == 200  # cached

        # Another tenant cannot delete it.
        async with browser() as stranger:
            await sign_in(stranger, stack, other_account, "/signin?next=/applications")
            async with stranger.get(f"{stack.url}/applications") as r:
                stranger_csrf = Forms(await r.text()).form("/applications")["fields"]["csrf"]
                assert client_id not in await r.text()
            async with stranger.post(
                stack.url + delete_action, data={"csrf": stranger_csrf}, headers=origin
            ) as r:
                assert r.status == 404
        assert await user_status(client, stack, answer["access_token"]) == 200

        async with session.post(
            stack.url + delete_action, data={"csrf": csrf}, headers=origin, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/applications"
        assert await user_status(client, stack, answer["access_token"]) == 401
        async with session.get(f"{stack.url}/applications") as r:
            assert client_id not in await r.text()
    status, refused, _ = await exchange(
        client, stack, registered, grant_type="refresh_token", refresh_token=answer["refresh_token"]
    )
    assert status == 401 and refused["error"] == "invalid_client"


async def test_deleting_an_application_revokes_every_token_it_holds(stack, client, user, developer):
    registered = register(stack, developer)
    tokens = []
    for _ in range(2):
        code = await get_code(stack, user, registered)
        tokens.append((await exchange(client, stack, registered, code=code))[1]["access_token"])
    for token in tokens:
        assert await user_status(client, stack, token) == 200  # both cached by the gateway
    pool = stack.apps["auth"][POOL]
    client_pk = await pool.fetchval(
        "SELECT id FROM oauth_clients WHERE client_id = $1", registered["client_id"]
    )
    async with pool.acquire() as conn:
        revoked = await repo.delete_oauth_client(
            conn, uuid.UUID(developer["account_id"]), client_pk
        )
    assert len(revoked) == 2
    # Polled a few times a second, within the tokens' own budget (20 per 5 s): a tight loop
    # would spend it and see 429s from the cache entries it is waiting to see evicted.
    deadline = time.monotonic() + 10
    statuses = [200]
    while time.monotonic() < deadline and statuses != [401, 401]:
        await asyncio.sleep(0.3)
        statuses = [await user_status(client, stack, token) for token in tokens]
    assert statuses == [401, 401]  # credential.revoked evicted both from the gateway's cache
