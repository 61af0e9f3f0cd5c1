"""Rendering's routes: the Happo assets endpoints and the signed package upload URL."""

from aiohttp import web

from services.rendering import handlers


def setup_routes(app: web.Application) -> None:
    """Register rendering's routes on ``app`` (health routes are added by ``create_app``)."""
    assets = "/api/snap-requests/assets/{hash}"
    app.router.add_routes(
        [
            web.get("/api/snap-requests/assets-data/{hash}", handlers.assets_data),
            web.post(assets, handlers.upload_assets),
            web.get(f"{assets}/signed-url", handlers.signed_url),
            web.post(f"{assets}/signed-url/finalize", handlers.finalize_signed_url),
            # the grant is the authority: no Authorization, as with an object store's URL
            web.put("/api/package-uploads/{token}", handlers.put_package),
        ]
    )
