"""Tenancy, generated from the route table: on every public route whose path names a tenant's
resource, tenant B asking with tenant A's ids gets 404 in the dialect's error shape, and A's
resources are unchanged afterwards.

Why generated: a hand-kept list of "routes to check" is exactly the list a new route is left out
of. The routes are read from ``gateway/openapi/``'s OPERATIONS (``tests/test_openapi.py`` keeps
it equal to what the services register) plus the gateway's own router, and the summary test
compares them with the running routers once more. Each placeholder names a *kind* of resource
(``KINDS``); each kind has a factory that makes one as tenant A through the public API and reads
back what A sees of it (``FACTORIES``). A new route is therefore covered the moment it is
registered, or it fails and tells its author to add a factory; a route that is public by design
is listed in ``EXEMPT`` with its reason, and an exemption naming a route that is gone fails too.

Besides A's ids in every place, each route is also asked with B's own ids in every place but one
(B's company with A's dataset, B's report with A's sha, ...): the realistic attack is one foreign
id slipped into an otherwise legitimate request. A few routes take a *name in the caller's own
namespace* rather than an id (the commit sha a report is posted under, a component to subscribe
to): there A's name must answer B exactly as a name nobody ever used does (``NAMESPACED``).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import secrets
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from gateway import openapi
from gateway.routes import setup_routes as setup_gateway_routes
from tests.conftest import Stack
from tests.reports_support import compare, screenshot, snap, upload
from tests.resilience import Ledger
from tests.test_ingest_hashhost import random_png
from tests.test_openapi import normalise, public_routes
from tests.test_progimage import b64, photo

PASSWORD = "hunter2hunter2"  # every account conftest makes has it
#: Written into A's resources (names, messages, addresses) and never into B's requests: seeing
#: it in an answer to B means B was shown A's data.
MARK = f"tenancy{secrets.token_hex(6)}"
COMPONENT = "TenancyButton"
SUBSCRIBERS = [f"{MARK}-1@example.com", f"{MARK}-2@example.com"]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
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

#: Routes whose placeholder is no tenant's id, each with the reason.
EXEMPT: dict[str, str] = {
    "POST /api/images/upload/{token}": "a signed upload URL: the signature, not the caller, "
    "is the authority",
    "GET /img/{account_id}/{hash}": "Happo image URLs are public by design: report pages, "
    "pull requests and the Happo clients embed them",
    "GET /uploads/image/file/{image_id}/{name}": "Progimage variant URLs are public by id: the "
    "upload answer hands them to browsers",
    "GET /f/{tail}": "the hash file host serves every file to anyone by its content hash",
    "PUT /api/v1/uploads/{token}": "a signed upload URL: the signature is the authority",
    "GET /api/v1/files/{token}": "a signed file URL: the signature is the authority",
    "GET /badges/{badge}.svg": "a signed status badge, public for pull requests and READMEs",
    "GET /unsubscribe/{token}": "a signed link of a notification e-mail",
    "POST /unsubscribe/{token}": "a signed link of a notification e-mail (RFC 8058 one-click)",
    "PUT /api/package-uploads/{token}": "a signed package upload URL: the signature is the "
    "authority",
    "GET /docs/static/{name}": "Swagger UI's static files, the same for everyone",
}

#: Routes whose placeholder is a name in the caller's own namespace: B using A's name acts on
#: B's own data, so the answer must be the one a name nobody used gets.
NAMESPACED: dict[str, str] = {
    "POST /api/reports/{sha}": "posts the caller's own report of a commit (two tenants may "
    "build the same sha)",
    "GET /api/reports/{sha}/comparison-statuses": "lists the caller's comparisons of a sha: "
    "none, for a sha it has no report of",
    "POST /api/jobs/{sha1}/{sha2}": "creates (or gets) the caller's own job of two shas",
    "POST /api/jobs/{sha1}/{sha2}/orchestrate": "creates the caller's own orchestration job",
    "POST /api/skip/{sha}": "records a status for a sha in the caller's own account",
    "POST /api/async-reports/{sha}": "builds the caller's own report from its snap requests",
    "POST /api/subscriptions/{component}": "subscribes to a component name of the caller's",
    "DELETE /api/subscriptions/{component}": "unsubscribes from a component name of the caller's",
    "GET /api/images/{hash}/upload-url": "asks whether the caller holds an image hash",
    "GET /api/snap-requests/assets-data/{hash}": "asks whether the caller holds a package",
    "POST /api/snap-requests/assets/{hash}": "uploads a package into the caller's account",
    "GET /api/snap-requests/assets/{hash}/signed-url": "asks for the caller's own upload URL "
    "of a package",
    "POST /api/snap-requests/assets/{hash}/signed-url/finalize": "finds a package the caller "
    "uploaded",
}

PROBED = [e for e in ID_ROUTES if e.id not in EXEMPT]

#: The reports pages answer errors as a page, not JSON (``_page`` in services/reports/pages.py).
PROBLEM_PAGES = {
    "GET /reports/{id}",
    "GET /comparisons/{id}",
    "POST /comparisons/{id}/review",
    "GET /jobs/{id}",
}

#: Which kind of resource a placeholder names, by the path it is under (longest prefix wins).
#: The Happo Image API's ``{hash}`` is the file kind: A holds the same bytes as a hosted file and
#: as a Happo image registered under their SHA-256.
KINDS: dict[str, dict[str, str]] = {
    "/api/keys/": {"credential_id": "credential"},
    "/keys/": {"credential_id": "credential"},
    "/applications/": {"client_pk": "application"},
    "/api/files/": {"hash": "file"},
    "/files/": {"hash": "file"},
    "/api/images/": {"hash": "file"},
    "/user/images/": {"image_id": "progimage"},
    "/api/v1/companies/": {
        "company_id": "company",
        "dataset_id": "dataset",
        "subject_id": "subject",
        "batch_id": "batch",
        "image_id": "haut_image",
    },
    "/api/reports/": {
        "sha": "sha1",
        "sha1": "sha1",
        "fromSha": "sha1",
        "sha2": "sha2",
        "toSha": "clone_target",
    },
    "/api/jobs/": {"sha1": "sha1", "sha2": "sha2"},
    "/api/skip/": {"sha": "sha1"},
    "/api/async-reports/": {"sha": "sha1"},
    "/api/subscriptions/": {"component": "subscription"},
    "/api/components/": {"component": "component", "variant": "variant", "target": "target"},
    "/api/snap-requests/": {"id": "snap_request"},
    "/api/snap-requests/assets/": {"hash": "package"},
    "/api/snap-requests/assets-data/": {"hash": "package"},
    "/reports/": {"id": "report"},
    "/comparisons/": {"id": "comparison", "position": "diff_position"},
    "/jobs/": {"id": "job"},
}


def kind_of(path: str, placeholder: str) -> str | None:
    prefixes = sorted((p for p in KINDS if path.startswith(p)), key=len, reverse=True)
    return KINDS[prefixes[0]].get(placeholder) if prefixes else None


def _rename(_ids: dict[str, str]) -> dict[str, Any]:
    return {"name": "renamed by tenant B"}


_D = "/api/v1/companies/{company_id}/datasets/{dataset_id}"
#: Bodies that get past validation to the id lookup (others send ``{}``, or nothing for a
#: GET or DELETE); session routes send them as forms.
BODIES: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
    "POST /api/v1/companies/{company_id}/datasets/": lambda _: {"name": "tenant B"},
    f"PATCH {_D}/": _rename,
    f"PUT {_D}/": _rename,
    f"POST {_D}/subjects/": lambda _: {"name": "tenant B"},
    f"PATCH {_D}/subjects/{{subject_id}}/": _rename,
    f"PUT {_D}/subjects/{{subject_id}}/": _rename,
    "POST /api/reports/{sha}": lambda _: {"snaps": []},
    "POST /api/reports/{sha}/find-baseline": lambda ids: {"shas": [ids["sha"]]},
    "POST /api/jobs/{sha1}/{sha2}/orchestrate": lambda _: {"projects": ["web"]},
    "POST /api/subscriptions/{component}": lambda _: {"emailAddresses": ["b@example.com"]},
    "DELETE /api/subscriptions/{component}": lambda _: {"emailAddresses": SUBSCRIBERS},
    "POST /api/async-reports/{sha}": lambda _: {"requestIds": []},
    "POST /api/async-reports/{sha}/finalize": lambda _: {"nonce": "tenancy"},
}
#: Form tokens: B's own, so the id lookup is what refuses, not the anti-forgery check.
CSRF_FORMS: dict[str, Callable[[Tenant], dict[str, str]]] = {
    "POST /applications/{client_pk}/delete": lambda b: {"csrf": b.auth_csrf},
    "POST /files/{hash}/delete": lambda b: {"csrf": b.auth_csrf},
    "POST /keys/{credential_id}/revoke": lambda b: {"csrf": b.auth_csrf},
    "POST /comparisons/{id}/review": lambda b: {"csrf": b.review_csrf, "decision": "reject"},
}

NO_FACTORY = (
    "{{{placeholder}}} of {route} names no kind of resource this test can make: map it in "
    "KINDS and, for a new kind, add a factory to FACTORIES that creates one as tenant A through "
    "the public API (or, if the route is public by design, add it to EXEMPT with the reason)"
)


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
        "csrf": _CSRF.search(page)[1],
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


# --- probing --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What tenant B's requests on one route got, and what went wrong."""

    endpoint: Endpoint
    answers: list[Answer] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    changed: int = 0  # kinds of A's resources that changed


