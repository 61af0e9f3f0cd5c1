"""The public API's OpenAPI 3.1 document, served at ``GET /openapi.json``.

Every operation is one compact declaration in :data:`OPERATIONS`; :func:`build` expands them
into the document. ``tests/test_openapi.py`` compares these operations with the routes the
services and the gateway really register (both ways), so a route added without a line here,
or a line left for a route removed, fails the suite.

Conventions:

* Paths are written as the dialect's clients spell them. The Haut.ai-style paths end with
  ``/`` (its clients send it); each is also accepted without the trailing slash, which the
  document does not repeat (it says so in the operation's description).
* ``HEAD`` is accepted wherever ``GET`` is and is not listed separately.
* Operational paths: the gateway's own ``/healthz``, ``/readyz``, ``/openapi.json`` and
  ``/docs`` are included (tag *Operations*); ``/docs/static/…`` (the Swagger UI assets),
  ``/metrics`` (a Prometheus scrape target, not an API) and every ``/internal/…`` path (never
  forwarded) are not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# -- security ------------------------------------------------------------------------------

BASIC = {"basicAuth": []}
JWT = {"happoJwt": []}
TOKEN = {"apiToken": []}
OAUTH = {"oauth2": ["api"]}
SESSION = {"session": []}
ANONYMOUS: dict = {}

#: Any credential an account holds (the gateway resolves them all to the same principal).
ANY = [BASIC, JWT, TOKEN, OAUTH, SESSION]
HAPPO = [BASIC, JWT, TOKEN, SESSION]
KEYS = [BASIC, JWT, TOKEN, SESSION]
HAUT = [TOKEN, BASIC, SESSION]
PAGE = [SESSION, ANONYMOUS]
NONE: list = []  # public: no credential is read
OPTIONAL = [*ANY, ANONYMOUS]

SECURITY_SCHEMES = {
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "`Authorization: Basic base64(apiKey:apiSecret)`.",
    },
    "happoJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Happo clients: an HS256 JWT signed with the API secret, header "
        '`{"alg": "HS256", "kid": apiKey}`, payload `{"key": apiKey}` (`exp`/`nbf` honoured).',
    },
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "drk_… API token or drl_… Haut.ai access token",
        "description": "An API token (`drk_…`, from `POST /api/keys`) or a Haut.ai-style access "
        "token (`drl_…`, from `POST /api/v1/login/`).",
    },
    "oauth2": {
        "type": "oauth2",
        "description": "Progimage: OAuth 2.0 authorization code flow (PKCE S256 optional).",
        "flows": {
            "authorizationCode": {
                "authorizationUrl": "/oauth/authorize",
                "tokenUrl": "/oauth/token",
                "refreshUrl": "/oauth/token",
                "scopes": {"api": "The Progimage API: /user and /user/images."},
            }
        },
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "darkroom_session",
        "description": "The web sign-in session (pages; state changes need a same-origin "
        "`Origin`).",
    },
}

# -- schemas -------------------------------------------------------------------------------

S = "string"
OBJ: dict = {"type": "object"}
ANY_JSON: dict = {}
HTML = {"text/html": {"schema": {"type": "string"}}}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: tuple[str, ...] = (), **props: Any) -> dict:
    """An object schema; extra properties are allowed (clients ignore what they do not know)."""
    schema: dict = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def t(kind: str | list[str], **extra: Any) -> dict:
    return {"type": kind, **extra}


NULLABLE_STR = t([S, "null"])
NUM = t("number")
INT = t("integer")

SCHEMAS: dict[str, dict] = {
    "Error": obj(
        ("error",),
        error=obj(
            ("code", "message"),
            code=t(S, examples=["not_found"]),
            message=t(S),
            details=OBJ,
        ),
    ),
    "OAuthError": obj(("error",), error=t(S), error_description=t(S)),
    # auth
    "User": obj(("id", "name", "email"), id=t([S, "integer"]), name=t(S), email=t(S)),
    "Credential": obj(
        ("id", "kind"),
        id=t([S, "integer"]),
        kind=t(S, examples=["token", "api_key"]),
        name=NULLABLE_STR,
        api_key=NULLABLE_STR,
        api_secret=t(S, description="Only in the answer that creates it."),
        token=t(S, description="Only in the answer that creates it (`drk_…`)."),
    ),
    "CredentialList": t(["array", "object"], description="The account's credentials."),
    "CreateCredential": obj(("kind",), kind=t(S, enum=["token", "key"]), name=t(S)),
    "TokenRequest": obj(
        (),
        grant_type=t(S, enum=["authorization_code", "refresh_token"]),
        client_id=t(S),
        client_secret=t(S),
        code=t(S),
        redirect_uri=t(S),
        code_verifier=t(S),
        refresh_token=t(S),
    ),
    "TokenAnswer": obj(
        ("access_token", "token_type"),
        access_token=t(S),
        token_type=t(S),
        expires_in=INT,
        scope=t(S),
        created_at=INT,
        refresh_token=t(S),
    ),
    "RevokeRequest": obj(("token",), token=t(S), token_type_hint=t(S)),
    "HautLogin": obj(("username", "password"), username=t(S), password=t(S)),
    "HautRefresh": obj(("refresh_token",), refresh_token=t(S)),
    "HautTokens": obj(
        ("access_token",),
        access_token=t(S),
        refresh_token=t(S),
        company_id=t([S, "integer"]),
        id=t([S, "integer"]),
    ),
    # Happo Image API and the hash file host
    "UploadUrl": obj(("uploadUrl", "url"), uploadUrl=NULLABLE_STR, url=t(S)),
    "Url": obj(("url",), url=t(S)),
    "Multipart": obj(("file",), file=t(S, contentMediaType="application/octet-stream")),
    "UploadAnswer": obj(
        ("hash", "status", "urls"),
        hash=t(S),
        status=t(["boolean", S]),
        urls=OBJ,
        delete_token=t(S),
    ),
    "Deleted": obj(("hash", "deleted"), hash=t(S), deleted=t("boolean")),
    # Progimage
    "ProcessItem": obj(
        (),
        file=t(S, description="Base64 bytes."),
        remote_file_url=t(S),
        image_id=t([S, "integer"]),
        quality=t([S, "integer"]),
        thumb_w=t([S, "integer"]),
        thumb_h=t([S, "integer"]),
        rotation=t([S, "number"]),
        filter=t(S, enum=["toaster", "lomo", "kelvin", "colortone", "gotham"]),
        round_corners=t([S, "number"]),
    ),
    "ProcessRequest": obj(
        ("process",), process={"oneOf": [ref("ProcessItem"), array(ref("ProcessItem"))]}
    ),
    "ProgimageAnswer": t(
        ["object", "array"],
        description="One item: `{data: {file: {url}, thumb: {url}, mini: {url}}}`; an array: "
        "`[{url, secure_url, thumbnail_url, secure_thumbnail_url}]`.",
    ),
    # Haut.ai-style
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
    # Happo reports API
    "Snapshot": obj(
        (),
        url=t(S),
        variant=t(S),
        target=t(S),
        component=t(S),
        height=NUM,
        width=NUM,
        id=t([S, "integer"]),
    ),
    "ReportRequest": obj(
        ("snaps",),
        snaps=array(ref("Snapshot")),
        project=t(S),
        partial=t("boolean"),
        link=t(S),
        message=t(S),
    ),
    "ReportStatus": obj(
        ("url",), url=t(S), completedAt=NULLABLE_STR, createdAt=t(S), snapshotCount=INT
    ),
    "Comparison": obj(
        (),
        diffs=array(ANY_JSON),
        added=array(ANY_JSON),
        deleted=array(ANY_JSON),
        unchanged=array(ANY_JSON),
        summary=t(S),
        equal=t("boolean"),
        status=t(S),
        compareUrl=t(S),
        statusImageUrl=t(S),
    ),
    "ComparisonStatus": obj((), sha1=t(S), sha2=t(S), status=t(S), url=t(S), createdAt=t(S)),
    "Job": OBJ,
    "Subscribers": obj(("component", "emailAddresses"), component=t(S), emailAddresses=array(t(S))),
    "Emails": obj(("emailAddresses",), emailAddresses=array(t(S))),
    "RequestId": obj(("requestId",), requestId=t([S, "integer"])),
}

# -- operations ----------------------------------------------------------------------------

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
PNG = {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}}
IMAGE = {"image/*": {"schema": {"type": "string", "contentMediaType": "image/*"}}}
BYTES = {"*/*": {"schema": {"type": "string"}}}


@dataclass(frozen=True)
class Op:
    """One operation: ``ok`` is the success status and its content (a schema name, an
    inline schema, a content map, or None for no body); ``body`` the request's."""

    method: str
    path: str
    tag: str
    summary: str
    security: list = field(default_factory=list)
    body: str | dict | None = None
    body_type: str = JSON
    ok: int = 200
    content: str | dict | None = None
    query: tuple[str, ...] = ()
    description: str = ""


