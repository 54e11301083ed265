package jobs

import (
	"context"
	"errors"

	"github.com/oklog/ulid/v2"

	"github.com/agate-pdp/agate/canonical"
	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// DecideRequest is a job to decide (or, for Evaluate, to try).
type DecideRequest struct {
	JobID   string
	Topic   string
	Actor   string
	Labels  map[string]any // scalars only: string, bool, number
	Payload []byte         // a JSON object; empty means {}
	TraceID string         // empty: one is generated
}

// DecideResult is the stored job after Decide.
type DecideResult struct {
	Job            store.Job
	AlreadyDecided bool // the job_id was decided before with the same content; nothing was written
}

// Decide evaluates a job under the replica's active snapshot and stores it as allowed,
// denied or pending_approval with its decision evidence, in one transaction. A known
// job_id with the same content returns the stored job (AlreadyDecided), unless the job
// is in conflict: then it is re-decided as revision + 1 and earlier approvals no longer
// count. A known job_id with different content is Aborted JOB_HASH_MISMATCH, recorded,
// and changes nothing.
//
// With batching on (Config.Batch), concurrent Decides share one transaction; each
// behaves as if it had its own, and none answers before that transaction commits. A
// caller whose context ends first gets the context's error; its job may still commit,
// as with any call whose reply is lost, and a retry answers AlreadyDecided.
func (s *Service) Decide(ctx context.Context, p Principal, r DecideRequest) (DecideResult, error) {
	d, err := s.prepareDecide(p, &r)
	if err != nil {
		return DecideResult{}, err
	}
	if s.decides != nil {
		return s.decideBatched(ctx, d)
	}
	return s.decideAlone(ctx, d)
}

// decideJob is a Decide checked, hashed and evaluated: everything but the write.
type decideJob struct {
	p       Principal
	r       DecideRequest
	labels  []byte // canonical JSON
	payload []byte
	ev      evaluation
	// outsider takes one of the caller's allowance of calls without standing (a Decide
	// of another submitter's id is one), and reports whether there was one left.
	outsider func() bool
}

// prepareDecide does the part of a Decide that needs no database.
func (s *Service) prepareDecide(p Principal, r *DecideRequest) (*decideJob, error) {
	if err := checkPrincipal(p); err != nil {
		return nil, err
	}
	ev, err := s.evaluate(r)
	if err != nil {
		return nil, err
	}
	labels, err := canonical.Append(nil, labelsOrEmpty(r.Labels))
	if err != nil {
		return nil, contentError(err)
	}
	d := &decideJob{p: p, r: *r, labels: labels, payload: r.Payload, ev: ev,
		outsider: func() bool { return s.outsiders.take(p.ID, s.clock()) }}
	if len(d.payload) == 0 {
		d.payload = []byte("{}")
	}
	return d, nil
}

// decideAlone writes d in a transaction of its own: a batch of one.
func (s *Service) decideAlone(ctx context.Context, d *decideJob) (DecideResult, error) {
	var outs []DecideResult
	var answers []error
	err := s.write(ctx, d.r.JobID, func(ctx context.Context, tx store.Tx, now int64) error {
		var err error
		outs, answers, err = applyBatch(ctx, tx, []*decideJob{d}, now)
		return err
	})
	if err != nil {
		s.recordBusy(ctx, err, d.p, d.r.JobID, isSubmitter)
		return DecideResult{}, err
	}
	return outs[0], answers[0]
}

// newJob is d as a newly decided job.
func (d *decideJob) newJob(now int64) store.Job {
	r := &d.r
	j := store.Job{
		ID: r.JobID, Topic: r.Topic, Actor: r.Actor, Labels: d.labels, Payload: d.payload,
		Hash: d.ev.hash, SubmittedBy: d.p.ID, TraceID: r.TraceID, Revision: 1,
	}
	if j.TraceID == "" {
		j.TraceID = "trc_" + ulid.Make().String()
	}
	decided(&j, &d.ev.result, d.ev.snapshot, now)
	return j
}

// applyKnown decides d when its job_id is already stored. A job belongs to its
// submitter: another submitter's Decide learns nothing of it (no hash, content or
// status) and writes nothing on its chain; the attempt goes on the caller's own chain.
// The submitter's own repeat is AlreadyDecided, or a re-decision of a job in conflict;
// different content is JOB_HASH_MISMATCH, recorded on the job's chain. A refusal whose
// evidence must commit is returned as refuseAfterCommit.
func (d *decideJob) applyKnown(ctx context.Context, tx store.Tx, now int64) (out DecideResult, err error) {
	r, ev := &d.r, &d.ev
	cur, err := tx.GetJob(ctx, r.JobID, true)
	if errors.Is(err, store.ErrNotFound) {
		err = store.ErrConflict // inserted by a transaction this one cannot see: run again
	}
	if err != nil {
		return out, err
	}
	if !isSubmitter(d.p, &cur) {
		if d.outsider != nil && !d.outsider() {
			return out, refuseAfterCommit(rateLimited()) // writes nothing: the allowance bounds the caller's chain
		}
		return out, idInUse(ctx, tx, d.p, r.JobID, now)
	}
	out.Job = cur
	if cur.Hash != ev.hash {
		e := conflictEvent(&cur, d.p, now, ReasonJobHashMismatch, "Decide of a known job_id with different content")
		e.PresentedHash = ev.hash
		if err := appendEvent(ctx, tx, &e); err != nil {
			return out, err
		}
		return out, refuseAfterCommit(hashMismatch(cur.Hash, ev.hash))
	}
	if cur.Status != store.StatusConflict {
		out.AlreadyDecided = true
		return out, nil
	}
	j := cur
	decided(&j, &ev.result, ev.snapshot, now)
	j.Revision = cur.Revision + 1
	if r.TraceID != "" {
		j.TraceID = r.TraceID
	}
	if err := tx.UpdateJob(ctx, j); err != nil {
		return out, err
	}
	out.Job = j
	return out, appendDecision(ctx, tx, &j, d.p, now)
}

// idInUse refuses a Decide of a job id another submitter has used, recording the
// attempt on the caller's chain.
func idInUse(ctx context.Context, tx store.Tx, p Principal, jobID string, now int64) error {
	key, err := identity.Key(p.ID)
	if err != nil {
		return err // checkPrincipal refused it first
	}
	e := evidence.Event{JobID: evidence.PrincipalChain(key), Kind: evidence.KindRefusal, At: now,
		Principal: p.ID, AuthMethod: p.Auth, Conflict: ReasonJobIDInUse,
		Reason: "Decide of job " + jobID + ": the job id is in use by another submitter"}
	if err := appendEvent(ctx, tx, &e); err != nil {
		return err
	}
	return refuseAfterCommit(&Error{Code: CodeAlreadyExists, Reason: ReasonJobIDInUse,
		Msg: "job id in use by another submitter; choose ids unique to your service (a prefix or a ULID)"})
}

// applyBatch is the body of a Decide transaction, of one job or a batch: its outcome for
// each job is what deciding them one after another in order would give. Most Decides
// are of new jobs, so the insert comes first: the new jobs cost two statements in all,
// one inserting their rows and one their first events. Reading first would add a round
// trip, and under SERIALIZABLE a predicate lock on which concurrent batches' inserts
// conflict. The notifications of the new jobs that wait for approval add one statement
// when there are any. Jobs whose id is stored already, or repeats an earlier one in the batch, then
// run through applyKnown in order, and see the rows the batch inserted.
func applyBatch(ctx context.Context, tx store.Tx, ds []*decideJob, now int64) ([]DecideResult, []error, error) {
	outs, answers := make([]DecideResult, len(ds)), make([]error, len(ds))
	fresh := make([]store.Job, 0, len(ds))
	at := make([]int, 0, len(ds)) // fresh[k] is ds[at[k]]
	first := make(map[string]bool, len(ds))
	for i, d := range ds {
		if !first[d.r.JobID] {
			first[d.r.JobID] = true
			fresh = append(fresh, d.newJob(now))
			at = append(at, i)
		}
	}
	inserted, err := tx.InsertJobs(ctx, fresh)
	if err != nil {
		return nil, nil, err
	}
	done := make([]bool, len(ds))
	events := make([]evidence.Event, 0, len(fresh))
	for k, ok := range inserted {
		if !ok {
			continue
		}
		i := at[k]
		e, err := firstDecision(&fresh[k], ds[i].p, now)
		if err != nil {
			return nil, nil, err
		}
		events = append(events, e)
		outs[i], done[i] = DecideResult{Job: fresh[k]}, true
	}
	if err := tx.AppendEvents(ctx, events); err != nil {
		return nil, nil, err
	}
	if err := notifyAll(ctx, tx, events); err != nil { // one statement for the batch's pending jobs
		return nil, nil, err
	}
	for i, d := range ds {
		if done[i] {
			continue
		}
		outs[i], err = d.applyKnown(ctx, tx, now)
		if answer, ok := asRefusal(err); ok {
			outs[i], answers[i] = DecideResult{}, answer
		} else if err != nil {
			return nil, nil, err
		}
	}
	return outs, answers, nil
}

// decided sets j's decision state from an evaluation result, as a fresh decision.
func decided(j *store.Job, res *decision.Result, snapshot string, now int64) {
	j.Decision = res.Decision.String()
	j.ApprovalRequired = res.Decision == decision.RequireHuman
	j.RuleID = res.RuleID
	j.Reason = res.Reason
	j.MatchedRules = res.Matched
	j.Snapshot = snapshot
	j.ApprovalRoles, j.Quorum, j.ExpiresAt = nil, 0, 0
	switch res.Decision {
	case decision.Allow:
		j.Status = store.StatusAllowed
	case decision.Deny:
		j.Status = store.StatusDenied
	case decision.RequireHuman:
		j.Status = store.StatusPendingApproval
		j.ApprovalRoles = res.Approval.Roles
		j.Quorum = res.Approval.Quorum
		j.ExpiresAt = now + res.Approval.TTL.Microseconds()
	}
	j.ApprovedBy, j.ApprovedRole, j.ApprovedAt = "", "", 0
	j.Attempt, j.Outcome, j.PublishedAt = 0, "", 0
	j.DecidedAt, j.UpdatedAt = now, now
}

// appendDecision records j's decision after its chain's head.
func appendDecision(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64) error {
	e := decisionEvent(j, p, now)
	return appendEvent(ctx, tx, &e)
}

// firstDecision is the sealed decision event of a job just inserted: its chain is
// empty, which spares reading the head. Were it not empty after all, the store refuses
// the duplicate (job_id, seq).
func firstDecision(j *store.Job, p Principal, now int64) (evidence.Event, error) {
	e := decisionEvent(j, p, now)
	return e, seal(&e, 0, "")
}

func decisionEvent(j *store.Job, p Principal, now int64) evidence.Event {
	e := jobEvent(evidence.KindDecision, j, p, now)
	e.Reason = j.Reason
	return e
}

func labelsOrEmpty(l map[string]any) map[string]any {
	if l == nil {
		return map[string]any{}
	}
	return l
}

// evaluation is a checked, hashed and evaluated job.
type evaluation struct {
	hash     string
	snapshot string
	result   decision.Result
}

// evaluate checks r, hashes it and evaluates it under the tracker's active snapshot.
func (s *Service) evaluate(r *DecideRequest) (evaluation, error) {
	if err := checkDecide(r); err != nil {
		return evaluation{}, err
	}
	h, err := hashJob(r)
	if err != nil {
		return evaluation{}, err
	}
	act, ok := s.tracker.Current()
	if !ok {
		return evaluation{}, failed(ReasonNoActiveSnapshot, "no policy snapshot is active; load one with PutPolicy")
	}
	return evaluateWith(r, h, act.Snapshot.ID, act.Engine)
}

func evaluateWith(r *DecideRequest, hash, snapshot string, e *decision.Engine) (evaluation, error) {
	res, err := e.Evaluate(&decision.Job{Topic: r.Topic, Actor: r.Actor, Labels: r.Labels})
	if err != nil {
		return evaluation{}, labelError(err)
	}
	return evaluation{hash: hash, snapshot: snapshot, result: res}, nil
}

// EvaluateResult is what Decide would decide, and under which snapshot.
type EvaluateResult struct {
	Result   decision.Result
	Snapshot string
	JobHash  string
}

// Evaluate answers what Decide would decide for r under the active snapshot (snapshotID
// empty) or the named one. It writes nothing.
func (s *Service) Evaluate(ctx context.Context, r DecideRequest, snapshotID string) (EvaluateResult, error) {
	if r.JobID == "" {
		// A what-if needs no identity: job_id is neither evaluated nor hashed.
		r.JobID = "evaluate"
	}
	ev, err := s.evaluateIn(ctx, &r, snapshotID)
	if err != nil {
		return EvaluateResult{}, err
	}
	return EvaluateResult{Result: ev.result, Snapshot: ev.snapshot, JobHash: ev.hash}, nil
}

func (s *Service) evaluateIn(ctx context.Context, r *DecideRequest, snapshotID string) (evaluation, error) {
	if snapshotID == "" {
		return s.evaluate(r)
	}
	if err := checkDecide(r); err != nil {
		return evaluation{}, err
	}
	h, err := hashJob(r)
	if err != nil {
		return evaluation{}, err
	}
	if act, ok := s.tracker.Current(); ok && act.Snapshot.ID == snapshotID {
		return evaluateWith(r, h, snapshotID, act.Engine) // naming the active one costs no read
	}
	eng, err := s.engine(ctx, snapshotID)
	if err != nil {
		return evaluation{}, err
	}
	return evaluateWith(r, h, snapshotID, eng)
}

// engine returns the compiled form of a stored snapshot, from the cache when it can.
func (s *Service) engine(ctx context.Context, id string) (*decision.Engine, error) {
	var snap snapshots.Snapshot
	err := s.read(ctx, "snapshot", id, func(ctx context.Context, tx store.Tx) error {
		var err error
		snap, err = tx.GetSnapshot(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.cache.Engine(snap)
}

func hashMismatch(stored, presented string) *Error {
	return aborted(ReasonJobHashMismatch, "the job's content differs from the stored job's (job_hash mismatch)",
		"expected_job_hash", stored, "presented_job_hash", presented)
}
