"""The world tests/test_tenancy.py probes: the route table it is generated from (also what
tests/test_session_attacks.py generates its forged requests from), the two tenants talking to
the platform through the gateway, and the factories that make tenant A's resources of each kind
through the public API and read back what A sees of them.

The route table is ``gateway/openapi/``'s OPERATIONS plus the gateway's own router. A factory
per kind (``FACTORIES``) makes A's resource, reads A's view of it, makes B's own where B has one
(for requests with one foreign id), and names one nobody holds (for the namespaced routes).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import secrets
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from gateway import openapi
from gateway.routes import setup_routes as setup_gateway_routes
from tests.conftest import Stack
from tests.images_support import photo, random_png
from tests.progimage_support import b64
from tests.reports_support import compare, screenshot, snap, upload
from tests.routes_support import normalise

PASSWORD = "hunter2hunter2"  # every account conftest makes has it
#: Written into A's resources (names, messages, addresses) and never into B's requests: seeing
#: it in an answer to B means B was shown A's data.
MARK = f"tenancy{secrets.token_hex(6)}"
COMPONENT = "TenancyButton"
SUBSCRIBERS = [f"{MARK}-1@example.com", f"{MARK}-2@example.com"]
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
_APPLICATION = re.compile(r'action="/applications/([0-9a-f-]{36})/delete"')
_PLACEHOLDER = re.compile(r"{([^}:/]+)(?::[^}]*)?}")


# --- the route table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One public method + path, with the credential schemes its documentation names."""

    method: str
    path: str
    security: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def placeholders(self) -> list[str]:
        return _PLACEHOLDER.findall(self.path)

    def url(self, values: dict[str, str]) -> str:
        return _PLACEHOLDER.sub(lambda m: quote(values[m[1]], safe=""), self.path)


def route_table() -> list[Endpoint]:
    """The documented operations, plus the gateway's own routes the document leaves out."""
    table = {
        (op.method, op.path): Endpoint(
            op.method, op.path, tuple(name for scheme in op.security for name in scheme)
        )
        for op in openapi.OPERATIONS
    }
    gateway = web.Application()
    setup_gateway_routes(gateway)
    for route in gateway.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        # ``*`` is the catch-all proxy to the services, whose routes the document lists.
        if path is None or route.method in {"HEAD", "*"}:
            continue
        path = normalise(path)
        table.setdefault((route.method, path), Endpoint(route.method, path, ()))
    return sorted(table.values(), key=lambda e: (e.path, e.method))


ROUTE_TABLE = route_table()
ID_ROUTES = [e for e in ROUTE_TABLE if e.placeholders]


# --- talking to the platform ----------------------------------------------------------------------


