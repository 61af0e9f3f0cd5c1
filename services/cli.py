"""The operator CLI, ``darkroom``: prepare the platform, manage accounts, OAuth clients,
commit-status integrations, webhooks and dead letters, sign Happo JWTs.

It talks to the database directly with the same configuration the services read (environment,
``*_FILE`` or ``var/secrets/``), so it works whether the stack is running or not.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import secrets
import shlex
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import asyncpg

from services.auth import domain as auth_domain
from services.auth import oauth as auth_oauth
from services.auth import repo as auth_repo
from services.auth.config import AuthConfig
from services.ingest.consumers import ANALYSIS_CONSUMER
from services.processing.consumers import ANALYSES_CONSUMER, COMPARISONS_CONSUMER
from services.reports.consumers import (
    DIFFS_CONSUMER,
    MAIL_CONSUMER,
    SCHEDULED_CONSUMER,
    WEBHOOKS_CONSUMER,
)
from services.reports.statuses import domain as status_domain
from services.reports.statuses import integrations as status_integrations
from services.reports.webhooks import domain as webhook_domain
from services.reports.webhooks import endpoints as webhook_endpoints
from shared import db
from shared.config import (
    SERVICES,
    CommonConfig,
    ConfigError,
    RemoteFetchConfig,
    SecretsConfig,
    ServersConfig,
    load,
)
from shared.errors import DarkroomError
from shared.events import Broker
from shared.sealing import SecretBox

#: Every durable consumer, each with a dead-letter queue the operator can inspect.
CONSUMERS = (
    ANALYSIS_CONSUMER,
    ANALYSES_CONSUMER,
    COMPARISONS_CONSUMER,
    SCHEDULED_CONSUMER,
    DIFFS_CONSUMER,
    MAIL_CONSUMER,
    WEBHOOKS_CONSUMER,
)

#: Where ``--format env`` puts each field of a command's answer: variables a shell can ``eval``.
ENV_NAMES = {
    "account_id": "DARKROOM_ACCOUNT_ID",
    "user_id": "DARKROOM_USER_ID",
    "api_key": "DARKROOM_API_KEY",
    "api_secret": "DARKROOM_API_SECRET",
    "token": "DARKROOM_TOKEN",
    "client_id": "DARKROOM_CLIENT_ID",
    "client_secret": "DARKROOM_CLIENT_SECRET",
}

#: Secrets ``darkroom secrets`` generates when missing: variable → generator.
GENERATED_SECRETS = {
    "DARKROOM_INTERNAL_KEY": lambda: secrets.token_urlsafe(48),
    "DARKROOM_SECRETS_KEY": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    "DARKROOM_SIGNING_KEY": lambda: secrets.token_urlsafe(48),
}


class CommandError(Exception):
    """A failure to report on one line."""


def _services_root() -> Path:
    return Path(__file__).parent


async def _check(config: ServersConfig) -> None:
    try:
        conn = await asyncpg.connect(config.database_url.rsplit("/", 1)[0] + "/postgres", timeout=5)
        await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise CommandError(
            f"PostgreSQL at {db.redact_dsn(config.database_url)} is not answering ({exc})"
        ) from exc
    try:
        connection = await aio_pika.connect(config.amqp_url, timeout=5)
        await connection.close()
    except (OSError, TimeoutError) as exc:
        raise CommandError(
            f"RabbitMQ at {db.redact_dsn(config.amqp_url)} is not answering ({exc})"
        ) from exc


async def _migrate(config: ServersConfig) -> dict[str, list[str]]:
    created = await db.ensure_database(config.database_url)
    conn = await db.connect(config.database_url)
    try:
        applied = {"database_created": [str(created)]}
        for service in SERVICES:
            applied[service] = await db.migrate(
                conn, service, _services_root() / service / "migrations"
            )
        return applied
    finally:
        await conn.close()


async def _create_account(config: AuthConfig, name: str, email: str, password: str) -> dict:
    fields = auth_domain.validate_sign_up(name, email, password)
    box = auth_domain.SecretBox(config.secrets_key)
    password_hash = await asyncio.to_thread(auth_domain.hash_password, fields.password)
    await db.ensure_database(config.database_url)
    conn = await db.connect(config.database_url, "auth")
    try:
        await db.migrate(conn, "auth", _services_root() / "auth" / "migrations")
        async with conn.transaction():
            user = await auth_repo.create_account(
                conn, name=fields.name, email=fields.email, password_hash=password_hash
            )
            _key_id, api_key, api_secret = await auth_repo.issue_key_pair(conn, box, user)
            _token_id, token = await auth_repo.issue_token(conn, user)
    except asyncpg.UniqueViolationError as exc:
        raise CommandError(f"an account with e-mail {fields.email} already exists") from exc
    finally:
        await conn.close()
    return {
        "account_id": str(user.account_id),
        "user_id": str(user.id),
        "api_key": api_key,
        "api_secret": api_secret,
        "token": token,
    }


async def _create_oauth_client(
    config: ServersConfig, account_id: str, redirect_uri: str, name: str
) -> dict:
    account = _account_uuid(account_id)
    redirect_uri = auth_oauth.validate_redirect_uri(redirect_uri)
    # The consent page names the application: without a name it would show the raw client id,
    # so the host people will be sent back to stands in for one.
    name = name.strip() or urlsplit(redirect_uri).netloc
    if len(name) > 200:
        raise CommandError("--name must be at most 200 characters")
    await db.ensure_database(config.database_url)
    conn = await db.connect(config.database_url, "auth")
    try:
        await db.migrate(conn, "auth", _services_root() / "auth" / "migrations")
        if not await auth_repo.account_exists(conn, account):
            raise CommandError(f"no account {account}")
        _client_pk, client_id, client_secret = await auth_repo.create_oauth_client(
            conn, account_id=account, redirect_uri=redirect_uri, name=name
        )
    finally:
        await conn.close()
    return {"client_id": client_id, "client_secret": client_secret}


@dataclasses.dataclass(frozen=True)
class _SealingConfig(ServersConfig, SecretsConfig):
    """What ``integration create`` reads: the servers and the key that seals tokens."""


@dataclasses.dataclass(frozen=True)
class _WebhookConfig(RemoteFetchConfig, SecretsConfig):
    """What ``webhook create`` reads: the servers, the key that seals secrets, and the one
    SSRF policy (``DARKROOM_REMOTE_ALLOW_NETWORKS``) its URL is checked against."""


def _account_uuid(account_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(account_id)
    except ValueError as exc:
        raise CommandError(f"--account must be an account id (a UUID), not {account_id!r}") from exc


async def _reports_of_account(config: ServersConfig, account_id: str) -> asyncpg.Connection:
    """A connection on reports's schema (migrated), once the account is found in auth's."""
    account = str(_account_uuid(account_id))
    await db.ensure_database(config.database_url)
    conn = await db.connect(config.database_url, "auth")
    try:
        await db.migrate(conn, "auth", _services_root() / "auth" / "migrations")
        if not await auth_repo.account_exists(conn, uuid.UUID(account)):
            raise CommandError(f"no account {account}")
    finally:
        await conn.close()
    conn = await db.connect(config.database_url, "reports")
    try:
        await db.migrate(conn, "reports", _services_root() / "reports" / "migrations")
    except BaseException:
        await conn.close()
        raise
    return conn


async def _integration(config: ServersConfig, args: argparse.Namespace) -> object:
    """``integration create|list|delete``: an account's commit-status integrations, in
    reports's schema (the account is checked in auth's)."""
    account = str(_account_uuid(args.account))
    conn = await _reports_of_account(config, account)
    try:
        if args.action == "create":
            assert isinstance(config, SecretsConfig)
            created = await status_integrations.create(
                conn,
                SecretBox(config.secrets_key),
                account,
                provider=args.provider,
                base_url=args.base_url,
                token=args.token,
                project=args.project,
                name=args.name,
            )
            return created.to_api()
        if args.action == "list":
            found = await status_integrations.listed(conn, account)
            return {"integrations": [each.to_api() for each in found]}
        await status_integrations.delete(conn, account, args.id)
        return {"deleted": args.id}
    finally:
        await conn.close()


async def _webhook(config: ServersConfig, args: argparse.Namespace) -> object:
    """``webhook create|list|delete|enable|deliveries|redeliver``: an account's webhook
    endpoints and their deliveries, in reports's schema (the account is checked in auth's)."""
    account = str(_account_uuid(args.account))
    conn = await _reports_of_account(config, account)
    try:
        if args.action == "create":
            assert isinstance(config, _WebhookConfig)
            return await webhook_endpoints.create(
                conn,
                SecretBox(config.secrets_key),
                account,
                url=args.url,
                events=args.events,
                allowed_networks=config.remote_allow_networks,
            )
        if args.action == "list":
            return {"webhooks": await webhook_endpoints.listed(conn, account)}
        if args.action == "delete":
            await webhook_endpoints.delete(conn, account, args.id)
            return {"deleted": args.id}
        if args.action == "enable":
            return await webhook_endpoints.enable(conn, account, args.id)
        if args.action == "deliveries":
            return {"deliveries": await webhook_endpoints.deliveries(conn, account, args.id)}
        return await webhook_endpoints.redeliver(conn, account, args.delivery)
    finally:
        await conn.close()


async def _dead_letters(
    config: CommonConfig, action: str, consumers: list[str], event_ids: list[str]
) -> dict:
    broker = await Broker.connect(config.amqp_url, config.exchange, timeout=5)
    try:
        if action == "list":
            found = []
            for consumer in consumers:
                found += [letter.summary() for letter in await broker.dead_letters(consumer)]
            return {"dead_letters": found}
        replayed = {}
        for consumer in consumers:
            ids = await broker.replay_dead_letters(consumer, event_ids or None)
            if ids:
                replayed[consumer] = ids
        return {"replayed": replayed}
    finally:
        await broker.close()


def _happo_jwt(key: str | None, secret: str | None) -> str:
    if not key or not secret:
        raise CommandError(
            "give --key and --secret, or set DARKROOM_API_KEY and DARKROOM_API_SECRET"
            ' (`eval "$(darkroom account create … --format env)"` does)'
        )
    return auth_domain.sign_jwt(key, secret)


def _as_env(result: dict) -> str:
    """``export NAME=value`` lines, quoted for any POSIX shell."""
    return "\n".join(f"export {ENV_NAMES[k]}={shlex.quote(str(v))}" for k, v in result.items())


def _generate_secrets(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    written = []
    for name, generate in GENERATED_SECRETS.items():
        path = folder / name.lower()
        if not path.exists():
            path.write_text(generate() + "\n")
            path.chmod(0o600)
            written.append(name)
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darkroom", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="check that PostgreSQL and RabbitMQ answer")
    commands.add_parser("migrate", help="create the database if missing; apply every migration")
    secrets_cmd = commands.add_parser("secrets", help="generate missing secrets into a folder")
    secrets_cmd.add_argument("--dir", help="default: DARKROOM_SECRETS_DIR or var/secrets")
    account = commands.add_parser("account", help="manage accounts")
    account_commands = account.add_subparsers(dest="action", required=True)
    create = account_commands.add_parser("create", help="create an account with credentials")
    create.add_argument("--name", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    _format_option(create)
    oauth_client = commands.add_parser("oauth-client", help="manage OAuth 2.0 applications")
    oauth_commands = oauth_client.add_subparsers(dest="action", required=True)
    register = oauth_commands.add_parser(
        "create", help="register an application; prints its client_id and client_secret"
    )
    register.add_argument("--account", required=True, help="id of the owning account")
    register.add_argument("--redirect-uri", required=True, help="the one allowed redirect URI")
    register.add_argument(
        "--name", default="", help="shown on the consent page (default: the redirect URI's host)"
    )
    _format_option(register)
    _integration_parser(commands)
    _webhook_parser(commands)
    jwt = commands.add_parser(
        "happo-jwt", help="print a Happo JWT (HS256, kid = key, payload {key}) for curl"
    )
    # From the environment by default, so the secret needs no place on a command line.
    jwt.add_argument(
        "--key", default=os.environ.get("DARKROOM_API_KEY"), help="default: $DARKROOM_API_KEY"
    )
    jwt.add_argument(
        "--secret",
        default=os.environ.get("DARKROOM_API_SECRET"),
        help="default: $DARKROOM_API_SECRET",
    )
    dead = commands.add_parser(
        "dead-letters", help="list or replay events a consumer gave up on (poison messages)"
    )
    dead_commands = dead.add_subparsers(dest="action", required=True)
    for action, text in (
        ("list", "print the dead letters without removing them"),
        ("replay", "send dead letters back to their consumer's queue, once the cause is fixed"),
    ):
        sub = dead_commands.add_parser(action, help=text)
        sub.add_argument(
            "--consumer",
            action="append",
            choices=CONSUMERS,
            help="only this consumer (repeatable; default: every consumer)",
        )
        if action == "replay":
            sub.add_argument(
                "--event", action="append", default=[], help="only this event id (repeatable)"
            )
    return parser


def _integration_parser(commands: argparse._SubParsersAction) -> None:
    integration = commands.add_parser(
        "integration", help="manage commit-status integrations (GitHub, GitLab, Gitea)"
    )
    actions = integration.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="post an account's commit statuses to a provider; prints it as JSON"
    )
    create.add_argument("--account", required=True, help="id of the owning account")
    create.add_argument("--provider", required=True, choices=status_domain.PROVIDERS)
    create.add_argument(
        "--base-url",
        required=True,
        help="the provider's web address: https://github.com, a GitHub Enterprise, GitLab or"
        " Gitea/Forgejo host (pull-request links must be on it)",
    )
    create.add_argument(
        "--token", required=True, help="a token that may post commit statuses (sealed at rest)"
    )
    create.add_argument("--project", help="only this Happo project's statuses (default: all)")
    create.add_argument(
        "--name", help="the status's name (default: Happo, or Happo (<project>) with --project)"
    )
    listing = actions.add_parser("list", help="the account's integrations (never their tokens)")
    listing.add_argument("--account", required=True)
    delete = actions.add_parser("delete", help="delete an integration and its statuses")
    delete.add_argument("--account", required=True)
    delete.add_argument("--id", required=True, type=int)


def _webhook_parser(commands: argparse._SubParsersAction) -> None:
    webhook = commands.add_parser(
        "webhook", help="manage webhook endpoints (Standard Webhooks, signed) and deliveries"
    )
    actions = webhook.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="send an account's events to a URL; prints it as JSON with its secret"
    )
    create.add_argument("--account", required=True, help="id of the owning account")
    create.add_argument(
        "--url", required=True, help="the receiver (http or https; refused addresses: see README)"
    )
    create.add_argument(
        "--events",
        required=True,
        help=f"comma-separated event types: {','.join(webhook_domain.EVENT_TYPES)}",
    )
    listing = actions.add_parser(
        "list", help="the account's webhooks: enabled or why not, last attempt (never secrets)"
    )
    listing.add_argument("--account", required=True)
    for action, text in (
        ("delete", "delete a webhook and its deliveries"),
        ("enable", "enable a disabled webhook again; its waiting deliveries go out"),
        ("deliveries", "a webhook's newest deliveries, each with every attempt"),
    ):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("--account", required=True)
        sub.add_argument("--id", required=True, type=int, help="the webhook's id")
    redeliver = actions.add_parser("redeliver", help="send one delivery again (same webhook-id)")
    redeliver.add_argument("--account", required=True)
    redeliver.add_argument("--delivery", required=True, type=int, help="the delivery's id")


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("json", "env"),
        default="json",
        help='json (default), or env: `export DARKROOM_…=…` lines for `eval "$(…)"`',
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``darkroom`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "secrets":
            folder = Path(args.dir or load(ServersConfig).secrets_dir)
            result: object = {"generated": _generate_secrets(folder)}
        elif args.command == "check":
            asyncio.run(_check(load(ServersConfig)))
            result = {"postgres": "ok", "rabbitmq": "ok"}
        elif args.command == "migrate":
            result = asyncio.run(_migrate(load(ServersConfig)))
        elif args.command == "dead-letters":
            result = asyncio.run(
                _dead_letters(
                    load(CommonConfig),
                    args.action,
                    args.consumer or list(CONSUMERS),
                    getattr(args, "event", []),
                )
            )
        elif args.command == "integration":
            config = load(_SealingConfig if args.action == "create" else ServersConfig)
            result = asyncio.run(_integration(config, args))
        elif args.command == "webhook":
            config = load(_WebhookConfig if args.action == "create" else ServersConfig)
            result = asyncio.run(_webhook(config, args))
        elif args.command == "happo-jwt":
            result = _happo_jwt(args.key, args.secret)
        elif args.command == "oauth-client":
            result = asyncio.run(
                _create_oauth_client(
                    load(ServersConfig), args.account, args.redirect_uri, args.name
                )
            )
        else:
            config = load(AuthConfig)
            result = asyncio.run(_create_account(config, args.name, args.email, args.password))
    except (CommandError, ConfigError, ValueError) as exc:
        print(f"darkroom: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except (DarkroomError, OSError, asyncpg.PostgresError) as exc:
        # Some connection errors carry no message: their type is then the only clue.
        print(f"darkroom: {exc or type(exc).__name__}", file=sys.stderr)
        raise SystemExit(1) from None
    if isinstance(result, str):
        print(result)
    elif getattr(args, "format", "json") == "env":
        print(_as_env(result))
    else:
        print(json.dumps(result, indent=2))
