-- The pages' account-wide lists (/reports, /comparisons, the home page's recent jobs) read
-- newest first within one account: each walks its own index instead of sorting the table.
CREATE INDEX IF NOT EXISTS reports_newest ON reports (account_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS comparisons_newest ON comparisons (account_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_newest ON jobs (account_id, created_at DESC, id DESC)
    WHERE parent_id IS NULL;
