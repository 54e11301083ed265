-- The expiry sweeper's index holds only the jobs whose deadline means something: one
-- waiting for approval (approve before it) or approved (publish before it). Indexing
-- every job made each Decide of an allowed job and each later transition write or move
-- an entry nobody reads: one index entry fewer per allowed Decide, one per Publish and
-- two per ReportOutcome (see BENCHMARKS.md, "Scale on paper"). PostgreSQL, CockroachDB
-- and SQLite all have partial indexes; DueJobs repeats the predicate so that each can
-- prove the index applies.
DROP INDEX IF EXISTS jobs_status_expires;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, expires_at, job_id)
    WHERE status IN ('pending_approval', 'approved');
