"""Progimage's routes."""

from aiohttp import web

from services.ingest.progimage import handlers
from shared.image_urls import PROGIMAGE_FILE_ROUTE


def setup_routes(app: web.Application) -> None:
    """Register Progimage's images on ``app``."""
    app.router.add_post("/user/images", handlers.upload)
    app.router.add_get("/user/images", handlers.image_list)
    app.router.add_get("/user/images/{image_id}/derived", handlers.derived)
    app.router.add_get(PROGIMAGE_FILE_ROUTE, handlers.serve_file)