def credentials_of(endpoint: Endpoint) -> str | None:
    """The dialect's own credential: an API token where the route takes one, else the web
    session (pages), else none."""
    if "apiToken" in endpoint.security:
        return "bearer"
    if "session" in endpoint.security:
        return "session"
    return None


def request_of(w: World, endpoint: Endpoint, ids: dict[str, str]) -> dict[str, Any]:
    auth = credentials_of(endpoint)
    body: dict[str, Any] | None = None
    if endpoint.id in BODIES:
        body = BODIES[endpoint.id](ids)
    elif endpoint.method in {"POST", "PUT", "PATCH"}:
        body = {}
    if endpoint.id in CSRF_FORMS:
        body = {**(body or {}), **CSRF_FORMS[endpoint.id](w.b)}
    if body is None:
        return {"auth": auth}
    return {"auth": auth, "form" if auth == "session" else "json": body}


def shape(answer: Answer) -> tuple:
    """An answer as far as it may differ between two names nobody else sees: status, error
    code, and which fields there are and which are null."""
    try:
        body = answer.json()
    except ValueError:
        return (answer.status, answer.content_type)
    if isinstance(body, dict):
        error = body.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        return (answer.status, code, tuple(sorted((k, v is None) for k, v in body.items())))
    if isinstance(body, list):
        return (answer.status, "list", len(body))
    return (answer.status, type(body).__name__)