HAPPO_IMG = "Happo Image API"
HAPPO_REP = "Happo reports API"
PROG = "Progimage"
HAUT_TAG = "Haut.ai-style"
HOST = "Hash file host"
ACC = "Accounts and credentials"
OPS = "Operations"

C = "/api/v1/companies/{company_id}"
D = C + "/datasets/{dataset_id}"
SLASH = "Also accepted without the trailing slash."

OPERATIONS: list[Op] = [
    # -- operations (the gateway itself)
    Op("GET", "/healthz", OPS, "The gateway process answers", NONE, content=OBJ),
    Op("GET", "/readyz", OPS, "Every service is ready (503 when one is not)", NONE, content=OBJ),
    Op("GET", "/openapi.json", OPS, "This document", NONE, content=OBJ),
    Op("GET", "/docs", OPS, "This document rendered with Swagger UI", NONE, content=HTML),
    # -- accounts, credentials, OAuth 2.0 and the pages of auth
    Op("GET", "/user", ACC, "The caller", ANY, content="User"),
    Op("GET", "/api/keys", ACC, "List the account's credentials", KEYS, content=ANY_JSON),
    Op(
        "POST",
        "/api/keys",
        ACC,
        "Create a key pair or an API token (shown once)",
        KEYS,
        body="CreateCredential",
        ok=201,
        content="Credential",
    ),
    Op("DELETE", "/api/keys/{credential_id}", ACC, "Invalidate a credential", KEYS),
    Op("GET", "/", ACC, "Home page", PAGE, content=HTML),
    Op("GET", "/signup", ACC, "Sign-up page", PAGE, content=HTML),
    Op("POST", "/signup", ACC, "Sign up (form)", PAGE, body=OBJ, body_type=FORM, ok=303),
    Op("GET", "/signin", ACC, "Sign-in page", PAGE, content=HTML, query=("next",)),
    Op("POST", "/signin", ACC, "Sign in (form)", PAGE, body=OBJ, body_type=FORM, ok=303),
    Op("POST", "/signout", ACC, "Sign out", PAGE, ok=303),
    Op("GET", "/keys", ACC, "API keys page", PAGE, content=HTML),
    Op(
        "POST",
        "/keys",
        ACC,
        "Generate a credential (form)",
        PAGE,
        body=OBJ,
        body_type=FORM,
        content=HTML,
    ),
    Op("POST", "/keys/{credential_id}/revoke", ACC, "Invalidate a credential (form)", PAGE, ok=303),
    Op(
        "GET",
        "/oauth/authorize",
        PROG,
        "OAuth 2.0 authorization: the consent page",
        PAGE,
        content=HTML,
        query=("client_id", "response_type", "redirect_uri", "state"),
    ),
    Op(
        "POST",
        "/oauth/authorize",
        PROG,
        "OAuth 2.0 consent decision (form)",
        PAGE,
        body=OBJ,
        body_type=FORM,
        ok=302,
    ),
    Op(
        "POST",
        "/oauth/token",
        PROG,
        "OAuth 2.0 token endpoint (code or refresh token)",
        NONE,
        body="TokenRequest",
        body_type=FORM,
        content="TokenAnswer",
        description="Client credentials in the body or as HTTP Basic. Errors use RFC 6749's "
        "`{error, error_description}`.",
    ),
    Op(
        "POST",
        "/oauth/revoke",
        PROG,
        "OAuth 2.0 token revocation (RFC 7009)",
        NONE,
        body="RevokeRequest",
        body_type=FORM,
        content=ANY_JSON,
    ),
    Op("GET", "/applications", PROG, "OAuth applications page", PAGE, content=HTML),
    Op(
        "POST",
        "/applications",
        PROG,
        "Register an OAuth application (form)",
        PAGE,
        body=OBJ,
        body_type=FORM,
        content=HTML,
    ),
    Op(
        "POST",
        "/applications/{client_pk}/delete",
        PROG,
        "Delete an OAuth application (form)",
        PAGE,
        ok=303,
    ),
    # -- Haut.ai-style sign-in
    Op(
        "POST",
        "/api/v1/login/",
        HAUT_TAG,
        "Sign in with e-mail and password",
        NONE,
        body="HautLogin",
        content="HautTokens",
        description=SLASH,
    ),
    Op(
        "POST",
        "/api/v1/auth/refresh/",
        HAUT_TAG,
        "Rotate the token pair",
        NONE,
        body="HautRefresh",
        content="HautTokens",
        description=SLASH,
    ),
    # -- Happo Image API
    Op(
        "GET",
        "/api/images/{hash}/upload-url",
        HAPPO_IMG,
        "A signed upload URL for an image (uploadUrl null when the account has it)",
        HAPPO,
        content="UploadUrl",
    ),
    Op(
        "POST",
        "/api/images/upload/{token}",
        HAPPO_IMG,
        "Upload a PNG to a signed upload URL",
        [*HAPPO, ANONYMOUS],
        body="Multipart",
        body_type=MULTIPART,
        content="Url",
    ),
    Op("GET", "/img/{account_id}/{hash}", HAPPO_IMG, "An uploaded image", OPTIONAL, content=IMAGE),
    # -- Progimage
    Op(
        "POST",
        "/user/images",
        PROG,
        "Upload and process images",
        ANY,
        body="ProcessRequest",
        ok=201,
        content="ProgimageAnswer",
    ),
    Op(
        "GET",
        "/user/images",
        PROG,
        "The caller's images, newest first",
        ANY,
        content=obj(
            ("data", "meta"), data=array(OBJ), meta=obj((), offset=INT, limit=INT, total=INT)
        ),
        query=("offset", "limit"),
    ),
    Op(
        "GET",
        "/user/images/{image_id}/derived",
        PROG,
        "One of the caller's images through the process options, made on first request",
        ANY,
        content=IMAGE,
        query=("thumb_w", "thumb_h", "quality", "rotation", "filter", "round_corners", "format"),
    ),
    Op(
        "GET",
        "/uploads/image/file/{image_id}/{name}",
        PROG,
        "A variant (file, thumb, mini) of a Progimage image",
        NONE,
        content=IMAGE,
    ),
    # -- hash file host
    Op(
        "POST",
        "/api/upload",
        HOST,
        "Upload a file",
        OPTIONAL,
        body="Multipart",
        body_type=MULTIPART,
        content="UploadAnswer",
    ),
    Op(
        "DELETE",
        "/api/files/{hash}",
        HOST,
        "Delete a file (owner or delete token)",
        OPTIONAL,
        content="Deleted",
        query=("delete_token",),
    ),
    Op(
        "GET",
        "/f/{tail}",
        HOST,
        "A file by hash (`<hash>`, `<hash>.<ext>`, `<hash>/<name>`)",
        NONE,
        content=BYTES,
    ),
    Op("GET", "/upload", HOST, "Upload page", PAGE, content=HTML),
    Op(
        "POST",
        "/upload",
        HOST,
        "Upload (form; `?api=1` answers `OK <hash>` as text)",
        PAGE,
        body="Multipart",
        body_type=MULTIPART,
        content=HTML,
        query=("api",),
    ),
    Op("GET", "/files", HOST, "The signed-in user's files", PAGE, content=HTML),
    Op("POST", "/files/{hash}/delete", HOST, "Delete one of the user's files (form)", PAGE, ok=303),
    # -- Haut.ai-style subjects API
    Op(
        "GET",
        "/api/v1/dicts/image_types/",
        HAUT_TAG,
        "Image types with sides and lights",
        HAUT,
        content=ANY_JSON,
        description=SLASH,
    ),
    Op(
        "GET",
        C + "/datasets/",
        HAUT_TAG,
        "List datasets",
        HAUT,
        content="Page",
        query=("page", "page_size", "ordering", "search"),
        description=SLASH,
    ),
    Op(
        "POST",
        C + "/datasets/",
        HAUT_TAG,
        "Create a dataset",
        HAUT,
        body="DatasetInput",
        ok=201,
        content="Dataset",
        description=SLASH,
    ),
    Op("GET", D + "/", HAUT_TAG, "A dataset", HAUT, content="Dataset", description=SLASH),
    Op(
        "PATCH",
        D + "/",
        HAUT_TAG,
        "Update a dataset's fields",
        HAUT,
        body="DatasetInput",
        content="Dataset",
        description=SLASH,
    ),
    Op(
        "PUT",
        D + "/",
        HAUT_TAG,
        "Replace a dataset (name required)",
        HAUT,
        body="DatasetInput",
        content="Dataset",
        description=SLASH,
    ),
    Op(
        "DELETE",
        D + "/",
        HAUT_TAG,
        "Delete a dataset, its subjects and images",
        HAUT,
        ok=204,
        description=SLASH,
    ),
    Op(
        "GET",
        D + "/subjects/",
        HAUT_TAG,
        "List a dataset's subjects",
        HAUT,
        content="Page",
        query=("page", "page_size", "ordering", "search"),
        description=SLASH,
    ),
    Op(
        "POST",
        D + "/subjects/",
        HAUT_TAG,
        "Create a subject",
        HAUT,
        body="SubjectInput",
        ok=201,
        content="Subject",
        description=SLASH,
    ),
    Op(
        "GET",
        D + "/subjects/{subject_id}/",
        HAUT_TAG,
        "A subject",
        HAUT,
        content="Subject",
        description=SLASH,
    ),
    Op(
        "PATCH",
        D + "/subjects/{subject_id}/",
        HAUT_TAG,
        "Update a subject's fields",
        HAUT,
        body="SubjectInput",
        content="Subject",
        description=SLASH,
    ),
    Op(
        "PUT",
        D + "/subjects/{subject_id}/",
        HAUT_TAG,
        "Replace a subject (name required)",
        HAUT,
        body="SubjectInput",
        content="Subject",
        description=SLASH,
    ),
    Op(
        "DELETE",
        D + "/subjects/{subject_id}/",
        HAUT_TAG,
        "Delete a subject",
        HAUT,
        ok=204,
        description=SLASH,
    ),
    Op(
        "POST",
        C + "/subjects/{subject_id}/signed_upload_url/",
        HAUT_TAG,
        "A signed upload URL for a subject's next image",
        HAUT,
        body=OBJ,
        content="HautImage",
        description=SLASH,
    ),
    Op(
        "GET",
        C + "/subjects/{subject_id}/images/",
        HAUT_TAG,
        "A subject's images",
        HAUT,
        content="Page",
        query=("page", "page_size", "ordering"),
        description=SLASH,
    ),
    Op(
        "POST",
        D + "/subjects/{subject_id}/signed_upload_url/",
        HAUT_TAG,
        "A signed upload URL (nested path)",
        HAUT,
        body=OBJ,
        content="HautImage",
        description=SLASH,
    ),
    Op(
        "GET",
        D + "/subjects/{subject_id}/images/",
        HAUT_TAG,
        "A subject's images (nested)",
        HAUT,
        content="Page",
        query=("page", "page_size", "ordering"),
        description=SLASH,
    ),
    Op(
        "POST",
        C + "/batches/{batch_id}/compute/",
        HAUT_TAG,
        "Send a batch to compute",
        HAUT,
        body=OBJ,
        content="Ok",
        description=SLASH,
    ),
    Op(
        "GET",
        C + "/images/{image_id}/",
        HAUT_TAG,
        "An image and its results",
        HAUT,
        content="HautImage",
        query=("generate_signed_url", "signed_url_expiration"),
        description=SLASH,
    ),
    Op(
        "DELETE",
        C + "/images/{image_id}/",
        HAUT_TAG,
        "Delete an image",
        HAUT,
        ok=204,
        description=SLASH,
    ),
    Op(
        "PUT",
        "/api/v1/uploads/{token}",
        HAUT_TAG,
        "Upload to a signed upload URL",
        NONE,
        body={"type": "string"},
        body_type="application/octet-stream",
        content=ANY_JSON,
    ),
    Op("GET", "/api/v1/files/{token}", HAUT_TAG, "A signed file URL", NONE, content=IMAGE),
    # -- Happo reports API
    Op(
        "POST",
        "/api/reports/{sha}",
        HAPPO_REP,
        "Create (or amend) a report",
        HAPPO,
        body="ReportRequest",
        content="ReportStatus",
    ),
    Op(
        "GET",
        "/api/reports/{sha}",
        HAPPO_REP,
        "A report's snapshots",
        HAPPO,
        content=array(ref("Snapshot")),
    ),
    Op(
        "GET",
        "/api/reports/{sha}/status",
        HAPPO_REP,
        "A report's status",
        HAPPO,
        content="ReportStatus",
    ),
    Op(
        "POST",
        "/api/reports/{sha}/complete",
        HAPPO_REP,
        "Complete a partial report",
        HAPPO,
        body=OBJ,
        content="ReportStatus",
    ),
    Op(
        "POST",
        "/api/reports/{fromSha}/clone/{toSha}",
        HAPPO_REP,
        "Clone a report",
        HAPPO,
        body=OBJ,
        content="ReportStatus",
    ),
    Op(
        "POST",
        "/api/reports/{sha}/find-baseline",
        HAPPO_REP,
        "The first of `shas` with a complete report",
        HAPPO,
        body=OBJ,
        content=OBJ,
    ),
    Op(
        "POST",
        "/api/reports/{sha1}/compare/{sha2}",
        HAPPO_REP,
        "Compare two reports",
        HAPPO,
        body=OBJ,
        content="Comparison",
    ),
    Op(
        "GET",
        "/api/reports/{sha1}/compare/{sha2}/status",
        HAPPO_REP,
        "A comparison's status",
        HAPPO,
        content="ComparisonStatus",
    ),
    Op(
        "GET",
        "/api/reports/{sha}/comparison-statuses",
        HAPPO_REP,
        "The statuses of a report's comparisons",
        HAPPO,
        content=array(ref("ComparisonStatus")),
    ),
    Op(
        "POST",
        "/api/ignored-diffs",
        HAPPO_REP,
        "Ignore a diff between two snapshots",
        HAPPO,
        body=OBJ,
        content=ANY_JSON,
    ),
    Op("GET", "/api/flake", HAPPO_REP, "The ignored diffs", HAPPO, content=ANY_JSON),
    Op(
        "POST",
        "/api/jobs/{sha1}/{sha2}",
        HAPPO_REP,
        "Create (or get) a job",
        HAPPO,
        body=OBJ,
        content="Job",
    ),
    Op(
        "POST",
        "/api/jobs/{sha1}/{sha2}/orchestrate",
        HAPPO_REP,
        "Orchestrate projects",
        HAPPO,
        body=OBJ,
        content="Job",
    ),
    Op(
        "POST",
        "/api/jobs/{sha1}/{sha2}/cancel",
        HAPPO_REP,
        "Settle a job",
        HAPPO,
        body=OBJ,
        content="Job",
    ),
    Op(
        "POST",
        "/api/jobs/{sha1}/{sha2}/fail",
        HAPPO_REP,
        "Settle a job (deprecated)",
        HAPPO,
        body=OBJ,
        content="Job",
    ),
    Op(
        "POST",
        "/api/skip/{sha}",
        HAPPO_REP,
        "A successful status for a sha",
        HAPPO,
        body=OBJ,
        content=ANY_JSON,
    ),
    Op(
        "POST",
        "/api/subscriptions/{component}",
        HAPPO_REP,
        "Subscribe e-mail addresses",
        HAPPO,
        body="Emails",
        content="Subscribers",
    ),
    Op(
        "DELETE",
        "/api/subscriptions/{component}",
        HAPPO_REP,
        "Unsubscribe e-mail addresses",
        HAPPO,
        body="Emails",
        content="Subscribers",
    ),
    Op(
        "GET",
        "/api/components/{component}/{variant}/{target}",
        HAPPO_REP,
        "The latest snapshot of a component",
        HAPPO,
        content="Snapshot",
    ),
    Op(
        "POST",
        "/api/async-reports/{sha}",
        HAPPO_REP,
        "Create an async report",
        HAPPO,
        body=OBJ,
        content=OBJ,
    ),
    Op(
        "POST",
        "/api/async-reports/{sha}/finalize",
        HAPPO_REP,
        "Finalize parallel runs",
        HAPPO,
        body=OBJ,
        content="ReportStatus",
    ),
    Op(
        "POST",
        "/api/snap-requests/with-results",
        HAPPO_REP,
        "Snapshots taken by the client",
        HAPPO,
        body=OBJ,
        content="RequestId",
    ),
    Op(
        "POST",
        "/api/snap-requests/extends-report",
        HAPPO_REP,
        "Snapshots from an earlier report",
        HAPPO,
        body=OBJ,
        content="RequestId",
    ),
    Op("GET", "/api/snap-requests/{id}", HAPPO_REP, "A snap request's result", HAPPO, content=OBJ),
    Op(
        "POST",
        "/api/snap-requests",
        HAPPO_REP,
        "Render a payload in Darkroom's Chromium",
        HAPPO,
        body=OBJ,
        body_type=MULTIPART,
        content="RequestId",
        description="Multipart `type` (browser-<type> or extends-report), `targetName`,"
        " `payloadHash` and the payload JSON as the file `payload`. Poll"
        " `GET /api/snap-requests/{id}` or name the id in an async report.",
    ),
    Op(
        "POST",
        "/api/snap-requests/bulk",
        HAPPO_REP,
        "Render up to 50 payloads",
        HAPPO,
        body=OBJ,
        content=OBJ,
        description="`{items: [{type, targetName, payloadString, payloadHash, extendsSha?}]}`"
        " → `{results: [{requestId} | {error}]}` in the items' order.",
    ),
    Op(
        "GET",
        "/api/snap-requests/assets-data/{hash}",
        HAPPO_REP,
        "Whether a package is stored",
        HAPPO,
        content=OBJ,
    ),
    Op(
        "POST",
        "/api/snap-requests/assets/{hash}",
        HAPPO_REP,
        "Upload a package (zip or zstd tar)",
        HAPPO,
        body=OBJ,
        body_type=MULTIPART,
        content=OBJ,
    ),
    Op(
        "GET",
        "/api/snap-requests/assets/{hash}/signed-url",
        HAPPO_REP,
        "A signed URL to PUT a package to",
        HAPPO,
        query=("format",),
        content=OBJ,
    ),
    Op(
        "PUT",
        "/api/package-uploads/{token}",
        HAPPO_REP,
        "PUT a package to its signed URL",
        NONE,
        body={"type": "string"},
        body_type="application/octet-stream",
        content=OBJ,
    ),
    Op(
        "POST",
        "/api/snap-requests/assets/{hash}/signed-url/finalize",
        HAPPO_REP,
        "Finish a signed-URL package upload",
        HAPPO,
        content=OBJ,
    ),
    Op(
        "GET",
        "/comparisons/{id}/diffs/{position}.png",
        HAPPO_REP,
        "A diff image",
        [*HAPPO, ANONYMOUS],
        content=PNG,
    ),
    Op(
        "GET",
        "/badges/{badge}.svg",
        HAPPO_REP,
        "A comparison's status badge",
        NONE,
        content={"image/svg+xml": {"schema": {"type": "string"}}},
    ),
    Op("GET", "/reports/{id}", HAPPO_REP, "Report page", PAGE, content=HTML),
    Op("GET", "/comparisons/{id}", HAPPO_REP, "Comparison page", PAGE, content=HTML),
    Op(
        "POST",
        "/comparisons/{id}/review",
        HAPPO_REP,
        "Accept or reject (form)",
        PAGE,
        body=OBJ,
        body_type=FORM,
        ok=303,
    ),
    Op("GET", "/jobs/{id}", HAPPO_REP, "Job page", PAGE, content=HTML),
    Op(
        "GET",
        "/unsubscribe/{token}",
        HAPPO_REP,
        "Unsubscribe confirmation page",
        NONE,
        content=HTML,
    ),
    Op(
        "POST",
        "/unsubscribe/{token}",
        HAPPO_REP,
        "Unsubscribe (RFC 8058 one-click)",
        NONE,
        content=HTML,
    ),
]

