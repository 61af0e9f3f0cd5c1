-- The Haut.ai-style subjects API: a company (account) has datasets, a dataset has an image
-- type and subjects, a subject's images arrive in batches, and a computed batch's images get a
-- quality analysis (from processing) and aux images. Deleting cascades in code, image by image
-- through the blob protocol; the foreign keys here (no ON DELETE) are the safety net.
CREATE TABLE datasets (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    name text NOT NULL,
    image_type_id int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX datasets_account ON datasets (account_id, created_at);

CREATE TABLE subjects (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    dataset_id uuid NOT NULL REFERENCES datasets (id),
    name text NOT NULL,
    birth_date date,
    biological_sex text,
    meta jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subjects_dataset ON subjects (dataset_id, created_at);

-- creation_time is the client's (the seed's "batch creation time"), now() when not given.
-- computed_at is set once, by compute; a computed batch takes no more images.
CREATE TABLE image_batches (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    subject_id uuid NOT NULL REFERENCES subjects (id),
    creation_time timestamptz NOT NULL,
    app_args jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    computed_at timestamptz
);
CREATE INDEX image_batches_subject ON image_batches (subject_id);

-- An image is created with its signed upload URL (status 'pending', no bytes yet); the upload
-- attaches its original (a blob, so the blob is referenced) and makes it 'uploaded'; compute
-- makes it 'computing'; processing's answer makes it 'done' (or 'failed'). A pending image
-- whose URL expired is removed by the sweeper.
CREATE TABLE haut_images (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    subject_id uuid NOT NULL REFERENCES subjects (id),
    batch_id uuid NOT NULL REFERENCES image_batches (id),
    name text,
    image_type_id int NOT NULL,
    side_id int NOT NULL,
    light_id int NOT NULL,
    meta jsonb,
    status text NOT NULL
        CHECK (status IN ('pending', 'uploaded', 'computing', 'done', 'failed')),
    upload_expires_at timestamptz NOT NULL,
    sha256 text REFERENCES blobs (sha256),
    media_type text,
    algorithm text,
    quality_score double precision,
    quality_feedback text,
    quality_issues jsonb,
    problems jsonb,
    quality_result jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    analysed_at timestamptz,
    CHECK ((status = 'pending') = (sha256 IS NULL))
);
CREATE INDEX haut_images_subject ON haut_images (subject_id, created_at);
CREATE INDEX haut_images_batch ON haut_images (batch_id);
CREATE INDEX haut_images_sha256 ON haut_images (sha256);
CREATE INDEX haut_images_pending ON haut_images (upload_expires_at) WHERE status = 'pending';

-- The aux images of an analysed image; their bytes live under the original's derivatives
-- prefix, so they go with the original's blob.
CREATE TABLE aux_images (
    id uuid PRIMARY KEY,
    image_id uuid NOT NULL REFERENCES haut_images (id) ON DELETE CASCADE,
    aux_image_type text NOT NULL,
    algo_app text NOT NULL,
    key text NOT NULL,
    media_type text NOT NULL,
    bytes bigint NOT NULL,
    width int,
    height int,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX aux_images_image ON aux_images (image_id);
