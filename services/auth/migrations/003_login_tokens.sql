-- API sign-in of the Haut.ai dialect (POST /api/v1/login/ with e-mail and password): one row
-- per access/refresh pair, both shown once and stored as SHA-256. A refresh rotates the pair
-- (a new row in the same family); presenting a rotated refresh token again is a replay and
-- revokes the whole family.
CREATE TABLE login_tokens (
    id uuid PRIMARY KEY,
    family_id uuid NOT NULL,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access_hash bytea NOT NULL UNIQUE,
    refresh_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    refresh_expires_at timestamptz NOT NULL,
    rotated_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz
);
CREATE INDEX login_tokens_family ON login_tokens (family_id) WHERE revoked_at IS NULL;