def not_found_problem(endpoint: Endpoint, answer: Answer) -> str | None:
    """Why ``answer`` is not the dialect's 404, or None."""
    if answer.status != 404:
        return f"{answer.status} instead of 404: {answer.text[:300]}"
    if endpoint.id in PROBLEM_PAGES:
        if answer.content_type != "text/html" or "<h1>Not found</h1>" not in answer.text:
            return f"404 but not the problem page: {answer.content_type} {answer.text[:300]}"
        return None
    try:
        body = answer.json()
    except ValueError:
        return f"404 but not JSON: {answer.content_type} {answer.text[:300]}"
    error = body.get("error") if isinstance(body, dict) else None
    if (
        set(body if isinstance(body, dict) else ()) != {"error"}
        or not isinstance(error, dict)
        or error.get("code") != "not_found"
        or not isinstance(error.get("message"), str)
        or not error["message"]
        or not set(error) <= {"code", "message", "details"}
    ):
        return f'404 but not {{"error": {{"code": "not_found", "message"}}}}: {body}'
    return None


def described(ids: dict[str, str], a_ids: dict[str, str]) -> str:
    own = [name for name in ids if ids[name] != a_ids[name]]
    if not own:
        return "with A's ids"
    return f"with B's own {', '.join(own)} and A's {', '.join(n for n in ids if n not in own)}"


