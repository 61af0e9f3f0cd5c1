-- OAuth 2.0 authorization server (the Progimage dialect): registered applications, one-time
-- authorization codes and the access/refresh token pairs issued from them.

-- An application belongs to an account. Its secret is only ever compared, never needed in
-- clear, so it is stored as SHA-256 (it carries 256 bits of entropy). Deleting an application
-- keeps the row (deleted_at) so its tokens stay attributable after they are revoked.
CREATE TABLE oauth_clients (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    client_id text NOT NULL UNIQUE,
    secret_hash bytea NOT NULL,
    name text NOT NULL DEFAULT '',
    redirect_uri text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX oauth_clients_account ON oauth_clients (account_id);

-- Codes are bearer secrets for their ten minutes: stored as SHA-256 like every token. used_at
-- stays set after the exchange so a second presentation is recognised and its tokens revoked.
CREATE TABLE oauth_codes (
    id uuid PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL UNIQUE,
    redirect_uri text NOT NULL,
    code_challenge text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);

-- One row per access/refresh pair. code_id names the grant: every pair refreshed from a code
-- keeps it, so a replayed code or refresh token can revoke the whole family. account_id is the
-- consenting user's account (whose resources the token reaches), not the application's.
CREATE TABLE oauth_tokens (
    id uuid PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_id uuid NOT NULL REFERENCES oauth_codes (id) ON DELETE CASCADE,
    access_hash bytea NOT NULL UNIQUE,
    refresh_hash bytea NOT NULL UNIQUE,
    scope text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    refresh_expires_at timestamptz NOT NULL,
    rotated_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz
);
CREATE INDEX oauth_tokens_code ON oauth_tokens (code_id);
CREATE INDEX oauth_tokens_client_live ON oauth_tokens (client_id) WHERE revoked_at IS NULL;
