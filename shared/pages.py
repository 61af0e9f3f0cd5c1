"""Server-rendered pages: Jinja2 with autoescaping, a shared base layout, no external assets,
and the anti-forgery token every form of a signed-in page carries."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from shared import errors, layout
from shared.http import InternalClient, Principal
from shared.logging import get_logger
from shared.signing import FORM, Signer

log = get_logger(__name__)

#: The form field the token travels in.
ANTI_FORGERY_FIELD = "csrf"


def form_token(signer: Signer, principal: Principal) -> str:
    """The anti-forgery token of the forms shown to a signed-in person ("" for anyone else).

    The services never see the session cookie (the gateway keeps cookies to itself and forwards
    the principal it resolved, signed), so the token is tied to what the gateway vouches for:
    the session's credential id and its user, signed by the ``form`` signer (the server-only
    key every service shares, so a page of one service may post to another: the layout's
    sign-out). It needs no storage, differs per sign-in, dies with the session, and another
    site can neither read nor compute it. The gateway's Origin check is the first line; this
    is the second.
    """
    if principal.kind != "session" or not principal.credential_id or not principal.user_id:
        return ""
    return signer.sign(f"{principal.credential_id}\0{principal.user_id}")


class Pages:
    """Renders a service's templates (its ``templates/`` folder, then the shared layout), each
    with the site navigation (:func:`shared.layout.navigation`) its template belongs under."""

    def __init__(self, service_templates: Path, signing_key: str) -> None:
        #: The one signer of this service's form tokens (forms never expire on their own: the
        #: token dies with the session it names).
        self.form_signer = Signer(FORM, signing_key)
        self.env = layout.environment(service_templates)

    def render(
        self,
        template: str,
        *,
        status: int = 200,
        principal: Principal | None = None,
        **context: Any,
    ) -> web.Response:
        """An HTML response of ``template`` with ``context``, and ``csrf``: the viewer's form
        token (see :func:`form_token`; "" when no ``principal`` is given)."""
        csrf = form_token(self.form_signer, principal) if principal is not None else ""
        html = self.env.get_template(template).render(
            {"nav": layout.navigation(template), **context}, csrf=csrf
        )
        return web.Response(
            text=html, status=status, content_type="text/html", headers=dict(layout.PAGE_HEADERS)
        )

    def check_form_token(self, principal: Principal, form: Mapping[str, Any]) -> None:
        """Raise :class:`~shared.errors.Forbidden` unless a session's form carries the token
        :meth:`render` gave its page (checked with the same key, so the two cannot disagree).

        Only sessions ride along on a forged cross-site post: a request with no session (an API
        credential, or nobody) has nothing to forge and passes.
        """
        if principal.kind != "session":
            return
        expected = form_token(self.form_signer, principal)
        sent = form.get(ANTI_FORGERY_FIELD)
        if (
            not expected
            or not isinstance(sent, str)
            or not hmac.compare_digest(expected.encode(), sent.encode())
        ):
            raise errors.Forbidden(
                "This form is out of date or did not come from our page: reload it and try again"
            )


#: How long a page waits for auth to name its viewer before showing the page without the name.
PAGE_USER_TIMEOUT = 3


async def page_user(
    internal: InternalClient, auth_url: str, principal: Principal
) -> dict[str, str] | None:
    """The person a page is shown to, as auth knows them (``{id, name, email}``), for the
    layout's header; ``None`` for nobody, or for a credential auth no longer knows.

    The one failure rule of every page: when auth cannot answer (down, slow, failing), the page
    is still shown, with a blank name: the gateway already vouched for the principal, so what
    the page lists is right; only the header's name is missing. A warning is logged.
    """
    if not principal.authenticated:
        return None
    try:
        status, body = await internal.call(
            "GET", auth_url, "/user", principal, timeout=PAGE_USER_TIMEOUT
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        status, body = 0, repr(exc)
    if status == 200 and isinstance(body, dict) and isinstance(body.get("email"), str):
        return {
            "id": str(body.get("id") or ""),
            "name": str(body.get("name") or ""),
            "email": body["email"],
        }
    if 400 <= status < 500:
        return None
    log.warning("pages.user_unknown", status=status)
    return {"id": "", "name": "", "email": ""}


def redirect(location: str) -> web.Response:
    """A 303 See Other to ``location`` (cookies may still be set on it)."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def safe_next(value: str | None, default: str = "/") -> str:
    """``value`` when it is a path on this site, else ``default`` (no open redirects)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default
