"""Processing's HTTP handlers (internal: the gateway never routes here): parse, call one use
case, answer."""

from __future__ import annotations

from aiohttp import web

from services.processing import domain
from services.processing.deriving import Derivations
from shared.http import read_json_object, unless_disconnected

#: The app's derivative use case (set while its worker threads are open).
DERIVATIONS = web.AppKey("processing.derivations", Derivations)

#: Largest request body: a derivative request is a few hundred bytes of JSON.
MAX_REQUEST_BYTES = 16 * 1024


async def derivative(request: web.Request) -> web.Response:
    """``POST /internal/derivatives {original: {sha256, key, media_type}, transform, key}``
    → 200 with the derivative's bytes (``Content-Type``; ``X-Image-Width``,
    ``X-Image-Height``; ``X-Derivative-Cached: 1`` when it had been made before), 422
    ``invalid_request`` when the original cannot become it, 503 when this replica is full.

    A caller that hangs up stops waiting (and the job is dropped when nobody else waits)."""
    body = await read_json_object(request, max_bytes=MAX_REQUEST_BYTES)
    wanted = domain.read_request(body)
    answer = await unless_disconnected(request, request.app[DERIVATIONS].obtain(wanted))
    return web.Response(
        body=answer.data,
        content_type=answer.media_type,
        headers={
            "X-Image-Width": str(answer.width),
            "X-Image-Height": str(answer.height),
            "X-Derivative-Cached": "1" if answer.cached else "0",
        },
    )
