-- Derivatives computed and stored under their key (shared.derivatives.derivative_key): one row
-- per key, written in the transaction that announces derivative.computed. The bytes live in
-- the blob store at `key`.
CREATE TABLE derivatives (
    key text PRIMARY KEY,
    original_sha256 text NOT NULL CHECK (original_sha256 ~ '^[0-9a-f]{64}$'),
    canonical text NOT NULL,
    media_type text NOT NULL,
    bytes bigint NOT NULL,
    width int NOT NULL,
    height int NOT NULL,
    -- host:pid of the process that computed it, and how long the libvips job took.
    worker text NOT NULL,
    duration_ms int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Every derivative of an original, for when the original goes.
CREATE INDEX derivatives_original ON derivatives (original_sha256);
