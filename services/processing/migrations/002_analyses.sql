-- Quality analyses of originals (services.processing.quality): one row per original and
-- algorithm, written in the transaction that announces analysis.completed. The aux images'
-- bytes live in the blob store at the keys `aux` names (under the original's derivatives
-- prefix, so they go when the original goes).
CREATE TABLE analyses (
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    algorithm text NOT NULL,
    -- quality_score, quality_feedback, quality_issues, problems, quality_result.
    result jsonb NOT NULL,
    -- [{aux_image_type, algo_app, key, media_type, bytes, width, height}]
    aux jsonb NOT NULL,
    -- host:pid of the process that analysed it, and how long the libvips job took.
    worker text NOT NULL,
    duration_ms int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha256, algorithm)
);
