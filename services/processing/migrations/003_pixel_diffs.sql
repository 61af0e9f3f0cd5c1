-- Pixel diffs (services.processing.diffs) already computed: one row per pair of images and set
-- of options, written in the transaction that announces comparison.diffed, so a repeated
-- request is answered without decoding the images again. The diff PNG lives in the blob store
-- at `diff_key` (shared.comparisons.diff_key), null when nothing changed. Pairs that could not
-- be diffed are not recorded: a missing image may be stored again, and the pixel limit may be
-- raised.
CREATE TABLE pixel_diffs (
    before_sha256 text NOT NULL CHECK (before_sha256 ~ '^[0-9a-f]{64}$'),
    after_sha256 text NOT NULL CHECK (after_sha256 ~ '^[0-9a-f]{64}$'),
    -- rounded to 6 decimals, as diff_key names it (services.processing.domain.diff_threshold)
    threshold double precision NOT NULL CHECK (threshold BETWEEN 0 AND 1),
    include_anti_aliasing boolean NOT NULL,
    changed_pixels bigint NOT NULL CHECK (changed_pixels >= 0),
    total_pixels bigint NOT NULL CHECK (total_pixels >= changed_pixels),
    width int NOT NULL,
    height int NOT NULL,
    -- [left, top, width, height] of the changed pixels, null when there are none
    bbox int[] CHECK (bbox IS NULL OR cardinality(bbox) = 4),
    anti_aliased_pixels bigint NOT NULL,
    size_mismatch boolean NOT NULL,
    diff_key text,
    diff_bytes bigint,
    -- host:pid of the process that diffed it, and how long the libvips job took.
    worker text NOT NULL,
    duration_ms int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (before_sha256, after_sha256, threshold, include_anti_aliasing),
    CHECK ((diff_key IS NULL) = (diff_bytes IS NULL)),
    CHECK ((diff_key IS NULL) = (changed_pixels = 0))
);
