"""What every part of the OpenAPI document shares: the :class:`Op` declaration, the security
requirements and schemes, the tags, the schema helpers and the one error shape."""

from __future__ import annotations

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
HAUTAI = [TOKEN, BASIC, SESSION]
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

# -- schema helpers ------------------------------------------------------------------------

S = "string"
OBJ: dict = {"type": "object"}
ANY_JSON: dict = {}


def ref(name: str) -> dict:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: tuple[str, ...] = (), **props: Any) -> dict:
    """An object schema; extra properties are allowed (clients ignore what they do not know)."""
    schema: dict = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def array(items: dict) -> dict:
    """An array schema of ``items``."""
    return {"type": "array", "items": items}


def t(kind: str | list[str], **extra: Any) -> dict:
    """A schema of JSON type(s) ``kind`` with ``extra`` keywords."""
    return {"type": kind, **extra}


NULLABLE_STR = t([S, "null"])
NUM = t("number")
INT = t("integer")


# -- media types and content maps ----------------------------------------------------------

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
OCTETS = "application/octet-stream"
HTML = {"text/html": {"schema": {"type": "string"}}}
PNG = {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}}
IMAGE = {"image/*": {"schema": {"type": "string", "contentMediaType": "image/*"}}}
BYTES = {"*/*": {"schema": {"type": "string"}}}

# -- errors: every operation answers these statuses in the platform's one shape ------------

ERROR_STATUSES = ("400", "401", "403", "404", "409", "413", "415", "422", "429", "503")
ERROR_RESPONSE = {"$ref": "#/components/responses/Error"}
RESPONSES = {
    "Error": {
        "description": "An error in the platform's one shape.",
        "content": {JSON: {"schema": ref("Error")}},
    }
}

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
}

# -- operations ----------------------------------------------------------------------------


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


# -- tags: the document's sections, in the order Swagger UI shows them ---------------------

HAPPO_IMG = "Happo Image API"
HAPPO_REP = "Happo reports API"
PROGIMAGE = "Progimage"
HAUTAI_TAG = "Haut.ai-style"
HOST = "Hash file host"
ACC = "Accounts and credentials"
OPS = "Operations"

TAGS = [
    {"name": HAPPO_IMG, "description": "Happo's Image API: signed uploads of screenshots."},
    {
        "name": HAPPO_REP,
        "description": "Happo's reports API, the endpoints its clients call "
        "outside the reference, and the report pages.",
    },
    {"name": PROGIMAGE, "description": "Progimage: OAuth 2.0 and image processing."},
    {"name": HAUTAI_TAG, "description": "Haut.ai-style companies, datasets, subjects, images."},
    {"name": HOST, "description": "The hash file host: uploads by content, served by hash."},
    {"name": ACC, "description": "The caller, API credentials and the account pages."},
    {"name": OPS, "description": "The gateway's own health, readiness and this reference."},
]