async def variants(w: World, kinds: dict[str, str], a_ids: dict[str, str]) -> list[dict]:
    """A's ids everywhere; then, for each id, B's own in every other place (where B has one)."""
    own = {name: await w.b_id(kind) for name, kind in kinds.items()}
    found = [dict(a_ids)]
    for pivot, kind in kinds.items():
        if not FACTORIES[kind].foreign:
            continue
        mixed = {
            name: a_ids[name] if name == pivot or own[name] is None else own[name] for name in kinds
        }
        if mixed not in found:
            found.append(mixed)
    return found


async def ask(w: World, endpoint: Endpoint, ids: dict[str, str], outcome: Outcome) -> Answer:
    """B's request with ``ids``, checked for anything of A's in the answer."""
    request = request_of(w, endpoint, ids)
    path = endpoint.url(ids)
    answer = await w.send(w.b, endpoint.method, path, **request)
    outcome.answers.append(answer)
    sent = path + json.dumps(request)
    leaked = [s for s in w.a_secrets() if s in answer.text and s not in sent]
    if leaked:
        outcome.problems.append(f"{path}: the answer shows A's data {leaked}: {answer.text[:300]}")
    return answer


async def probe(w: World, endpoint: Endpoint) -> Outcome:
    outcome = Outcome(endpoint)
    kinds = {name: kind_of(endpoint.path, name) for name in endpoint.placeholders}
    for name, kind in kinds.items():
        if kind is None or kind not in FACTORIES:
            outcome.problems.append(NO_FACTORY.format(placeholder=name, route=endpoint.id))
    if outcome.problems:
        return outcome
    try:
        a_ids = {name: await w.a_id(kind) for name, kind in kinds.items()}
        before = {kind: await w.state(kind) for kind in set(kinds.values())}
        if endpoint.id in NAMESPACED:
            fresh = {
                name: FACTORIES[kind].fresh() if FACTORIES[kind].fresh else a_ids[name]
                for name, kind in kinds.items()
            }
            theirs = await ask(w, endpoint, a_ids, outcome)
            nobodys = await ask(w, endpoint, fresh, outcome)
            if shape(theirs) != shape(nobodys) or theirs.status >= 500:
                outcome.problems.append(
                    f"with A's ids {shape(theirs)} but with ids nobody holds {shape(nobodys)}:"
                    f" {theirs.text[:300]}"
                )
        else:
            for ids in await variants(w, kinds, a_ids):
                problem = not_found_problem(endpoint, await ask(w, endpoint, ids, outcome))
                if problem:
                    outcome.problems.append(f"{described(ids, a_ids)}: {problem}")
        for kind, seen in before.items():
            now = await w.state(kind, again=True)
            if now != seen:
                outcome.changed += 1
                outcome.problems.append(f"A's {kind} changed: {seen!r} → {now!r}")
    except Exception as exc:  # a factory or state read that failed is this route's failure
        outcome.problems.append(f"{type(exc).__name__}: {exc}")
    return outcome


async def sign_in(w: World, who: Tenant) -> None:
    async with w.http.post(
        f"{w.stack.url}/signin",
        data={"email": who.account["email"], "password": PASSWORD, "next": "/keys"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303, await response.text()
        who.cookie = response.cookies["darkroom_session"].value


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A cookie-less client on a loopback address of its own: the sign-ins are charged to the
    address's anonymous rate bucket, which the rest of the suite may have spent."""
    address = f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0)),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        yield session


