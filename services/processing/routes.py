"""Processing's routes."""

from aiohttp import web

from services.processing import handlers
from shared.derivatives import DERIVATIVES_PATH


def setup_routes(app: web.Application) -> None:
    """Register processing's routes on ``app`` (health routes are added by ``create_app``)."""
    app.router.add_post(DERIVATIVES_PATH, handlers.derivative)
