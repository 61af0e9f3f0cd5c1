-- Snap requests Darkroom renders itself (the clients' payload requests): pending until a
-- renderer records render.completed (snaps filled in, done) or render.failed (error, failed).
-- Requests made of snapshots the client took (with-results, extends-report) are done at once.
ALTER TABLE snap_requests
    ADD COLUMN state text NOT NULL DEFAULT 'done' CHECK (state IN ('pending', 'done', 'failed')),
    ADD COLUMN request_type text,
    ADD COLUMN target_name text,
    -- md5 of the payload as received: identical (type, target, payload) reuse one request
    ADD COLUMN payload_md5 text,
    ADD COLUMN payload jsonb,
    ADD COLUMN error text,
    ADD COLUMN finished_at timestamptz;
CREATE INDEX snap_requests_reuse ON snap_requests (account_id, request_type, target_name, payload_md5)
    WHERE state <> 'failed';

-- A report assembled from snap requests that are still rendering: `applied` is false until the
-- request's snapshots (or its failure) are in the report.
ALTER TABLE report_requests ADD COLUMN applied boolean NOT NULL DEFAULT true;
CREATE INDEX report_requests_waiting ON report_requests (request_id) WHERE NOT applied;

-- Completion asked (async report without nonce, or finalize) while renders were pending: the
-- last render to finish completes the report. Failed renders are kept with the report.
ALTER TABLE reports
    ADD COLUMN complete_when_rendered boolean NOT NULL DEFAULT false,
    ADD COLUMN render_errors jsonb NOT NULL DEFAULT '[]';
