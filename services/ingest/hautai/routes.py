"""The Haut.ai-style API's routes (its clients write the trailing slash; both spellings work)."""

from aiohttp import web

from services.ingest.hautai import handlers


def setup_routes(app: web.Application) -> None:
    """Register the Haut.ai-style API and its signed URLs on ``app``."""
    company = "/api/v1/companies/{company_id}"
    dataset = f"{company}/datasets/{{dataset_id}}"
    subject = f"{dataset}/subjects/{{subject_id}}"
    routes = [
        ("GET", "/api/v1/dicts/image_types/", handlers.image_types),
        ("POST", f"{company}/datasets/", handlers.dataset_create),
        ("GET", f"{company}/datasets/", handlers.dataset_list),
        ("GET", f"{dataset}/", handlers.dataset_get),
        ("PATCH", f"{dataset}/", handlers.dataset_update),
        ("PUT", f"{dataset}/", handlers.dataset_update),
        ("DELETE", f"{dataset}/", handlers.dataset_delete),
        ("POST", f"{dataset}/subjects/", handlers.subject_create),
        ("GET", f"{dataset}/subjects/", handlers.subject_list),
        ("GET", f"{subject}/", handlers.subject_get),
        ("PATCH", f"{subject}/", handlers.subject_update),
        ("PUT", f"{subject}/", handlers.subject_update),
        ("DELETE", f"{subject}/", handlers.subject_delete),
        # the seed's un-nested subject paths (a subject id implies its dataset) and the nested
        (
            "POST",
            f"{company}/subjects/{{subject_id}}/signed_upload_url/",
            handlers.signed_upload_url,
        ),
        ("GET", f"{company}/subjects/{{subject_id}}/images/", handlers.subject_images),
        ("POST", f"{subject}/signed_upload_url/", handlers.signed_upload_url),
        ("GET", f"{subject}/images/", handlers.subject_images),
        ("POST", f"{company}/batches/{{batch_id}}/compute/", handlers.compute),
        ("GET", f"{company}/images/{{image_id}}/", handlers.image_get),
        ("DELETE", f"{company}/images/{{image_id}}/", handlers.image_delete),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, path.rstrip("/"), handler)
    # the signed URLs (the signature is the authority)
    app.router.add_put("/api/v1/uploads/{token}", handlers.upload)
    app.router.add_get("/api/v1/files/{token}", handlers.serve_file)
