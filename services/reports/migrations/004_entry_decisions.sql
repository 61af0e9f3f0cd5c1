-- A person's decision on one change of a comparison (a diff, an added or a deleted snapshot):
-- accepted, rejected, or ignored (a diff marked as noise, which also lands in ignored_diffs so
-- later comparisons count it unchanged). The comparison's own `review` is derived from these
-- (domain.review_of) and written beside them in the same transaction, so every reader of a
-- comparison's status (API, jobs, badges, mail) still reads one column.
ALTER TABLE comparison_entries
    ADD COLUMN decision text CHECK (decision IN ('accepted', 'rejected', 'ignored')),
    ADD COLUMN decided_by uuid,
    ADD COLUMN decided_at timestamptz;

-- Comparisons reviewed as a whole before this migration: each of their changes carries the
-- comparison's decision, so the derived review stays what it was.
UPDATE comparison_entries e
SET decision = c.review, decided_by = c.reviewed_by, decided_at = c.reviewed_at
FROM comparisons c
WHERE e.comparison_id = c.id AND c.review IS NOT NULL AND e.kind IN ('diff', 'added', 'deleted');