TAGS = [
    {"name": HAPPO_IMG, "description": "Happo's Image API: signed uploads of screenshots."},
    {
        "name": HAPPO_REP,
        "description": "Happo's reports API, the endpoints its clients call "
        "outside the reference, and the report pages.",
    },
    {"name": PROG, "description": "Progimage: OAuth 2.0 and image processing."},
    {"name": HAUT_TAG, "description": "Haut.ai-style companies, datasets, subjects, images."},
    {"name": HOST, "description": "The hash file host: uploads by content, served by hash."},
    {"name": ACC, "description": "The caller, API credentials and the account pages."},
    {"name": OPS, "description": "The gateway's own health, readiness and this reference."},
]

_PARAM = re.compile(r"{([^}/]+)}")
_ERROR_STATUSES = ("400", "401", "403", "404", "409", "413", "415", "422", "429", "503")


def _content(value: str | dict | None, media: str = JSON) -> dict | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {media: {"schema": ref(value)}}
    if all("/" in key for key in value) and value:
        return value
    return {media: {"schema": value}}


def operation_id(op: Op) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", op.path).strip("_") or "root"
    return f"{op.method.lower()}_{words}"


def _operation(op: Op) -> dict:
    ok: dict = {"description": op.summary}
    content = _content(op.content)
    if content:
        ok["content"] = content
    responses: dict = {str(op.ok): ok}
    error = {"$ref": "#/components/responses/Error"}
    for status in _ERROR_STATUSES:
        responses.setdefault(status, error)
    if op.path in ("/oauth/token", "/oauth/revoke"):
        oauth_error = {"description": "RFC 6749 error", "content": _content("OAuthError")}
        responses["400"] = responses["401"] = oauth_error
    if op.ok in (301, 302, 303):
        responses[str(op.ok)]["headers"] = {"Location": {"schema": {"type": "string"}}}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(op.path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in op.query
    ]
    out: dict = {
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": operation_id(op),
        "responses": responses,
        "security": op.security,
    }
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": _content(op.body, op.body_type)}
    return out


def build(public_url: str) -> dict:
    """The whole document, with ``servers`` naming ``public_url``."""
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Darkroom",
            "version": "1",
            "description": "One gateway, four dialects: the Happo Image and reports APIs, "
            "Progimage (OAuth 2.0), a Haut.ai-style subjects API and a hash file host. "
            'Errors: `{"error": {"code", "message"}}` (OAuth token errors: RFC 6749). '
            "`HEAD` is accepted wherever `GET` is.",
        },
        "servers": [{"url": public_url.rstrip("/")}],
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                "Error": {
                    "description": "An error in the platform's one shape.",
                    "content": {JSON: {"schema": ref("Error")}},
                }
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def routes() -> set[tuple[str, str]]:
    """(method, path) of every documented operation."""
    return {(op.method, op.path) for op in OPERATIONS}
