package sqlstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

const eventInsertCols = `job_id, seq, event_id, trace_id, kind, at, actor, principal, decision,
	approval_required, rule_id, reason, matched_rules, policy_snapshot, previous_snapshot,
	job_hash, presented_hash, approved_by, approved_role, approved_at, status, attempt,
	conflict, replay_reason_code, repeat, prev_hash, hash, auth_method`

// eventCols reads a column an event may lack (NULL) as its zero value.
const eventCols = `job_id, seq, event_id, COALESCE(trace_id, ''), kind, at, COALESCE(actor, ''),
	principal, COALESCE(decision, ''), approval_required, COALESCE(rule_id, ''),
	COALESCE(reason, ''), COALESCE(matched_rules, ''), COALESCE(policy_snapshot, ''),
	COALESCE(previous_snapshot, ''), COALESCE(job_hash, ''), COALESCE(presented_hash, ''),
	COALESCE(approved_by, ''), COALESCE(approved_role, ''), COALESCE(approved_at, 0),
	COALESCE(status, ''), COALESCE(attempt, 0), COALESCE(conflict, ''),
	COALESCE(replay_reason_code, ''), repeat, COALESCE(prev_hash, ''), hash,
	COALESCE(auth_method, '')`

func (t *Tx) scanEvent(r Row) (evidence.Event, error) {
	var e evidence.Event
	var matched string
	err := r.Scan(&e.JobID, &e.Seq, &e.EventID, &e.TraceID, &e.Kind, &e.At, &e.Actor,
		&e.Principal, &e.Decision, &e.ApprovalRequired, &e.RuleID, &e.Reason, &matched,
		&e.PolicySnapshot, &e.PreviousSnapshot, &e.JobHash, &e.PresentedHash, &e.ApprovedBy,
		&e.ApprovedRole, &e.ApprovedAt, &e.Status, &e.Attempt, &e.Conflict,
		&e.ReplayReasonCode, &e.Repeat, &e.PrevHash, &e.Hash, &e.AuthMethod)
	if err != nil {
		return evidence.Event{}, t.err(err)
	}
	if e.MatchedRules, err = decodeList(matched); err != nil {
		return evidence.Event{}, err
	}
	return e, nil
}

// ChainHead implements store.EvidenceTx.
func (t *Tx) ChainHead(ctx context.Context, jobID string) (int64, string, error) {
	if h, ok := t.heads[jobID]; ok {
		return h.seq, h.hash, nil
	}
	var seq int64
	var hash string
	err := t.q.QueryRow(ctx, `SELECT seq, hash FROM evidence WHERE job_id = $1
		ORDER BY seq DESC LIMIT 1`, jobID).Scan(&seq, &hash)
	if err != nil {
		if err = t.err(err); !errors.Is(err, store.ErrNotFound) {
			return 0, "", err
		}
		seq, hash = 0, ""
	}
	t.setHead(jobID, chainHead{seq, hash})
	return seq, hash, nil
}

// AppendEvent implements store.EvidenceTx. The database refuses an event that lacks a
// field its kind requires (an error matching evidence.ErrIncomplete), whatever its
// writer checked before.
func (t *Tx) AppendEvent(ctx context.Context, e evidence.Event) error {
	n, err := t.q.Exec(ctx, `INSERT INTO evidence (`+eventInsertCols+`) VALUES `+oneEventRow+
		` ON CONFLICT DO NOTHING`, eventArgs(&e)...)
	if err != nil {
		return fmt.Errorf("%s event %s of %s: %w", e.Kind, e.EventID, e.JobID, t.err(err))
	}
	if n == 0 {
		return fmt.Errorf("event %s (%s #%d): %w", e.EventID, e.JobID, e.Seq, store.ErrConflict)
	}
	t.advance(&e)
	return nil
}

// eventArgs returns the values of eventInsertCols for e; a field e lacks is NULL.
func eventArgs(e *evidence.Event) []any {
	var matched any
	if len(e.MatchedRules) > 0 {
		matched = encodeList(e.MatchedRules)
	}
	return []any{e.JobID, e.Seq, e.EventID, orNull(e.TraceID), string(e.Kind), e.At, orNull(e.Actor),
		e.Principal, orNull(e.Decision), e.ApprovalRequired, orNull(e.RuleID), orNull(e.Reason),
		matched, orNull(e.PolicySnapshot), orNull(e.PreviousSnapshot), orNull(e.JobHash),
		orNull(e.PresentedHash), orNull(e.ApprovedBy), orNull(e.ApprovedRole),
		orNull(e.ApprovedAt), orNull(e.Status), orNull(e.Attempt), orNull(e.Conflict),
		orNull(e.ReplayReasonCode), e.Repeat, orNull(e.PrevHash), e.Hash, orNull(e.AuthMethod)}
}

// ListEvents implements store.EvidenceTx.
func (t *Tx) ListEvents(ctx context.Context, jobID string) ([]evidence.Event, error) {
	return t.events(ctx, `SELECT `+eventCols+` FROM evidence WHERE job_id = $1 ORDER BY seq`, jobID)
}

// QueryEvents implements store.EvidenceTx.
func (t *Tx) QueryEvents(ctx context.Context, eq store.EventQuery) ([]evidence.Event, error) {
	q := t.query()
	if eq.Since > 0 {
		q.where("at >= %s", eq.Since)
	}
	if eq.Until > 0 {
		q.where("at < %s", eq.Until)
	}
	q.eq("kind", eq.Kind)
	q.eq("decision", eq.Decision)
	q.eq("status", eq.Status)
	q.eq("rule_id", eq.RuleID)
	q.eq("policy_snapshot", eq.Snapshot)
	q.eq("approved_by", eq.ApprovedBy)
	q.eq("conflict", eq.Conflict)
	q.eq("job_id", eq.JobID)
	if eq.Topic != "" {
		q.where("job_id IN (SELECT job_id FROM jobs WHERE topic = %s)", eq.Topic)
	}
	q.after("at", "event_id", eq.AfterAt, eq.AfterEventID)
	sql := `SELECT ` + eventCols + ` FROM evidence` + q.sql() + ` ORDER BY at, event_id` + q.limit(eq.Limit)
	return t.events(ctx, sql, q.args...)
}

// ListChainEvents implements store.EvidenceTx.
func (t *Tx) ListChainEvents(ctx context.Context, cq store.ChainQuery) ([]evidence.Event, error) {
	q := t.query()
	q.in("job_id", cq.JobIDs)
	if cq.AfterJobID != "" || cq.AfterSeq != 0 {
		q.where("(job_id > %s OR (job_id = %s AND seq > %s))", cq.AfterJobID, cq.AfterJobID, cq.AfterSeq)
	}
	sql := `SELECT ` + eventCols + ` FROM evidence` + q.sql() + ` ORDER BY job_id, seq` + q.limit(cq.Limit)
	return t.events(ctx, sql, q.args...)
}

func (t *Tx) events(ctx context.Context, sql string, args ...any) ([]evidence.Event, error) {
	rows, err := t.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, t.err(err)
	}
	defer rows.Close()
	var out []evidence.Event
	for rows.Next() {
		e, err := t.scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, t.err(rows.Err())
}
