"""Credentials: resolving one to its principal (for the gateway), and the key pairs and bearer
tokens an account issues, lists and revokes."""

from __future__ import annotations

import uuid

import asyncpg

from services.auth import domain, repo
from shared import errors
from shared.http import Principal


class Credentials:
    """Resolve, issue, list and revoke credentials."""

    def __init__(self, pool: asyncpg.Pool, box: domain.SecretBox, jwt_leeway: int) -> None:
        self.pool = pool
        self.box = box
        self.jwt_leeway = jwt_leeway

    async def resolve(self, credential: domain.Credential) -> Principal:
        """The principal ``credential`` stands for (recording its use); 401 when it is unknown,
        revoked, expired or does not verify."""
        async with self.pool.acquire() as conn:
            kind, owner = await self._owner_of(conn, credential)
        return Principal(
            kind=kind,
            account_id=str(owner.account_id),
            user_id=str(owner.user_id),
            credential_id=str(owner.credential_id),
        )

    async def _owner_of(
        self, conn: asyncpg.Connection, credential: domain.Credential
    ) -> tuple[str, repo.CredentialOwner]:
        if isinstance(credential, domain.BasicCredential | domain.JwtCredential):
            row = (
                await repo.live_api_key(conn, credential.key)
                if domain.is_api_key(credential.key)
                else None
            )
            if row is None:
                raise errors.BadCredentials("Invalid API key or secret")
            secret = self.box.open(row.secret_encrypted, row.id.bytes)
            if isinstance(credential, domain.BasicCredential):
                if not domain.secrets_equal(secret, credential.secret):
                    raise errors.BadCredentials("Invalid API key or secret")
                kind = "basic"
            else:
                domain.verify_jwt(credential.token, row.key, secret, leeway=self.jwt_leeway)
                kind = "jwt"
            await repo.touch(conn, "api_keys", row.id)
            return kind, repo.CredentialOwner(row.account_id, row.user_id, row.id)
        if isinstance(credential, domain.TokenCredential):
            owner = await repo.live_token(conn, domain.digest(credential.token))
            if owner is None:
                raise errors.BadCredentials("Unknown or invalidated token")
            await repo.touch(conn, "api_tokens", owner.credential_id)
            return "token", owner
        if isinstance(credential, domain.LoginCredential):
            owner = await repo.live_login_token(conn, domain.digest(credential.token))
            if owner is None:
                raise errors.BadCredentials("Unknown, expired or revoked access token")
            await repo.touch(conn, "login_tokens", owner.credential_id)
            return "token", owner
        if isinstance(credential, domain.OAuthCredential):
            owner = await repo.live_oauth_token(conn, domain.digest(credential.token))
            if owner is None:
                raise errors.BadCredentials("Unknown, expired or revoked access token")
            await repo.touch(conn, "oauth_tokens", owner.credential_id)
            return "oauth", owner
        owner = await repo.live_session(conn, domain.digest(credential.token))
        if owner is None:
            raise errors.BadCredentials("Session expired or signed out")
        return "session", owner

    async def user(self, user_id: uuid.UUID) -> repo.User | None:
        """The user ``user_id``, if they still exist."""
        async with self.pool.acquire() as conn:
            return await repo.user_by_id(conn, user_id)

    async def of_account(self, account_id: uuid.UUID) -> dict[str, list[dict]]:
        """The account's key pairs and tokens, newest first, without secrets."""
        async with self.pool.acquire() as conn:
            return await repo.credentials_of(conn, account_id)

    async def issue(self, user: repo.User, kind: str, name: str) -> dict:
        """A new key pair (``kind`` "key") or bearer token for ``user``, as shown once."""
        async with self.pool.acquire() as conn:
            if kind == "key":
                key_id, key, secret = await repo.issue_key_pair(conn, self.box, user, name)
                return {"id": str(key_id), "kind": "api_key", "api_key": key, "api_secret": secret}
            token_id, token = await repo.issue_token(conn, user, name)
            return {"id": str(token_id), "kind": "token", "token": token}

    async def revoke(self, account_id: uuid.UUID, credential_id: uuid.UUID) -> str:
        """Revoke the account's key pair, token or session (published as
        ``credential.revoked``); returns its kind; 404 when the account has no such live one."""
        async with self.pool.acquire() as conn, conn.transaction():
            kind = await repo.revoke_credential(conn, account_id, credential_id)
        if kind is None:
            raise errors.NotFound("No such live credential in this account")
        return kind
