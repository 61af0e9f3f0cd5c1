-- Happo packages (a static package, or the assets of DOM snapshots): one row per account and
-- md5 of the archive (the name the clients use), the bytes stored once by content at
-- `packages/<sha256>` (shared.store_keys.package_key).
CREATE TABLE packages (
    account_id uuid NOT NULL,
    md5 text NOT NULL CHECK (md5 ~ '^[0-9a-f]{32}$'),
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    format text NOT NULL CHECK (format IN ('zip', 'tar.zst')),
    bytes bigint NOT NULL,
    entries int NOT NULL,
    unpacked_bytes bigint NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, md5)
);
CREATE INDEX packages_sha256 ON packages (sha256);

-- Signed package-upload URLs already spent (each allows one PUT).
CREATE TABLE used_package_urls (
    jti uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
