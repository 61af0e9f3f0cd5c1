"""The routing table: public path → service, with the authentication each path requires.

Adding a dialect's paths is adding rows here; the most specific (longest) path wins.
"""

from __future__ import annotations

from aiohttp import web

from gateway import handlers
from gateway.domain import OPTIONAL, PUBLIC, REQUIRED, Route, RoutingTable

ROUTES = RoutingTable(
    [
        # auth: the caller, credentials and the account pages
        Route("/user", "auth", REQUIRED, exact=True),
        Route("/api/keys", "auth", REQUIRED),
        Route("/", "auth", OPTIONAL, exact=True),
        Route("/signup", "auth", OPTIONAL, exact=True),
        Route("/signin", "auth", OPTIONAL, exact=True),
        Route("/signout", "auth", OPTIONAL, exact=True),
        Route("/keys", "auth", OPTIONAL),
        # auth: OAuth 2.0 (consent/applications use the session; token endpoints get client Basic)
        Route("/oauth/authorize", "auth", OPTIONAL, exact=True),
        Route("/oauth/token", "auth", PUBLIC, exact=True, pass_authorization=True),
        Route("/oauth/revoke", "auth", PUBLIC, exact=True, pass_authorization=True),
        Route("/applications", "auth", OPTIONAL),
        # ingest: the Happo Image API (the signed upload URL is its own authority; OPTIONAL so
        # the clients' JWT still picks the API-key rate bucket) and serving by account + hash
        Route("/api/images", "ingest", REQUIRED),
        Route("/api/images/upload", "ingest", OPTIONAL),
        # images by account + hash serve anyone; OPTIONAL so a signed-in report page or a
        # client's JWT is charged to its own rate bucket, not to its address's anonymous one
        Route("/img", "ingest", OPTIONAL),
        # ingest: Progimage images (OAuth bearer tokens; its derivatives are public by id)
        Route("/user/images", "ingest", REQUIRED),
        Route("/uploads", "ingest", PUBLIC),
        # ingest: the hash file host (anonymous uploads and delete tokens work signed out)
        Route("/api/upload", "ingest", OPTIONAL, exact=True),
        Route("/upload", "ingest", OPTIONAL, exact=True),
        Route("/api/files", "ingest", OPTIONAL),
        Route("/files", "ingest", OPTIONAL),
        Route("/f", "ingest", PUBLIC),
        # the Haut.ai-style API: sign-in with e-mail and password (JSON bodies, no client
        # Authorization to pass), then companies and dictionaries with bearer tokens; its signed
        # upload (PUT) and file URLs are their own authority, like the seed's storage URLs
        Route("/api/v1/login", "auth", PUBLIC),
        Route("/api/v1/auth/refresh", "auth", PUBLIC),
        Route("/api/v1/dicts", "ingest", REQUIRED),
        Route("/api/v1/companies", "ingest", REQUIRED),
        Route("/api/v1/uploads", "ingest", PUBLIC),
        Route("/api/v1/files", "ingest", PUBLIC),
        # reports: the Happo reports API (Basic or JWT), with the endpoints outside its
        # reference that the real clients call; the pages and diff images use the session or
        # the API credentials; status badges and unsubscribe links are their own authority
        Route("/api/reports", "reports", REQUIRED),
        Route("/api/jobs", "reports", REQUIRED),
        Route("/api/ignored-diffs", "reports", REQUIRED, exact=True),
        Route("/api/subscriptions", "reports", REQUIRED),
        Route("/api/components", "reports", REQUIRED),
        Route("/api/skip", "reports", REQUIRED),
        Route("/api/async-reports", "reports", REQUIRED),
        Route("/api/snap-requests", "reports", REQUIRED),
        # rendering: the packages Happo clients upload for rendering (the signed PUT URL is its
        # own authority, like an object store's; OPTIONAL keeps a client's JWT in its bucket)
        Route("/api/snap-requests/assets", "rendering", REQUIRED),
        Route("/api/snap-requests/assets-data", "rendering", REQUIRED),
        Route("/api/package-uploads", "rendering", OPTIONAL),
        Route("/api/flake", "reports", REQUIRED, exact=True),
        Route("/reports", "reports", OPTIONAL),
        Route("/comparisons", "reports", OPTIONAL),
        Route("/jobs", "reports", OPTIONAL),
        Route("/integrations", "reports", OPTIONAL, exact=True),
        Route("/badges", "reports", PUBLIC),
        Route("/unsubscribe", "reports", PUBLIC),
    ]
)


def setup_routes(app: web.Application) -> None:
    """The gateway's own routes, then everything else to the proxy."""
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/openapi.json", handlers.openapi_json)
    app.router.add_get("/docs", handlers.docs_page)
    app.router.add_get("/docs/static/{name}", handlers.docs_static)
    app.router.add_route("*", "/{tail:.*}", handlers.proxy)
