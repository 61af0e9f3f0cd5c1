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

The route table, the two tenants and the factories are in tests/tenancy_support.py; this module
holds what the table's id routes are (``EXEMPT``, ``NAMESPACED``, ``KINDS``, the bodies), the
probing and the tests.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.conftest import Stack
from tests.resilience import Ledger
from tests.routes_support import public_routes
from tests.tenancy_support import (
    CSRF_FIELD,
    FACTORIES,
    ID_ROUTES,
    ROUTE_TABLE,
    SUBSCRIBERS,
    Answer,
    Endpoint,
    Tenant,
    World,
    happo_of,
    sign_in,
)

# --- the route table's id routes ------------------------------------------------------------------


#: Routes whose placeholder is no tenant's id, each with the reason.
EXEMPT: dict[str, str] = {
    "POST /api/images/upload/{token}": "a signed upload URL: the signature, not the caller, "
    "is the authority",
    "GET /img/{account_id}/{hash}": "Happo image URLs are public by design: report pages, "
    "pull requests and the Happo clients embed them",
    "GET /uploads/image/file/{image_id}/{name}": "Progimage variant URLs are public by id: the "
    "upload answer hands them to browsers",
    "GET /f/{tail}": "the hash file host serves every file to anyone by its content hash",
    "GET /files/assets/{name}": "the hash host pages' own script, the same for everyone",
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
    "POST /comparisons/{id}/changes/{position}",
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
    "POST /comparisons/{id}/changes/{position}": lambda b: {
        "csrf": b.review_csrf,
        "decision": "reject",
    },
}

NO_FACTORY = (
    "{{{placeholder}}} of {route} names no kind of resource this test can make: map it in "
    "KINDS and, for a new kind, add a factory to FACTORIES that creates one as tenant A through "
    "the public API (or, if the route is public by design, add it to EXEMPT with the reason)"
)


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
    w.b.auth_csrf = CSRF_FIELD.search(await w.ok(w.b, "GET", "/applications", auth="session"))[1]
    own_comparison = (await happo_of(w, w.b))["comparison"]
    page = await w.ok(w.b, "GET", f"/comparisons/{own_comparison}", auth="session")
    w.b.review_csrf = CSRF_FIELD.search(page)[1]
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
