-- Commit statuses posted to GitHub, GitLab and Gitea/Forgejo: the integrations an account
-- configures, each status to post (recorded in the transaction of the change it reports: the
-- outbox rule), and every attempt to post one (the delivery log the comparison page shows).

CREATE TABLE status_integrations (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL,
    project text,                      -- NULL: every project of the account
    provider text NOT NULL CHECK (provider IN ('github', 'gitlab', 'gitea')),
    base_url text NOT NULL,
    name text NOT NULL,                -- the status's context (GitLab: name)
    token_sealed bytea NOT NULL,       -- shared.sealing.SecretBox, bound to the id
    failing text,                      -- why the provider refused the token; NULL while fine
    failing_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX status_integrations_account ON status_integrations (account_id, project);

CREATE TABLE commit_statuses (
    id bigserial PRIMARY KEY,
    integration_id bigint NOT NULL REFERENCES status_integrations (id) ON DELETE CASCADE,
    account_id uuid NOT NULL,
    repository text NOT NULL,          -- owner/repo, or GitLab's group/…/project
    sha text NOT NULL,
    context text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'success', 'failure', 'error')),
    description text NOT NULL,
    target_url text NOT NULL,
    job_id bigint,
    comparison_id bigint,
    -- NULL while it is to be posted; then delivered, superseded (a newer status of the same
    -- commit and context went instead), rejected (the provider refused this status),
    -- refused (the provider refused the token), or abandoned (out of attempts).
    outcome text CHECK (outcome IN ('delivered', 'superseded', 'rejected', 'refused', 'abandoned')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,         -- a sender is posting it until then (a lease)
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX commit_statuses_due ON commit_statuses (next_attempt_at) WHERE outcome IS NULL;
CREATE INDEX commit_statuses_key ON commit_statuses (integration_id, repository, sha, context, id);
CREATE INDEX commit_statuses_comparison ON commit_statuses (comparison_id)
    WHERE comparison_id IS NOT NULL;
CREATE INDEX commit_statuses_job ON commit_statuses (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE commit_status_attempts (
    id bigserial PRIMARY KEY,
    status_id bigint NOT NULL REFERENCES commit_statuses (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    http_status integer,               -- NULL when no answer came (refused address, timeout)
    error text,                        -- NULL for a delivered status
    retry_at timestamptz               -- when the next attempt is due, for a retried one
);
CREATE INDEX commit_status_attempts_status ON commit_status_attempts (status_id, id);
