"""Accounts and credentials: the caller, API keys and tokens, and the account pages."""

from __future__ import annotations

from gateway.openapi.common import (
    ACC,
    ANY,
    ANY_JSON,
    FORM,
    HTML,
    KEYS,
    NULLABLE_STR,
    OBJ,
    PAGE,
    Op,
    S,
    obj,
    t,
)

SCHEMAS: dict[str, dict] = {
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
}


OPERATIONS: list[Op] = [
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
    Op(
        "GET",
        "/keys/{credential_id}/revoke",
        ACC,
        "Asks before invalidating a credential (page)",
        PAGE,
        content=HTML,
    ),
    Op("POST", "/keys/{credential_id}/revoke", ACC, "Invalidate a credential (form)", PAGE, ok=303),
]
