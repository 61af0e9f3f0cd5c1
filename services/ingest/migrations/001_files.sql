-- Stored bytes, once per SHA-256 across all accounts. A row exists only while some record
-- (a hash-host file or a Happo image) references it; the bytes live in the blob store under
-- sha256/<2 hex>/<2 hex>/<sha256>.
CREATE TABLE blobs (
    sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size bigint NOT NULL,
    media_type text NOT NULL,
    width int,
    height int,
    frames int,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Hash-host files. An account holds a given content once; anonymous uploads each get their
-- own record and delete token (stored as SHA-256).
CREATE TABLE files (
    id uuid PRIMARY KEY,
    account_id uuid,
    sha256 text NOT NULL REFERENCES blobs (sha256),
    filename text NOT NULL,
    media_type text NOT NULL,
    delete_token_hash bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((account_id IS NULL) = (delete_token_hash IS NOT NULL))
);
CREATE UNIQUE INDEX files_account_sha256 ON files (account_id, sha256)
    WHERE account_id IS NOT NULL;
CREATE INDEX files_sha256 ON files (sha256);

-- Happo Image API: the client's hash (md5 in practice) within an account names an image.
CREATE TABLE happo_images (
    account_id uuid NOT NULL,
    hash text NOT NULL,
    sha256 text NOT NULL REFERENCES blobs (sha256),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, hash)
);
CREATE INDEX happo_images_sha256 ON happo_images (sha256);

-- Signed upload URLs are single-use: the id of each used one is kept until it expires.
CREATE TABLE used_upload_urls (
    jti uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    used_at timestamptz NOT NULL DEFAULT now()
);
