"""The Haut.ai-style API: sign-in (served by auth), then companies, datasets, subjects and
images (served by ingest).

Its clients write the trailing slash; every such route also answers without it, which the
document says in the operation's description rather than listing the path twice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.openapi.common import (
    ANY_JSON,
    HAUTAI,
    HAUTAI_TAG,
    IMAGE,
    INT,
    NONE,
    NULLABLE_STR,
    OBJ,
    OCTETS,
    Op,
    S,
    array,
    obj,
    t,
)

COMPANY = "/api/v1/companies/{company_id}"
DATASET = COMPANY + "/datasets/{dataset_id}"
SLASH = "Also accepted without the trailing slash."
PAGED = ("page", "page_size", "ordering")


def slashed(method: str, path: str, summary: str, security: list = HAUTAI, **kw: Any) -> Op:
    """A Haut.ai-style operation on a path with the trailing slash (also accepted without)."""
    return Op(method, path, HAUTAI_TAG, summary, security, description=SLASH, **kw)


def both_spellings(*declared: tuple[Op, str]) -> list[Op]:
    """Each (operation, nested summary) on a path under the company, then on the same path
    nested under the dataset: a subject id implies its dataset, so the routes take both."""
    return [replace(op, path=COMPANY + op.path) for op, _ in declared] + [
        replace(op, path=DATASET + op.path, summary=nested) for op, nested in declared
    ]


AUTH_SCHEMAS: dict[str, dict] = {
    "HautLogin": obj(("username", "password"), username=t(S), password=t(S)),
    "HautRefresh": obj(("refresh_token",), refresh_token=t(S)),
    "HautTokens": obj(
        ("access_token",),
        access_token=t(S),
        refresh_token=t(S),
        company_id=t([S, "integer"]),
        id=t([S, "integer"]),
    ),
}

AUTH_OPERATIONS: list[Op] = [
    slashed(
        "POST",
        "/api/v1/login/",
        "Sign in with e-mail and password",
        NONE,
        body="HautLogin",
        content="HautTokens",
    ),
    slashed(
        "POST",
        "/api/v1/auth/refresh/",
        "Rotate the token pair",
        NONE,
        body="HautRefresh",
        content="HautTokens",
    ),
]

SCHEMAS: dict[str, dict] = {
    "Page": obj(
        ("count", "results"),
        count=INT,
        next=NULLABLE_STR,
        previous=NULLABLE_STR,
        results=array(OBJ),
    ),
    "Dataset": obj(("id", "name"), id=t([S, "integer"]), name=t(S), image_type_id=INT),
    "DatasetInput": obj((), name=t(S), image_type_id=t(["integer", S])),
    "Subject": obj(("id", "name"), id=t([S, "integer"]), name=t(S)),
    "SubjectInput": obj(
        (), name=t(S), birth_date=NULLABLE_STR, biological_sex=NULLABLE_STR, meta=OBJ
    ),
    "HautImage": obj(("id",), id=t([S, "integer"])),
    "Ok": obj(("ok",), ok=t("boolean")),
}

OPERATIONS: list[Op] = [
    slashed(
        "GET", "/api/v1/dicts/image_types/", "Image types with sides and lights", content=ANY_JSON
    ),
    slashed(
        "GET", COMPANY + "/datasets/", "List datasets", content="Page", query=(*PAGED, "search")
    ),
    slashed(
        "POST",
        COMPANY + "/datasets/",
        "Create a dataset",
        body="DatasetInput",
        ok=201,
        content="Dataset",
    ),
    slashed("GET", DATASET + "/", "A dataset", content="Dataset"),
    slashed(
        "PATCH", DATASET + "/", "Update a dataset's fields", body="DatasetInput", content="Dataset"
    ),
    slashed(
        "PUT",
        DATASET + "/",
        "Replace a dataset (name required)",
        body="DatasetInput",
        content="Dataset",
    ),
    slashed("DELETE", DATASET + "/", "Delete a dataset, its subjects and images", ok=204),
    slashed(
        "GET",
        DATASET + "/subjects/",
        "List a dataset's subjects",
        content="Page",
        query=(*PAGED, "search"),
    ),
    slashed(
        "POST",
        DATASET + "/subjects/",
        "Create a subject",
        body="SubjectInput",
        ok=201,
        content="Subject",
    ),
    slashed("GET", DATASET + "/subjects/{subject_id}/", "A subject", content="Subject"),
    slashed(
        "PATCH",
        DATASET + "/subjects/{subject_id}/",
        "Update a subject's fields",
        body="SubjectInput",
        content="Subject",
    ),
    slashed(
        "PUT",
        DATASET + "/subjects/{subject_id}/",
        "Replace a subject (name required)",
        body="SubjectInput",
        content="Subject",
    ),
    slashed("DELETE", DATASET + "/subjects/{subject_id}/", "Delete a subject", ok=204),
    *both_spellings(
        (
            slashed(
                "POST",
                "/subjects/{subject_id}/signed_upload_url/",
                "A signed upload URL for a subject's next image",
                body=OBJ,
                content="HautImage",
            ),
            "A signed upload URL (nested path)",
        ),
        (
            slashed(
                "GET",
                "/subjects/{subject_id}/images/",
                "A subject's images",
                content="Page",
                query=PAGED,
            ),
            "A subject's images (nested)",
        ),
    ),
    slashed(
        "POST",
        COMPANY + "/batches/{batch_id}/compute/",
        "Send a batch to compute",
        body=OBJ,
        content="Ok",
    ),
    slashed(
        "GET",
        COMPANY + "/images/{image_id}/",
        "An image and its results",
        content="HautImage",
        query=("generate_signed_url", "signed_url_expiration"),
    ),
    slashed("DELETE", COMPANY + "/images/{image_id}/", "Delete an image", ok=204),
    # the signed URLs (the signature is the authority; no trailing slash)
    Op(
        "PUT",
        "/api/v1/uploads/{token}",
        HAUTAI_TAG,
        "Upload to a signed upload URL",
        NONE,
        body={"type": "string"},
        body_type=OCTETS,
        content=ANY_JSON,
    ),
    Op("GET", "/api/v1/files/{token}", HAUTAI_TAG, "A signed file URL", NONE, content=IMAGE),
]
