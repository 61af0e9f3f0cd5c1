"""Ingest's routes: each dialect registers its own (the Happo Image API, the hash file host,
Progimage, the Haut.ai-style API)."""

from aiohttp import web

from services.ingest.happo import routes as happo
from services.ingest.hashhost import routes as hashhost
from services.ingest.hautai import routes as hautai
from services.ingest.progimage import routes as progimage


def setup_routes(app: web.Application) -> None:
    """Register every dialect's routes on ``app`` (health routes are added by ``create_app``)."""
    happo.setup_routes(app)
    progimage.setup_routes(app)
    hashhost.setup_routes(app)
    hautai.setup_routes(app)
