"""OAuth 2.0 grants (Progimage dialect): a user's consent becomes a code, a code or a refresh
token becomes an access/refresh pair, and a client revokes what it holds. The protocol's rules
and answers are in ``oauth.py``; the storage steps and their transactions are here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from services.auth import domain, oauth, refreshing, repo
from services.auth.config import AuthConfig
from services.auth.refreshing import RefreshOutcome

#: How the token endpoint words each refusal of a refresh token (``invalid_grant``).
_REFUSALS = {
    RefreshOutcome.UNKNOWN: "Unknown refresh token",
    RefreshOutcome.REPLAYED: "The refresh token was already used; its grant is revoked",
    RefreshOutcome.REVOKED: "The refresh token is revoked or expired",
    RefreshOutcome.EXPIRED: "The refresh token is revoked or expired",
}

_OAUTH_PAIRS = refreshing.PairStore[oauth.TokenPair](
    lock=repo.lock_oauth_refresh,
    revoke_family=lambda conn, pair: repo.revoke_oauth_grant(conn, pair.code_id),
    retire=lambda conn, pair: repo.rotate_oauth_pair(conn, pair.id),
)


@dataclass(frozen=True)
class TokenOutcome:
    """The token endpoint's answer (the pair, or the error to send) and the pairs the exchange
    revoked (the gateway evicts the first)."""

    answer: dict | oauth.OAuthError
    revoked: list[uuid.UUID]


class Grants:
    """Codes, token exchanges and revocation of the authorization server."""

    def __init__(self, pool: asyncpg.Pool, config: AuthConfig) -> None:
        self.pool = pool
        self.code_lifetime = timedelta(seconds=config.oauth_code_seconds)
        self.token_seconds = config.oauth_token_seconds
        self.refresh_lifetime = timedelta(seconds=config.oauth_refresh_seconds)

    async def client(self, client_id: str) -> oauth.Client | None:
        """The live application with ``client_id``, if any."""
        async with self.pool.acquire() as conn:
            return await repo.live_oauth_client(conn, client_id)

    async def approve(
        self, client: oauth.Client, user: repo.User, authorization: oauth.AuthorizationRequest
    ) -> str:
        """``user`` consented to ``authorization``: a new code for the client's redirect."""
        async with self.pool.acquire() as conn:
            return await repo.create_oauth_code(
                conn,
                client_pk=client.id,
                user_id=user.id,
                redirect_uri=authorization.redirect_uri,
                code_challenge=authorization.code_challenge,
                lifetime=self.code_lifetime,
            )

    async def token(self, authorization: str | None, params: dict[str, str]) -> TokenOutcome:
        """Authenticate the client (``Authorization`` header or body) and exchange its code or
        refresh token; raises :class:`oauth.OAuthError` before anything is stored."""
        client = await self._authenticated_client(authorization, params)
        grant_type = oauth.grant_type_of(params)
        async with self.pool.acquire() as conn:
            if grant_type == "authorization_code":
                return await self._redeem_code(conn, client, params)
            oauth.check_scope(params)
            return await self._refresh(conn, client, params)

    async def revoke(self, authorization: str | None, params: dict[str, str]) -> list[uuid.UUID]:
        """Revoke the grant of the client's access or refresh token ``params["token"]``; returns
        the pairs revoked (none for a token that is unknown or another client's)."""
        client = await self._authenticated_client(authorization, params)
        value = params.get("token")
        if not value:
            raise oauth.OAuthError("invalid_request", "token is required")
        async with self.pool.acquire() as conn, conn.transaction():
            pair = await repo.oauth_pair_of(conn, domain.digest(value))
            if pair is None or pair.client_pk != client.id:
                return []
            return await repo.revoke_oauth_grant(conn, pair.code_id)

    async def _authenticated_client(
        self, authorization: str | None, params: dict[str, str]
    ) -> oauth.Client:
        client_id, secret = oauth.client_credentials(authorization, params)
        return oauth.authenticate_client(await self.client(client_id), secret)

    async def _redeem_code(
        self, conn: asyncpg.Connection, client: oauth.Client, params: dict[str, str]
    ) -> TokenOutcome:
        # Errors are returned, not raised, inside the transaction: spending the code and
        # revoking a replayed code's tokens must commit even though the client gets an error.
        value = params.get("code")
        if not value:
            return TokenOutcome(oauth.OAuthError("invalid_request", "code is required"), [])
        async with conn.transaction():
            code = await repo.lock_oauth_code(conn, domain.digest(value))
            if code is None or code.client_pk != client.id:
                return TokenOutcome(
                    oauth.OAuthError("invalid_grant", "Unknown authorization code"), []
                )
            if code.used_at is not None:
                revoked = await repo.revoke_oauth_grant(conn, code.id)
                message = "The authorization code was already used; its tokens are revoked"
                return TokenOutcome(oauth.OAuthError("invalid_grant", message), revoked)
            await repo.spend_oauth_code(conn, code.id)
            try:
                oauth.check_code(code, datetime.now(UTC), params)
            except oauth.OAuthError as exc:
                return TokenOutcome(exc, [])
            answer = await self._issue(conn, client, code.account_id, code.user_id, code.id)
        return TokenOutcome(answer, [])

    async def _refresh(
        self, conn: asyncpg.Connection, client: oauth.Client, params: dict[str, str]
    ) -> TokenOutcome:
        value = params.get("refresh_token")
        if not value:
            return TokenOutcome(
                oauth.OAuthError("invalid_request", "refresh_token is required"), []
            )
        async with conn.transaction():
            rotation = await refreshing.rotate(
                conn, _OAUTH_PAIRS, value, belongs=lambda pair: pair.client_pk == client.id
            )
            if rotation.outcome is not RefreshOutcome.ROTATED:
                error = oauth.OAuthError("invalid_grant", _REFUSALS[rotation.outcome])
                return TokenOutcome(error, rotation.revoked)
            pair = rotation.pair
            assert pair is not None
            answer = await self._issue(conn, client, pair.account_id, pair.user_id, pair.code_id)
        return TokenOutcome(answer, rotation.revoked)

    async def _issue(
        self,
        conn: asyncpg.Connection,
        client: oauth.Client,
        account_id: uuid.UUID,
        user_id: uuid.UUID,
        code_id: uuid.UUID,
    ) -> dict:
        _token_id, access, refresh, created_at = await repo.issue_oauth_tokens(
            conn,
            client_pk=client.id,
            account_id=account_id,
            user_id=user_id,
            code_id=code_id,
            lifetime=timedelta(seconds=self.token_seconds),
            refresh_lifetime=self.refresh_lifetime,
        )
        return oauth.token_answer(access, refresh, created_at, self.token_seconds)
