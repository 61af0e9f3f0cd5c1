"""Structured logging with structlog; the request id rides in a context variable."""

from __future__ import annotations

import logging
import random
import sys
from contextvars import ContextVar

import structlog

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The request id of the work in progress (HTTP request or event), if any."""
    return request_id_var.get()


def new_request_id() -> str:
    """A fresh request id for work that did not arrive with one: 32 hex digits, as unique as
    a UUID4's. Not a secret, so drawn from ``random`` (seeded from the OS at start and after a
    fork) rather than the OS on every request (one system call each)."""
    return f"{random.getrandbits(128):032x}"


def _add_request_id(_logger: object, _name: str, event: dict) -> dict:
    rid = request_id_var.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    return event


def configure(level: str = "info", fmt: str = "auto", process: str = "darkroom") -> None:
    """Configure structlog (and the stdlib root logger) once per process.

    ``fmt`` is ``json``, ``console`` or ``auto``: JSON unless stderr is a terminal.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    processors: list = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process)
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger bound to ``name``."""
    return structlog.get_logger(name)