@pytest.fixture(scope="module")
async def outcomes(stack: Stack, browser: aiohttp.ClientSession) -> dict[str, Outcome]:
    """Every probed route, asked once per module: A's resources are made once and reused.
    Both tenants are new: the session's shared account carries the rest of the suite's data
    and spent rate budget, which would make a list read or a 429 here depend on test order."""
    a, b = stack.create_account("Tenant A"), stack.create_account("Tenant B")
    w = World(stack, browser, Tenant("A", a), Tenant("B", b))
    for who in (w.a, w.b):
        await sign_in(w, who)
    w.b.auth_csrf = _CSRF.search(await w.ok(w.b, "GET", "/applications", auth="session"))[1]
    own_comparison = (await happo_of(w, w.b))["comparison"]
    page = await w.ok(w.b, "GET", f"/comparisons/{own_comparison}", auth="session")
    w.b.review_csrf = _CSRF.search(page)[1]
    # The namespaced routes last: B's writes there create B's own reports and jobs under A's
    # shas, after which B's lookups of them would rightly succeed.
    ordered = sorted(PROBED, key=lambda e: e.id in NAMESPACED)
    return {e.id: await probe(w, e) for e in ordered}


@pytest.mark.parametrize("route", [e.id for e in PROBED])
async def test_another_tenants_id_answers_404(route: str, outcomes: dict[str, Outcome]) -> None:
    """404 in the dialect's shape (on a NAMESPACED route: the answer a name nobody used gets),
    nothing of A's in the answer, and A's resources as they were."""
    outcome = outcomes[route]
    assert not outcome.problems, f"{route}:\n  " + "\n  ".join(outcome.problems)


async def test_every_id_route_is_covered(
    stack: Stack, outcomes: dict[str, Outcome], resilience: Ledger
) -> None:
    table = {e.id for e in ROUTE_TABLE}
    for name, listed in (
        ("EXEMPT", EXEMPT),
        ("NAMESPACED", NAMESPACED),
        ("PROBLEM_PAGES", PROBLEM_PAGES),
        ("BODIES", BODIES),
        ("CSRF_FORMS", CSRF_FORMS),
    ):
        stale = sorted(set(listed) - table)
        assert not stale, f"{name} names routes that no longer exist: {stale}"
    assert not set(EXEMPT) & set(NAMESPACED)
    assert all(reason.strip() for reason in [*EXEMPT.values(), *NAMESPACED.values()])
    # The table this module is generated from holds every id route the platform really serves.
    served = {f"{method} {path}" for method, path in public_routes(stack) if "{" in path}
    missing = sorted(served - table)
    assert not missing, f"served but missing from the route table: {missing}"

    answers = [a for o in outcomes.values() for a in o.answers]
    errors_5xx = sum(a.status >= 500 for a in answers)
    changed = sum(o.changed for o in outcomes.values())
    failed = {route: o.problems for route, o in outcomes.items() if o.problems}
    routes = len(outcomes)
    namespaced = sum(route in NAMESPACED for route in outcomes)
    observed = (
        f"404 on all {routes - namespaced} id routes, in the dialect's error shape (the"
        f" {namespaced} routes naming a sha/component/hash of the caller's own answer as for a"
        " name nobody used); A's resources unchanged"
        if not failed
        else f"{len(failed)} routes failed: {sorted(failed)}"
    )
    resilience.row(
        "tenancy",
        "another tenant's ids on every id route",
        injected=f"{routes} routes × tenant B requests with tenant A's ids ({len(answers)}"  # noqa: RUF001
        f" requests, one foreign id among B's own too); {len(EXEMPT)} routes public by design",
        observed=observed,
        # As for every attack row: how many got through (a route that served B A's resource).
        accepted=len(failed),
        effects=changed,
        errors_5xx=errors_5xx,
    )
    # A table read wrongly (no routes, no placeholders) must not pass for a covered one.
    assert routes == len(PROBED) and routes > 40
    assert not failed, "\n".join(f"{r}:\n  " + "\n  ".join(p) for r, p in failed.items())
    assert errors_5xx == 0 and changed == 0
