"""Integrations: where an account's commit statuses go (create, list, delete). The token is
sealed at rest the moment it arrives, bound to the integration's id, and never shown again."""

from __future__ import annotations

import asyncpg

from services.reports.domain import parse_project
from services.reports.statuses import domain
from services.reports.statuses import repo as statuses_repo
from services.reports.statuses.domain import Integration
from shared import errors
from shared.sealing import SecretBox


def token_context(integration_id: int) -> bytes:
    """What a token is sealed bound to, so a sealed token moved to another row does not open."""
    return f"status-integration:{integration_id}".encode()


async def create(
    conn: asyncpg.Connection,
    box: SecretBox,
    account_id: str,
    *,
    provider: str,
    base_url: str,
    token: str,
    project: str | None = None,
    name: str | None = None,
) -> Integration:
    """An integration of the account (or of one of its projects); 422 for a bad value."""
    provider = domain.parse_provider(provider)
    base_url = domain.parse_base_url(base_url)
    token = domain.parse_token(token)
    if project is not None:
        project = parse_project(project)
    name = domain.parse_name(name, project)
    async with conn.transaction():
        integration_id = await statuses_repo.next_integration_id(conn)
        sealed = box.seal(token, token_context(integration_id))
        return await statuses_repo.create_integration(
            conn, integration_id, account_id, project, provider, base_url, name, sealed
        )


async def listed(conn: asyncpg.Connection, account_id: str) -> list[Integration]:
    """The account's integrations (a failing one says why)."""
    return await statuses_repo.integrations(conn, account_id)


async def delete(conn: asyncpg.Connection, account_id: str, integration_id: int) -> None:
    """Delete the account's integration; 404 for another account's or none."""
    if not await statuses_repo.delete_integration(conn, account_id, integration_id):
        raise errors.NotFound(f"No integration {integration_id}")