@dataclass
class Tenant:
    """An account, signed in on the web too, with the form tokens of its own pages."""

    name: str
    account: dict
    cookie: str = ""
    auth_csrf: str = ""
    review_csrf: str = ""

    def headers(self, auth: str | None, origin: str) -> dict[str, str]:
        if auth == "bearer":
            return {"Authorization": f"Bearer {self.account['token']}"}
        if auth == "session":
            return {"Cookie": f"darkroom_session={self.cookie}", "Origin": origin}
        return {}


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class World:
    """Both tenants on the platform, the ids made so far and what A last saw of each kind."""

    def __init__(self, stack: Stack, http: aiohttp.ClientSession, a: Tenant, b: Tenant) -> None:
        self.stack, self.http, self.a, self.b = stack, http, a, b
        self._once: dict[str, Any] = {}
        self._seen: dict[str, Any] = {}

    async def send(
        self,
        who: Tenant,
        method: str,
        path: str,
        *,
        auth: str | None = "bearer",
        json: Any = None,
        form: dict[str, str] | None = None,
        data: Any = None,
    ) -> Answer:
        async with self.http.request(
            method,
            self.stack.url + path,
            headers=who.headers(auth, self.stack.url),
            json=json,
            data=form if form is not None else data,
            allow_redirects=False,
        ) as response:
            body = await response.read()
            return Answer(response.status, response.content_type, body.decode(errors="replace"))

    async def ok(self, who: Tenant, method: str, path: str, *, expect: int = 200, **kw) -> Any:
        """A request that must succeed; its JSON, or its text."""
        answer = await self.send(who, method, path, **kw)
        assert answer.status == expect, (
            f"{method} {path} as {who.name}: {answer.status} {answer.text[:500]}"
        )
        return answer.json() if answer.content_type == "application/json" else answer.text

    async def once(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        if key not in self._once:
            self._once[key] = await make()
        return self._once[key]

    async def a_id(self, kind: str) -> str:
        return await self.once(f"A {kind}", lambda: FACTORIES[kind].make(self))

    async def b_id(self, kind: str) -> str | None:
        own = FACTORIES[kind].own
        return None if own is None else await self.once(f"B {kind}", lambda: own(self))

    async def state(self, kind: str, *, again: bool = False) -> Any:
        """What A sees of its resource of ``kind`` (read again with ``again``)."""
        read = FACTORIES[kind].state
        if read is None:
            return None
        if again or kind not in self._seen:
            self._seen[kind] = await read(self, await self.a_id(kind))
        return self._seen[kind]

    def a_secrets(self) -> list[str]:
        """Strings only A's own answers may contain."""
        found = [MARK, self.a.account["account_id"]]
        happo = self._once.get(f"happo {self.a.name}")
        if happo:
            # A's report, comparison and job pages, as an answer would link them.
            for kind in ("report", "comparison", "job"):
                found.append(f'/{kind}s/{happo[kind]}"')
        return found


async def sign_in(w: World, who: Tenant) -> None:
    async with w.http.post(
        f"{w.stack.url}/signin",
        data={"email": who.account["email"], "password": PASSWORD, "next": "/keys"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303, await response.text()
        who.cookie = response.cookies["darkroom_session"].value


# --- factories: tenant A's resources, made through the public API ---------------------------------


def new_sha() -> str:
    return secrets.token_hex(6)


def label(w: World, who: Tenant) -> str:
    return f"tenancy {MARK}" if who is w.a else "tenancy B"


async def make_credential(w: World) -> str:
    made = await w.ok(
        w.a, "POST", "/api/keys", json={"kind": "token", "name": label(w, w.a)}, expect=201
    )
    return made["id"]


async def credential_state(w: World, credential_id: str) -> Any:
    listed = await w.ok(w.a, "GET", "/api/keys")
    return [t for t in listed["tokens"] if t["id"] == credential_id]


async def make_application(w: World) -> str:
    page = await w.ok(w.a, "GET", "/applications", auth="session")
    before = set(_APPLICATION.findall(page))
    form = {
        "csrf": CSRF_FIELD.search(page)[1],
        "name": label(w, w.a),
        "redirect_uri": "https://tenancy.example/callback",
    }
    made = await w.ok(w.a, "POST", "/applications", auth="session", form=form, expect=201)
    [client_pk] = set(_APPLICATION.findall(made)) - before
    return client_pk


async def application_state(w: World, client_pk: str) -> Any:
    return client_pk in await w.ok(w.a, "GET", "/applications", auth="session")


async def make_file(w: World) -> str:
    data = random_png()
    form = aiohttp.FormData()
    form.add_field("file", data, filename=f"{MARK}.png", content_type="image/png")
    sha256 = (await w.ok(w.a, "POST", "/api/upload", data=form))["hash"]
    # The same bytes as a Happo image under their SHA-256, so ``{hash}`` is A's there too.
    grant = await w.ok(w.a, "GET", f"/api/images/{sha256}/upload-url")
    form = aiohttp.FormData()
    form.add_field("file", data, filename="image.png", content_type="image/png")
    await w.ok(w.a, "POST", grant["uploadUrl"].removeprefix(w.stack.url), data=form)
    return sha256


async def make_package(w: World) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("iframe.html", f"<p>{MARK}</p>")
    data = buffer.getvalue()
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - the Happo clients' package name
    form = aiohttp.FormData()
    form.add_field("payload", data, filename="payload.zip", content_type="application/zip")
    await w.ok(w.a, "POST", f"/api/snap-requests/assets/{md5}", data=form)
    return md5


async def package_state(w: World, md5: str) -> Any:
    return await w.ok(w.a, "GET", f"/api/snap-requests/assets-data/{md5}")


async def file_state(w: World, sha256: str) -> Any:
    listed = await w.ok(w.a, "GET", "/files")
    happo = await w.ok(w.a, "GET", f"/api/images/{sha256}/upload-url")
    served = await w.send(w.a, "GET", f"/f/{sha256}", auth=None)
    return {"listed": sha256 in listed, "happo": happo.get("message"), "served": served.status}


async def make_progimage(w: World) -> str:
    item = {"file": b64(photo(64, 48, seed=random.randint(1, 10**6)))}
    made = await w.ok(w.a, "POST", "/user/images", json={"process": item}, expect=201)
    return made["data"]["id"]


async def progimage_state(w: World, image_id: str) -> Any:
    listed = await w.ok(w.a, "GET", "/user/images?limit=100")
    return [item for item in listed["data"] if item["id"] == image_id]


def company(who: Tenant) -> str:
    return f"/api/v1/companies/{who.account['account_id']}"


async def dataset_of(w: World, who: Tenant) -> str:
    async def make() -> str:
        body = {"name": label(w, who)}
        return (await w.ok(who, "POST", f"{company(who)}/datasets/", json=body, expect=201))["id"]

    return await w.once(f"dataset {who.name}", make)


async def subject_of(w: World, who: Tenant) -> str:
    async def make() -> str:
        path = f"{company(who)}/datasets/{await dataset_of(w, who)}/subjects/"
        return (await w.ok(who, "POST", path, json={"name": label(w, who)}, expect=201))["id"]

    return await w.once(f"subject {who.name}", make)


async def haut_upload_of(w: World, who: Tenant) -> dict:
    """A signed upload URL's image (pending): its id and its batch's."""

    async def make() -> dict:
        path = f"{company(who)}/subjects/{await subject_of(w, who)}/signed_upload_url/"
        return await w.ok(who, "POST", path, json={}, expect=201)

    return await w.once(f"haut upload {who.name}", make)


async def company_state(w: World, _company: str) -> Any:
    page = await w.ok(w.a, "GET", f"{company(w.a)}/datasets/?page_size=100&ordering=id")
    return page["count"], [d["id"] for d in page["results"]]


async def dataset_state(w: World, dataset_id: str) -> Any:
    return await w.ok(w.a, "GET", f"{company(w.a)}/datasets/{dataset_id}/")


async def subject_state(w: World, subject_id: str) -> Any:
    dataset_id = await dataset_of(w, w.a)
    return await w.ok(w.a, "GET", f"{company(w.a)}/datasets/{dataset_id}/subjects/{subject_id}/")


async def haut_image_state(w: World, _id: str) -> Any:
    image_id = (await haut_upload_of(w, w.a))["id"]
    return await w.ok(w.a, "GET", f"{company(w.a)}/images/{image_id}/")


async def happo_of(w: World, who: Tenant) -> dict[str, Any]:
    """Two reports of one component, compared: for A with a pixel diff (so a diff image
    exists), a job, a snap request and subscribers; for B without (its comparison page only
    gives B its own review form token)."""

    async def make() -> dict[str, Any]:
        colour = (random.randint(0, 255), random.randint(0, 255), random.randint(0, 255))
        before = await upload(w.http, w.stack, who.account, screenshot(colour=colour))
        after = before
        extra: dict[str, str] = {}
        if who is w.a:
            # A patch far from the random colour (a patch close to it would be no diff at all).
            far = (0, 0, 0) if sum(colour) > 384 else (255, 255, 255)
            after = await upload(
                w.http,
                w.stack,
                who.account,
                screenshot(colour=colour, patch=(20, 10, 10, 10), patch_colour=far),
            )
            extra = {"message": MARK, "link": f"https://tenancy.example/{MARK}"}
        sha1, sha2 = new_sha(), new_sha()
        # B's own component has another name: B's latest snapshot of A's is rightly B's.
        component = COMPONENT if who is w.a else "TenancyOwn"
        report = await w.ok(
            who, "POST", f"/api/reports/{sha1}", json={"snaps": [snap(before, component)], **extra}
        )
        await w.ok(
            who, "POST", f"/api/reports/{sha2}", json={"snaps": [snap(after, component)], **extra}
        )
        compared = await compare(w.http, w.stack.url, who.headers("bearer", ""), sha1, sha2)
        made = {"sha1": sha1, "sha2": sha2, "report": report["id"], "comparison": compared["id"]}
        if who is w.a:
            assert compared["diffImages"][0]["url"].endswith("/diffs/0.png"), compared
            job = await w.ok(who, "POST", f"/api/jobs/{sha1}/{sha2}", json={"message": MARK})
            requested = await w.ok(
                who,
                "POST",
                "/api/snap-requests/with-results",
                json={"snaps": [snap(before, "TenancySnap")]},
            )
            await w.ok(
                who,
                "POST",
                f"/api/subscriptions/{COMPONENT}",
                json={"emailAddresses": SUBSCRIBERS},
            )
            made.update(job=job["id"], snap_request=requested["requestId"])
        return made

    return await w.once(f"happo {who.name}", make)


def happo_value(name: str, *, own: bool = False) -> Callable[[World], Awaitable[str]]:
    """A's (or, ``own``, B's) value of ``name`` among the Happo resources."""

    async def value(w: World) -> str:
        return str((await happo_of(w, w.b if own else w.a))[name])

    return value


def constant(value: str) -> Callable[[World], Awaitable[str]]:
    async def make(_w: World) -> str:
        return value

    return make


async def sha_state(w: World, sha: str) -> Any:
    happo = await happo_of(w, w.a)
    return {
        "snapshots": await w.ok(w.a, "GET", f"/api/reports/{sha}"),
        "status": await w.ok(w.a, "GET", f"/api/reports/{sha}/status"),
        "comparisons": await w.ok(w.a, "GET", f"/api/reports/{sha}/comparison-statuses"),
        # Create-or-get: A's existing job of the pair, as its clients read it.
        "job": await w.ok(w.a, "POST", f"/api/jobs/{happo['sha1']}/{happo['sha2']}", json={}),
    }


async def report_state(w: World, _report_id: str) -> Any:
    return await w.ok(w.a, "GET", f"/api/reports/{(await happo_of(w, w.a))['sha1']}/status")


async def comparison_state(w: World, _comparison_id: str) -> Any:
    happo = await happo_of(w, w.a)
    path = f"/api/reports/{happo['sha1']}/compare/{happo['sha2']}/status"
    return await w.ok(w.a, "GET", path)


async def job_state(w: World, _job_id: str) -> Any:
    happo = await happo_of(w, w.a)
    return await w.ok(w.a, "POST", f"/api/jobs/{happo['sha1']}/{happo['sha2']}", json={})


async def component_state(w: World, component: str) -> Any:
    return await w.ok(w.a, "GET", f"/api/components/{component}/default/chrome")


async def subscription_state(w: World, component: str) -> Any:
    # The answer lists every subscriber now: re-adding one shows whether the other is still in.
    body = {"emailAddresses": SUBSCRIBERS[:1]}
    return await w.ok(w.a, "POST", f"/api/subscriptions/{component}", json=body)


async def snap_request_state(w: World, request_id: str) -> Any:
    return await w.ok(w.a, "GET", f"/api/snap-requests/{request_id}")


@dataclass(frozen=True)
class Factory:
    """How to make A's resource of a kind, read what A sees of it, make B's own (for requests
    with one foreign id), and name one nobody holds (for the namespaced routes).
    ``foreign`` is False for a placeholder that qualifies an id rather than naming a resource,
    or names a destination (``toSha``), which B may rightly pick."""

    make: Callable[[World], Awaitable[str]]
    state: Callable[[World, str], Awaitable[Any]] | None
    own: Callable[[World], Awaitable[str]] | None = None
    fresh: Callable[[], str] | None = None
    foreign: bool = True


async def _upload_value(w: World, who: Tenant, key: str) -> str:
    return (await haut_upload_of(w, who))[key]


async def _account_of(who: Tenant) -> str:
    return who.account["account_id"]


FACTORIES: dict[str, Factory] = {
    "credential": Factory(make_credential, credential_state),
    "application": Factory(make_application, application_state),
    "file": Factory(make_file, file_state, fresh=lambda: secrets.token_hex(32)),
    "progimage": Factory(make_progimage, progimage_state),
    "package": Factory(make_package, package_state, fresh=lambda: secrets.token_hex(16)),
    "company": Factory(lambda w: _account_of(w.a), company_state, own=lambda w: _account_of(w.b)),
    "dataset": Factory(
        lambda w: dataset_of(w, w.a), dataset_state, own=lambda w: dataset_of(w, w.b)
    ),
    "subject": Factory(
        lambda w: subject_of(w, w.a), subject_state, own=lambda w: subject_of(w, w.b)
    ),
    "batch": Factory(
        lambda w: _upload_value(w, w.a, "image_batch_id"),
        haut_image_state,
        own=lambda w: _upload_value(w, w.b, "image_batch_id"),
    ),
    "haut_image": Factory(
        lambda w: _upload_value(w, w.a, "id"),
        haut_image_state,
        own=lambda w: _upload_value(w, w.b, "id"),
    ),
    "sha1": Factory(
        happo_value("sha1"), sha_state, own=happo_value("sha1", own=True), fresh=new_sha
    ),
    "sha2": Factory(
        happo_value("sha2"), sha_state, own=happo_value("sha2", own=True), fresh=new_sha
    ),
    "clone_target": Factory(happo_value("sha2"), sha_state, foreign=False),
    "report": Factory(happo_value("report"), report_state),
    "comparison": Factory(happo_value("comparison"), comparison_state),
    "diff_position": Factory(constant("0"), None, foreign=False),
    "job": Factory(happo_value("job"), job_state),
    "snap_request": Factory(happo_value("snap_request"), snap_request_state),
    "component": Factory(constant(COMPONENT), component_state),
    "variant": Factory(constant("default"), None, foreign=False),
    "target": Factory(constant("chrome"), None, foreign=False),
    "subscription": Factory(
        constant(COMPONENT), subscription_state, fresh=lambda: f"Fresh{secrets.token_hex(4)}"
    ),
}
