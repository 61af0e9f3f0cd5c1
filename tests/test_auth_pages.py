"""The account pages in a browser's shoes: sign up, keys, invalidation, sign out, and
cross-site requests refused."""

from __future__ import annotations

import re
import uuid

import aiohttp


async def browser():
    """A client that keeps cookies like a browser (also on 127.0.0.1) and does not follow
    redirects, so each hop can be checked."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_up(session: aiohttp.ClientSession, url: str, email: str) -> aiohttp.ClientResponse:
    form = {"name": "Grace Hopper", "email": email, "password": "cobol-forever"}
    return await session.post(
        f"{url}/signup", data=form, allow_redirects=False, headers={"Origin": url}
    )


def form_token(page: str) -> str:
    """The anti-forgery token the page's forms carry (every form of a page has the same)."""
    found = set(re.findall(r'name="csrf" value="([0-9a-f]*)"', page))
    assert len(found) == 1 and "" not in found, found
    return found.pop()


async def test_sign_up_generate_token_use_it_and_sign_out(stack, http):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    async with await browser() as session:
        async with await sign_up(session, stack.url, email) as r:
            assert r.status == 303 and r.headers["Location"] == "/keys"
            cookie = r.cookies["darkroom_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Lax"
        async with session.get(f"{stack.url}/keys", allow_redirects=False) as r:
            assert r.status == 200
            page = await r.text()
            assert "API keys" in page and email in page
            assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
            csrf = form_token(page)
        async with session.post(
            f"{stack.url}/keys", data={"kind": "token", "csrf": csrf}, headers={"Origin": stack.url}
        ) as r:
            assert r.status == 201
            page = await r.text()
            token = re.search(r"(drk_[A-Za-z0-9_-]{43})", page)[1]
            assert form_token(page) == csrf
        async with http.get(f"{stack.url}/user", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200 and (await r.json())["email"] == email
        async with session.get(f"{stack.url}/api/keys") as r:
            token_id = (await r.json())["tokens"][0]["id"]
        # the list's Invalidate asks first; looking at the question changes nothing
        async with session.get(f"{stack.url}/keys") as r:
            assert f'href="/keys/{token_id}/revoke"' in await r.text()
        async with session.get(f"{stack.url}/keys/{token_id}/revoke") as r:
            question = await r.text()
            assert r.status == 200 and "Invalidate this token?" in question
            assert f'action="/keys/{token_id}/revoke"' in question and form_token(question) == csrf
        async with http.get(f"{stack.url}/user", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
        for unknown in (str(uuid.uuid4()), "not-a-uuid"):
            async with session.get(f"{stack.url}/keys/{unknown}/revoke") as r:
                assert r.status == 404
        async with session.post(
            f"{stack.url}/keys/{token_id}/revoke",
            data={"csrf": csrf},
            headers={"Origin": stack.url},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with http.get(f"{stack.url}/user", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 401
        # an invalidated credential is asked about no more
        async with session.get(f"{stack.url}/keys/{token_id}/revoke") as r:
            assert r.status == 404
        async with session.post(
            f"{stack.url}/signout",
            data={"csrf": csrf},
            headers={"Origin": stack.url},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with session.get(f"{stack.url}/keys", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/signin")


async def test_sign_in_with_the_right_password_only(stack, http):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    async with await browser() as session, await sign_up(session, stack.url, email) as r:
        assert r.status == 303
    async with await browser() as session:
        wrong = {"email": email, "password": "not-the-password", "next": "/keys"}
        async with session.post(f"{stack.url}/signin", data=wrong, allow_redirects=False) as r:
            assert r.status == 401 and "Wrong e-mail or password" in await r.text()
            assert "darkroom_session" not in r.cookies
        right = {"email": email.upper(), "password": "cobol-forever", "next": "//evil.example/"}
        async with session.post(f"{stack.url}/signin", data=right, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/keys"  # no open redirect
        async with session.get(f"{stack.url}/user") as r:
            assert r.status == 200 and (await r.json())["email"] == email


async def test_sign_up_refuses_bad_fields_and_taken_emails(stack):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    async with await browser() as session:
        async with await sign_up(session, stack.url, email) as r:
            assert r.status == 303
    async with await browser() as session:
        async with await sign_up(session, stack.url, email) as r:
            assert r.status == 409 and "already has an account" in await r.text()
        bad = {"name": "x", "email": "not-an-email", "password": "longenough"}
        async with session.post(f"{stack.url}/signup", data=bad, allow_redirects=False) as r:
            assert r.status == 422 and "email is not a valid address" in await r.text()
        short = {"name": "x", "email": f"a{email}", "password": "short"}
        async with session.post(f"{stack.url}/signup", data=short, allow_redirects=False) as r:
            assert r.status == 422


async def test_cross_site_posts_with_a_session_are_refused(stack):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    async with await browser() as session:
        async with await sign_up(session, stack.url, email) as r:
            assert r.status == 303
        async with session.get(f"{stack.url}/api/keys") as r:
            before = await r.json()
        for headers in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/x"}):
            async with session.post(
                f"{stack.url}/keys", data={"kind": "token"}, headers=headers
            ) as r:
                assert r.status == 403
                assert (await r.json())["error"]["code"] == "forbidden"
        async with session.get(f"{stack.url}/api/keys") as r:
            assert await r.json() == before


async def test_a_stale_session_cookie_still_shows_the_sign_in_page(stack):
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        jar.update_cookies(
            {"darkroom_session": "stale"}, response_url=aiohttp.client.URL(stack.url)
        )
        async with session.get(f"{stack.url}/signin") as r:
            assert r.status == 200 and "Sign in" in await r.text()
        async with session.get(f"{stack.url}/user") as r:
            assert r.status == 401
