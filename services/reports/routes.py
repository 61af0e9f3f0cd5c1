"""Reports's routes."""

from aiohttp import web


def setup_routes(app: web.Application) -> None:
    """Register reports's routes on ``app`` (health routes are added by ``create_app``)."""
