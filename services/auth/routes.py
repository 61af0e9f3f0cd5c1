"""Auth's routes: the internal resolve call, ``/user``, the keys API, the OAuth 2.0
authorization server, the API login and the web pages."""

from aiohttp import web

from services.auth import handlers


def setup_routes(app: web.Application) -> None:
    """Register every route of auth on ``app``."""
    app.router.add_post("/internal/resolve", handlers.resolve)
    app.router.add_get("/user", handlers.get_user)
    app.router.add_get("/api/keys", handlers.list_credentials)
    app.router.add_post("/api/keys", handlers.create_credential)
    app.router.add_delete("/api/keys/{credential_id}", handlers.revoke_credential)
    app.router.add_get("/", handlers.home_page)
    app.router.add_get("/signup", handlers.sign_up_page)
    app.router.add_post("/signup", handlers.sign_up)
    app.router.add_get("/signin", handlers.sign_in_page)
    app.router.add_post("/signin", handlers.sign_in)
    app.router.add_post("/signout", handlers.sign_out)
    app.router.add_get("/keys", handlers.keys_page)
    app.router.add_post("/keys", handlers.keys_create)
    app.router.add_get("/keys/{credential_id}/revoke", handlers.keys_revoke_confirm)
    app.router.add_post("/keys/{credential_id}/revoke", handlers.keys_revoke)
    app.router.add_get("/oauth/authorize", handlers.authorize_page)
    app.router.add_post("/oauth/authorize", handlers.authorize_decision)
    app.router.add_post("/oauth/token", handlers.token)
    app.router.add_post("/oauth/revoke", handlers.revoke)
    app.router.add_get("/applications", handlers.applications_page)
    # API login of the Haut.ai dialect (both spellings: its clients send the trailing slash)
    for path, handler in (
        ("/api/v1/login/", handlers.api_login),
        ("/api/v1/auth/refresh/", handlers.api_refresh),
    ):
        app.router.add_post(path, handler)
        app.router.add_post(path.rstrip("/"), handler)
    app.router.add_post("/applications", handlers.applications_create)
    app.router.add_post("/applications/{client_pk}/delete", handlers.applications_delete)
