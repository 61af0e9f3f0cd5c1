-- Progimage images: an original (a blob) put through the client's options, stored as three
-- derivatives (the processed file, its thumb and mini) whose keys are in `variants`:
-- {"file": {"key", "bytes", "media_type"}, "thumb": {...}, "mini": {...}}.
CREATE TABLE progimage_images (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    user_id uuid NOT NULL,
    sha256 text NOT NULL REFERENCES blobs (sha256),
    options jsonb NOT NULL,
    variants jsonb NOT NULL,
    extension text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX progimage_images_user ON progimage_images (user_id, created_at DESC, id DESC);
CREATE INDEX progimage_images_sha256 ON progimage_images (sha256);
