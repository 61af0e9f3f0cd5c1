"""Progimage: OAuth 2.0 (served by auth) and the images API (served by ingest)."""

from __future__ import annotations

from gateway.openapi.common import (
    ANY,
    ANY_JSON,
    FORM,
    HTML,
    IMAGE,
    INT,
    NONE,
    OBJ,
    PAGE,
    PROGIMAGE,
    Op,
    S,
    array,
    obj,
    ref,
    t,
)

AUTH_SCHEMAS: dict[str, dict] = {
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
}


AUTH_OPERATIONS: list[Op] = [
    Op(
        "GET",
        "/oauth/authorize",
        PROGIMAGE,
        "OAuth 2.0 authorization: the consent page",
        PAGE,
        content=HTML,
        query=("client_id", "response_type", "redirect_uri", "state"),
    ),
    Op(
        "POST",
        "/oauth/authorize",
        PROGIMAGE,
        "OAuth 2.0 consent decision (form)",
        PAGE,
        body=OBJ,
        body_type=FORM,
        ok=302,
    ),
    Op(
        "POST",
        "/oauth/token",
        PROGIMAGE,
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
        PROGIMAGE,
        "OAuth 2.0 token revocation (RFC 7009)",
        NONE,
        body="RevokeRequest",
        body_type=FORM,
        content=ANY_JSON,
    ),
    Op("GET", "/applications", PROGIMAGE, "OAuth applications page", PAGE, content=HTML),
    Op(
        "POST",
        "/applications",
        PROGIMAGE,
        "Register an OAuth application (form)",
        PAGE,
        body=OBJ,
        body_type=FORM,
        content=HTML,
    ),
    Op(
        "POST",
        "/applications/{client_pk}/delete",
        PROGIMAGE,
        "Delete an OAuth application (form)",
        PAGE,
        ok=303,
    ),
]


SCHEMAS: dict[str, dict] = {
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
}


OPERATIONS: list[Op] = [
    Op(
        "POST",
        "/user/images",
        PROGIMAGE,
        "Upload and process images",
        ANY,
        body="ProcessRequest",
        ok=201,
        content="ProgimageAnswer",
    ),
    Op(
        "GET",
        "/user/images",
        PROGIMAGE,
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
        PROGIMAGE,
        "One of the caller's images through the process options, made on first request",
        ANY,
        content=IMAGE,
        query=("thumb_w", "thumb_h", "quality", "rotation", "filter", "round_corners", "format"),
    ),
    Op(
        "GET",
        "/uploads/image/file/{image_id}/{name}",
        PROGIMAGE,
        "A variant (file, thumb, mini) of a Progimage image",
        NONE,
        content=IMAGE,
    ),
]
