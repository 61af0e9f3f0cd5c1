"""Ingest's routes: the Happo Image API, Progimage images, the Haut.ai-style subjects API,
the hash file host (API and pages) and serving."""

from aiohttp import web

from services.ingest import handlers


def setup_routes(app: web.Application) -> None:
    """Register ingest's routes on ``app`` (health routes are added by ``create_app``)."""
    # Happo Image API
    app.router.add_get("/api/images/{hash}/upload-url", handlers.happo_upload_url)
    app.router.add_post("/api/images/upload/{token}", handlers.happo_upload)
    app.router.add_get("/img/{account_id}/{hash}", handlers.serve_happo_image)
    app.router.add_post("/internal/happo-images", handlers.happo_images_lookup)
    app.router.add_post("/internal/happo-images/rendered", handlers.happo_rendered_image)
    # Progimage
    app.router.add_post("/user/images", handlers.progimage_upload)
    app.router.add_get("/user/images", handlers.progimage_list)
    app.router.add_get("/user/images/{image_id}/derived", handlers.progimage_derived)
    app.router.add_get("/uploads/image/file/{image_id}/{name}", handlers.serve_upload)
    # hash file host
    app.router.add_post("/api/upload", handlers.api_upload)
    app.router.add_delete("/api/files/{hash}", handlers.delete_file)
    app.router.add_get("/f/{tail:.+}", handlers.serve_file)
    app.router.add_get("/upload", handlers.upload_page)
    app.router.add_post("/upload", handlers.upload_form)
    app.router.add_get("/files", handlers.files_page)
    app.router.add_post("/files/{hash}/delete", handlers.files_delete)
    # Haut.ai-style subjects API (its clients write the trailing slash; both spellings work)
    company = "/api/v1/companies/{company_id}"
    dataset = f"{company}/datasets/{{dataset_id}}"
    haut = [
        ("GET", "/api/v1/dicts/image_types/", handlers.hautai_image_types),
        ("POST", f"{company}/datasets/", handlers.hautai_dataset_create),
        ("GET", f"{company}/datasets/", handlers.hautai_dataset_list),
        ("GET", f"{dataset}/", handlers.hautai_dataset_get),
        ("PATCH", f"{dataset}/", handlers.hautai_dataset_update),
        ("PUT", f"{dataset}/", handlers.hautai_dataset_update),
        ("DELETE", f"{dataset}/", handlers.hautai_dataset_delete),
        ("POST", f"{dataset}/subjects/", handlers.hautai_subject_create),
        ("GET", f"{dataset}/subjects/", handlers.hautai_subject_list),
        ("GET", f"{dataset}/subjects/{{subject_id}}/", handlers.hautai_subject_get),
        ("PATCH", f"{dataset}/subjects/{{subject_id}}/", handlers.hautai_subject_update),
        ("PUT", f"{dataset}/subjects/{{subject_id}}/", handlers.hautai_subject_update),
        ("DELETE", f"{dataset}/subjects/{{subject_id}}/", handlers.hautai_subject_delete),
        # the seed's un-nested subject paths (a subject id implies its dataset) and the nested
        (
            "POST",
            f"{company}/subjects/{{subject_id}}/signed_upload_url/",
            handlers.hautai_signed_upload_url,
        ),
        ("GET", f"{company}/subjects/{{subject_id}}/images/", handlers.hautai_subject_images),
        (
            "POST",
            f"{dataset}/subjects/{{subject_id}}/signed_upload_url/",
            handlers.hautai_signed_upload_url,
        ),
        ("GET", f"{dataset}/subjects/{{subject_id}}/images/", handlers.hautai_subject_images),
        ("POST", f"{company}/batches/{{batch_id}}/compute/", handlers.hautai_compute),
        ("GET", f"{company}/images/{{image_id}}/", handlers.hautai_image),
        ("DELETE", f"{company}/images/{{image_id}}/", handlers.hautai_image_delete),
    ]
    for method, path, handler in haut:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, path.rstrip("/"), handler)
    # the signed URLs of the Haut.ai API (the signature is the authority)
    app.router.add_put("/api/v1/uploads/{token}", handlers.hautai_upload)
    app.router.add_get("/api/v1/files/{token}", handlers.hautai_file)
