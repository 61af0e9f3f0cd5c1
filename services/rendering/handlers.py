"""Rendering's HTTP handlers: the Happo assets endpoints (packages) and the PUT to a signed
package upload URL. Each parses HTTP, calls one use case and answers.

``GET /api/snap-requests/assets-data/:hash`` and ``GET …/assets/:hash/signed-url`` answer
``{path}`` for a package the account holds; the path is what the client echoes back as
``staticPackage`` / ``assetsPackage``.
"""

from __future__ import annotations

import time

from aiohttp import web

from services.rendering import domain
from services.rendering.config import RenderingConfig
from services.rendering.domain import Package
from services.rendering.packages import Packages
from shared import errors
from shared.http import read_body, read_multipart, require_account

CONFIG = web.AppKey("rendering.config", RenderingConfig)
PACKAGES = web.AppKey("rendering.packages", Packages)

#: The multipart field of ``POST /api/snap-requests/assets/:hash`` (``payload.zip``).
_PAYLOAD_FIELD = "payload"


def _found(package: Package) -> dict:
    return {
        "path": package.path,
        "uploadedAt": package.uploaded_at.isoformat().replace("+00:00", "Z"),
    }


async def assets_data(request: web.Request) -> web.Response:
    """``GET /api/snap-requests/assets-data/:hash`` → ``{path, uploadedAt}``, 404 when the
    account holds no package under ``hash`` (the client then uploads it)."""
    principal = require_account(request)
    md5 = domain.parse_package_hash(request.match_info["hash"])
    package = await request.app[PACKAGES].find(principal.account_id, md5)
    if package is None:
        raise errors.NotFound("No package under this hash; upload it")
    return web.json_response(_found(package))


async def upload_assets(request: web.Request) -> web.Response:
    """``POST /api/snap-requests/assets/:hash`` (multipart, the archive in ``payload``) →
    ``{path}``."""
    principal = require_account(request)
    config = request.app[CONFIG]
    md5 = domain.parse_package_hash(request.match_info["hash"])
    form = await read_multipart(request, _PAYLOAD_FIELD, config.max_package_bytes)
    if not form.file:
        raise errors.BadRequest("Send the package archive in the `payload` field")
    package = await request.app[PACKAGES].store_package(principal.account_id, md5, form.file)
    return web.json_response({"path": package.path})


async def signed_url(request: web.Request) -> web.Response:
    """``GET /api/snap-requests/assets/:hash/signed-url[?format=zstd]`` → ``{path}`` when the
    package is stored, else ``{signedUrl, contentType}``: one PUT of the archive, without
    Authorization (the URL is the grant), before it expires."""
    principal = require_account(request)
    config = request.app[CONFIG]
    md5 = domain.parse_package_hash(request.match_info["hash"])
    package = await request.app[PACKAGES].find(principal.account_id, md5)
    if package is not None:
        return web.json_response({"path": package.path})
    token = domain.sign_upload_grant(
        config.signing_key,
        principal.account_id,
        md5,
        int(time.time()) + config.upload_url_seconds,
    )
    zstd = request.query.get("format") == "zstd"
    return web.json_response(
        {
            "signedUrl": config.public(f"/api/package-uploads/{token}"),
            "contentType": "application/zstd" if zstd else "application/zip",
        }
    )


async def put_package(request: web.Request) -> web.Response:
    """``PUT /api/package-uploads/:token`` (the raw archive) → 200 with ``ETag: "<md5>"``, as
    an object store answers (happo 6 stops unless the ETag holds the body's md5)."""
    config = request.app[CONFIG]
    grant = domain.verify_upload_grant(config.signing_key, request.match_info["token"], time.time())
    data = await read_body(request, config.max_package_bytes)
    if not data:
        raise errors.BadRequest("The body is empty: send the archive's bytes")
    package = await request.app[PACKAGES].store_with_grant(grant, data)
    return web.json_response({"path": package.path}, headers={"ETag": f'"{package.md5}"'})


async def finalize_signed_url(request: web.Request) -> web.Response:
    """``POST /api/snap-requests/assets/:hash/signed-url/finalize`` → ``{path}`` once the PUT
    stored the package; 404 before."""
    principal = require_account(request)
    md5 = domain.parse_package_hash(request.match_info["hash"])
    package = await request.app[PACKAGES].find(principal.account_id, md5)
    if package is None:
        raise errors.NotFound("No package was uploaded to the signed URL of this hash")
    return web.json_response({"path": package.path})
