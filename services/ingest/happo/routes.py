"""The Happo Image API's routes."""

from aiohttp import web

from services.ingest.happo import handlers
from shared.image_urls import HAPPO_IMAGE_ROUTE


def setup_routes(app: web.Application) -> None:
    """Register the Image API (and the internal image lookups) on ``app``."""
    app.router.add_get("/api/images/{hash}/upload-url", handlers.upload_url)
    app.router.add_post("/api/images/upload/{token}", handlers.upload)
    app.router.add_get(HAPPO_IMAGE_ROUTE, handlers.serve_image)
    app.router.add_post("/internal/happo-images", handlers.images_lookup)
    app.router.add_post("/internal/happo-images/rendered", handlers.rendered_image)
