-- Happo reports: one per (account, project, sha). The default project is ''.
CREATE TABLE reports (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL,
    project text NOT NULL,
    sha text NOT NULL,
    link text,
    message text,
    -- true while partials are being added; completed_at is set by complete (or at once)
    partial boolean NOT NULL DEFAULT false,
    nonce text,
    completed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- bumped by every change of the snapshot set, so a comparison knows what it compared
    revision int NOT NULL DEFAULT 1,
    cloned_from bigint,
    -- examples a run skipped on purpose (happo-e2e finalize): not "deleted" in a comparison
    skipped jsonb NOT NULL DEFAULT '[]',
    UNIQUE (account_id, project, sha)
);

-- A snapshot: one image of a (component, variant, target) in a report.
CREATE TABLE snapshots (
    id bigserial PRIMARY KEY,
    report_id bigint NOT NULL REFERENCES reports ON DELETE CASCADE,
    component text NOT NULL,
    variant text NOT NULL,
    target text NOT NULL,
    image_hash text NOT NULL,
    sha256 text NOT NULL,
    blob_key text NOT NULL,
    width int NOT NULL,
    height int NOT NULL,
    position int NOT NULL,
    UNIQUE (report_id, component, variant, target)
);
CREATE INDEX snapshots_latest ON snapshots (component, variant, target, report_id DESC);

-- Snap requests (happo-e2e's locally taken screenshots, extends-report): numbered batches of
-- snapshots that an async report is assembled from.
CREATE TABLE snap_requests (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL,
    snaps jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Which snap requests an async report was built from (re-posting the same ids is a no-op).
CREATE TABLE report_requests (
    report_id bigint NOT NULL REFERENCES reports ON DELETE CASCADE,
    request_id bigint NOT NULL REFERENCES snap_requests,
    PRIMARY KEY (report_id, request_id)
);

-- A comparison of two reports of a project; re-comparing the same shas reuses the row.
CREATE TABLE comparisons (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL,
    project text NOT NULL,
    sha1 text NOT NULL,
    sha2 text NOT NULL,
    fallback_shas text[] NOT NULL DEFAULT '{}',
    link text,
    message text,
    notify text[] NOT NULL DEFAULT '{}',
    -- scheduled: waiting for reports (async); diffing: waiting for processing; done
    state text NOT NULL CHECK (state IN ('scheduled', 'diffing', 'done')),
    before_report_id bigint REFERENCES reports ON DELETE SET NULL,
    after_report_id bigint REFERENCES reports ON DELETE SET NULL,
    before_sha text,
    before_revision int,
    after_revision int,
    threshold double precision NOT NULL,
    include_anti_aliasing boolean NOT NULL,
    equal boolean,
    summary text,
    -- a person's decision on the comparison page: accepted / rejected
    review text CHECK (review IN ('accepted', 'rejected')),
    reviewed_by uuid,
    reviewed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    UNIQUE (account_id, project, sha1, sha2)
);
CREATE INDEX comparisons_sha2 ON comparisons (account_id, project, sha2);
CREATE INDEX comparisons_waiting ON comparisons (account_id, project) WHERE state = 'scheduled';

-- One line of a comparison: the snapshots it matched by (component, variant, target), as they
-- were when compared (copied, so overwriting a report later does not rewrite history).
CREATE TABLE comparison_entries (
    comparison_id bigint NOT NULL REFERENCES comparisons ON DELETE CASCADE,
    position int NOT NULL,
    kind text NOT NULL CHECK (kind IN ('added', 'deleted', 'unchanged', 'diff', 'pending')),
    component text NOT NULL,
    before jsonb,
    after jsonb,
    ignored boolean NOT NULL DEFAULT false,
    changed_pixels bigint,
    total_pixels bigint,
    bbox int[],
    diff_key text,
    error text,
    PRIMARY KEY (comparison_id, position)
);
CREATE INDEX comparison_entries_kind ON comparison_entries (comparison_id, kind, position);

-- Pixel diffs already known, so a re-comparison of the same images costs nothing.
CREATE TABLE pixel_diffs (
    before_sha256 text NOT NULL,
    after_sha256 text NOT NULL,
    threshold double precision NOT NULL,
    include_anti_aliasing boolean NOT NULL,
    changed_pixels bigint NOT NULL,
    total_pixels bigint NOT NULL,
    bbox int[],
    diff_key text,
    error text,
    PRIMARY KEY (before_sha256, after_sha256, threshold, include_anti_aliasing)
);

-- Ignored diffs: this pair of images counts as equal in every later comparison (either order).
CREATE TABLE ignored_diffs (
    account_id uuid NOT NULL,
    first_sha256 text NOT NULL,
    second_sha256 text NOT NULL,
    component text NOT NULL,
    variant text NOT NULL,
    target text NOT NULL,
    snapshot1_id bigint NOT NULL,
    snapshot2_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, first_sha256, second_sha256),
    CHECK (first_sha256 COLLATE "C" <= second_sha256)
);

-- Jobs: one row per (shas, project); an orchestration job is a row with no project whose
-- children are its projects' rows (parent_id), its status combined from theirs.
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL,
    sha1 text NOT NULL,
    sha2 text NOT NULL,
    -- NULL for an orchestration job
    project text,
    parent_id bigint REFERENCES jobs ON DELETE CASCADE,
    link text,
    message text,
    cancelled_status text CHECK (cancelled_status IN ('success', 'failure')),
    cancel_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX jobs_plain ON jobs (account_id, sha1, sha2, project) WHERE project IS NOT NULL;
CREATE UNIQUE INDEX jobs_orchestration ON jobs (account_id, sha1, sha2) WHERE project IS NULL;

-- Skip: a successful status for a sha without running anything.
CREATE TABLE skips (
    account_id uuid NOT NULL,
    project text NOT NULL,
    sha text NOT NULL,
    label text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, project, sha)
);

-- Component subscriptions. An address the person unsubscribed stays unsubscribed.
CREATE TABLE subscriptions (
    account_id uuid NOT NULL,
    component text NOT NULL,
    email text NOT NULL,
    unsubscribed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, component, email)
);

-- E-mails sent for a comparison: a redelivered event does not send them again.
CREATE TABLE mail_deliveries (
    comparison_id bigint NOT NULL,
    completed_event uuid NOT NULL,
    email text NOT NULL,
    outcome text NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (completed_event, email)
);
