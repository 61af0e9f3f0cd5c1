"""Events auth publishes (payloads only grow; a breaking change is a new type)."""

#: ``{account_id, user_id, name}`` — an account and its first user were created.
ACCOUNT_CREATED = "account.created"

#: ``{credential_id, kind, account_id}`` — a key pair, token or session stopped being valid;
#: the gateway evicts it from its cache on receipt. ``kind`` is api_key, token, session,
#: oauth_token (an OAuth access/refresh pair; ``account_id`` is the consenting user's) or
#: login_token (an access/refresh pair of ``POST /api/v1/login/``).
CREDENTIAL_REVOKED = "credential.revoked"

#: Auth consumes no events yet.
CONSUMED: tuple[str, ...] = ()
