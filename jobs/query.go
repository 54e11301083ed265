package jobs

import (
	"context"
	"errors"
	"strings"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// JobView is a job with the approvals of its current revision.
type JobView struct {
	Job       store.Job
	Approvals []store.Approval // oldest first
	Conflict  string           // the latest conflict reason while the job is in conflict, else ""
}

// GetJob returns a job's stored state to a caller with standing on it (see mayView):
// auditors, operators, the submitter and eligible approvers. Anyone else gets NOT_FOUND,
// as for a job that does not exist, and the attempt is recorded on its own chain.
func (s *Service) GetJob(ctx context.Context, p Principal, id string) (JobView, error) {
	if err := firstErr(checkPrincipal(p), checkJobID("job_id", id)); err != nil {
		return JobView{}, err
	}
	var v JobView
	err := s.onJobRead(ctx, p, call{name: "GetJob", jobID: id}, mayView, func(ctx context.Context, tx store.Tx, j *store.Job) error {
		var err error
		if v, err = view(ctx, tx, *j); err != nil || j.Status != store.StatusConflict {
			return err
		}
		v.Conflict, err = latestConflict(ctx, tx, j.ID)
		return err
	})
	return v, err
}

// latestConflict returns the reason of the conflict event that moved the job into
// conflict last; later conflict events (a refused hash, a busy lock) left it there.
func latestConflict(ctx context.Context, tx store.Tx, id string) (string, error) {
	events, err := tx.ListEvents(ctx, id)
	reason := ""
	for i, e := range events {
		entered := e.Status == string(store.StatusConflict) && (i == 0 || events[i-1].Status != e.Status)
		if e.Kind == evidence.KindConflict && entered {
			reason = e.Conflict
		}
	}
	return reason, err
}

func view(ctx context.Context, tx store.Tx, j store.Job) (JobView, error) {
	as, err := tx.ListApprovals(ctx, j.ID, j.Revision)
	return JobView{Job: j, Approvals: as}, err
}

// PendingQuery filters and pages the approval queue. Empty fields do not filter.
type PendingQuery struct {
	Topic     string // a topic, or a NATS-style pattern ("*" one token, ">" the rest)
	Actor     string //
	RuleID    string //
	Snapshot  string //
	PageSize  int    // default 50, at most 500
	PageToken string
}

// ListPending lists the pending jobs matching q that p may see, oldest decision first,
// with their approvals so far: every one for an auditor, for anyone else those it may
// approve (see eligibleRole). A principal without roles sees nothing. Jobs found past
// their ttl move to expired (with evidence) and drop out.
func (s *Service) ListPending(ctx context.Context, p Principal, q PendingQuery) ([]JobView, string, error) {
	if err := checkPrincipal(p); err != nil {
		return nil, "", err
	}
	size, err := pageSize(q.PageSize)
	if err != nil {
		return nil, "", err
	}
	jq := store.JobQuery{Statuses: []store.Status{store.StatusPendingApproval},
		Actor: q.Actor, RuleID: q.RuleID, Snapshot: q.Snapshot}
	if jq.AfterDecidedAt, jq.AfterID, err = decodeJobCursor(q.PageToken); err != nil {
		return nil, "", err
	}
	var pattern []string
	if strings.ContainsAny(q.Topic, "*>") {
		if pattern, err = topicPattern(q.Topic); err != nil {
			return nil, "", err
		}
	} else {
		jq.Topic = q.Topic
	}
	now := s.nowMicro()
	var overdue []string
	keep := func(j *store.Job) bool {
		if pattern != nil && !matchTopic(pattern, j.Topic) {
			return false
		}
		if !p.HasRole(RoleAudit) && eligibleRole(p, j) == "" {
			return false
		}
		if now >= j.ExpiresAt {
			overdue = append(overdue, j.ID)
			return false
		}
		return true
	}
	var views []JobView
	var next string
	err = s.read(ctx, "", "", func(ctx context.Context, tx store.Tx) error {
		overdue, views = nil, nil
		list, tok, err := scanJobs(ctx, tx, jq, size, keep)
		if err != nil {
			return err
		}
		next = tok
		for _, j := range list {
			v, err := view(ctx, tx, j)
			if err != nil {
				return err
			}
			views = append(views, v)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	s.expireAll(ctx, overdue)
	return views, next, nil
}

// expireAll moves overdue pending jobs to expired. It is housekeeping: the jobs are
// dropped from the listing either way, and the next Approve would expire them too.
func (s *Service) expireAll(ctx context.Context, ids []string) {
	p := Principal{ID: SystemPrincipal}
	for _, id := range ids {
		err := s.write(ctx, "", func(ctx context.Context, tx store.Tx, now int64) error {
			j, err := tx.GetJob(ctx, id, true)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil || j.Status != store.StatusPendingApproval || now < j.ExpiresAt {
				return err
			}
			return expire(ctx, tx, &j, p, now)
		})
		if err != nil {
			s.log.Warn("expiring an overdue job", "job_id", id, "err", err)
		}
	}
}

// scanJobs pages through q from its cursor, keeping the jobs keep accepts, until it has
// more than limit of them or the jobs run out. It returns up to limit jobs and the token
// of the next page ("" when there is none).
func scanJobs(ctx context.Context, tx store.Tx, q store.JobQuery, limit int, keep func(*store.Job) bool) ([]store.Job, string, error) {
	var out []store.Job
	q.Limit = limit + 1
	for {
		batch, err := tx.ListJobs(ctx, q)
		if err != nil {
			return nil, "", err
		}
		for i := range batch {
			if !keep(&batch[i]) {
				continue
			}
			if len(out) == limit {
				last := out[limit-1]
				return out, encodeJobCursor(last.DecidedAt, last.ID), nil
			}
			out = append(out, batch[i])
		}
		if len(batch) < q.Limit {
			return out, "", nil
		}
		last := batch[len(batch)-1]
		q.AfterDecidedAt, q.AfterID = last.DecidedAt, last.ID
	}
}

// topicPattern splits a NATS-style topic pattern into tokens.
func topicPattern(p string) ([]string, error) {
	toks := strings.Split(p, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return nil, invalid("topic", "empty token in topic pattern")
		case t == ">" && i != len(toks)-1:
			return nil, invalid("topic", "\">\" must be the last token")
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return nil, invalid("topic", "a wildcard must be a whole token")
		}
	}
	return toks, nil
}

// matchTopic reports whether topic matches the pattern tokens: "*" matches one token,
// ">" one or more trailing tokens.
func matchTopic(pattern []string, topic string) bool {
	toks := strings.Split(topic, ".")
	for i, p := range pattern {
		if p == ">" {
			return len(toks) > i
		}
		if i >= len(toks) || p != "*" && p != toks[i] {
			return false
		}
	}
	return len(toks) == len(pattern)
}
