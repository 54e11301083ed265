-- One decision's evidence row per transaction, at SERIALIZABLE, as Agate commits
-- a decision: the ceiling for one transaction per decision on this database.
BEGIN ISOLATION LEVEL SERIALIZABLE;
INSERT INTO evidence (job_id, seq, event_id, trace_id, kind, at, actor, principal, decision,
    approval_required, rule_id, reason, matched_rules, policy_snapshot, job_hash, status,
    repeat, hash)
VALUES ('pgb-' || gen_random_uuid(), 1, gen_random_uuid()::text, md5(random()::text), 'decision',
    (extract(epoch from clock_timestamp()) * 1000000)::bigint, 'agent-7', 'agent-gateway', 'allow',
    false, 'default', 'no rule matched: the policy default applies', '[]', 'snap_0123456789abcdef',
    'sha256:' || encode(sha256(random()::text::bytea), 'hex'), 'allowed', false,
    'sha256:' || encode(sha256(random()::text::bytea), 'hex'));
END;
