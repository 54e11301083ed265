-- The expiry sweeper's question, asked by every replica every second: which jobs in a
-- status have a deadline that has passed. Without this index it reads every pending job.
CREATE INDEX IF NOT EXISTS jobs_status_expires ON jobs (status, expires_at, job_id);
