"""Ingest's routes: the Happo Image API, Progimage images, the hash file host (API and
pages) and serving."""

from aiohttp import web

from services.ingest import handlers


def setup_routes(app: web.Application) -> None:
    """Register ingest's routes on ``app`` (health routes are added by ``create_app``)."""
    # Happo Image API
    app.router.add_get("/api/images/{hash}/upload-url", handlers.happo_upload_url)
    app.router.add_post("/api/images/upload/{token}", handlers.happo_upload)
    app.router.add_get("/img/{account_id}/{hash}", handlers.serve_happo_image)
    # Progimage
    app.router.add_post("/user/images", handlers.progimage_upload)
    app.router.add_get("/user/images", handlers.progimage_list)
    app.router.add_get("/uploads/image/file/{image_id}/{name}", handlers.serve_upload)
    # hash file host
    app.router.add_post("/api/upload", handlers.api_upload)
    app.router.add_delete("/api/files/{hash}", handlers.delete_file)
    app.router.add_get("/f/{tail:.+}", handlers.serve_file)
    app.router.add_get("/upload", handlers.upload_page)
    app.router.add_post("/upload", handlers.upload_form)
    app.router.add_get("/files", handlers.files_page)
    app.router.add_post("/files/{hash}/delete", handlers.files_delete)
