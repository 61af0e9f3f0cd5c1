"""The hash file host's routes: its API, ``/f/`` serving and its pages."""

from aiohttp import web

from services.ingest.hashhost import handlers
from shared.image_urls import FILE_ROUTE


def setup_routes(app: web.Application) -> None:
    """Register the hash file host on ``app``."""
    app.router.add_post("/api/upload", handlers.api_upload)
    app.router.add_get("/api/files", handlers.api_files)
    app.router.add_delete("/api/files/{hash}", handlers.delete_file)
    app.router.add_get(FILE_ROUTE, handlers.serve_file)
    app.router.add_get("/upload", handlers.upload_page)
    app.router.add_post("/upload", handlers.upload_form)
    app.router.add_get("/files", handlers.files_page)
    app.router.add_get("/files/sharex.sxcu", handlers.sharex_config)
    app.router.add_get("/files/assets/{name}", handlers.asset)
    app.router.add_get("/files/{hash}/thumbnail", handlers.thumbnail)
    app.router.add_get("/files/{hash}/delete", handlers.files_delete_confirm)
    app.router.add_post("/files/{hash}/delete", handlers.files_delete)
