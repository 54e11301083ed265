package jobs

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/store"
)

// The service roles the lifecycle knows by name (see decision.IsServiceRole). Approver
// roles are whatever a job's rule names, minus these.
const (
	RoleDecide   = decision.RoleDecide
	RoleDispatch = decision.RoleDispatch
	RoleAudit    = decision.RoleAudit
	// RoleOperator may read and cancel any job. It is a service role, so no policy can
	// make it an approver role: withdrawing jobs and approving them stay apart.
	RoleOperator = decision.RoleOperator
)

// EvidenceNoStanding is the evidence code of a call refused because its caller has no
// standing on the job, or the job does not exist. It is recorded on the caller's chain
// (evidence.PrincipalChain) and never sent: the caller gets NOT_FOUND.
const EvidenceNoStanding = "NO_STANDING"

// Standing is what makes a caller someone a lifecycle call may tell about a job. Each
// call establishes it before it reads, changes or reveals anything else about the job;
// a caller without it learns nothing, not even that the job exists, and changes nothing.
// A principal without roles has standing on nothing.

// eligibleRole returns the first of the job's approval roles under which p may approve
// or reject, or "". Service roles never approve, whatever a stored snapshot says, and a
// principal holding decide or dispatch approves nothing: a service must not approve what
// it submits or publishes.
func eligibleRole(p Principal, j *store.Job) string {
	if p.HasRole(RoleDecide) || p.HasRole(RoleDispatch) {
		return ""
	}
	for _, r := range j.ApprovalRoles {
		if !decision.IsServiceRole(r) && p.HasRole(r) {
			return r
		}
	}
	return ""
}

// isSubmitter reports whether p submitted j.
func isSubmitter(p Principal, j *store.Job) bool { return identity.Same(p.ID, j.SubmittedBy) }

// isActor reports whether p is j's actor, as far as standing goes: an actor without a
// canonical form (stored before actors were checked) gives no one standing.
func isActor(p Principal, j *store.Job) bool { return identity.Confusable(p.ID, j.Actor) }

// mayDecideOn: Approve and Reject. Eligible approvers, and the job's actor and submitter,
// so that their refused attempts at approving their own job land on its chain.
func mayDecideOn(p Principal, j *store.Job) bool {
	return len(p.Roles) > 0 && (eligibleRole(p, j) != "" || isActor(p, j) || isSubmitter(p, j))
}

// mayCancel: the job's submitter, and the operator.
func mayCancel(p Principal, j *store.Job) bool {
	return len(p.Roles) > 0 && (isSubmitter(p, j) || p.HasRole(RoleOperator))
}

// mayDispatch: Publish, Replay and ReportOutcome.
func mayDispatch(p Principal, _ *store.Job) bool { return p.HasRole(RoleDispatch) }

// mayView: GetJob. Auditors and operators, the submitter, and eligible approvers.
func mayView(p Principal, j *store.Job) bool {
	return p.HasRole(RoleAudit) || p.HasRole(RoleOperator) || mayCancel(p, j) || eligibleRole(p, j) != ""
}

// selfApproval reports whether p is j's actor or submitter for separation of duties. It
// fails closed: an actor with no canonical form cannot be told apart from anyone.
func selfApproval(p Principal, j *store.Job) bool {
	if _, err := identity.Key(j.Actor); err != nil {
		return true
	}
	return isActor(p, j) || isSubmitter(p, j)
}

// call names a lifecycle call on one job, for the evidence of a refusal.
type call struct {
	name      string // Approve, Reject, …
	jobID     string
	presented string // the job_hash the caller sent, if any
}

// standingFunc reports whether p has standing on j for a call.
type standingFunc func(p Principal, j *store.Job) bool

// jobFunc is one attempt of a lifecycle write on the locked job j, whose caller's standing
// is established. A check that refuses the call returns refuseAfterCommit (what it wrote
// commits) or a plain *Error (nothing it wrote commits).
type jobFunc func(ctx context.Context, tx store.Tx, j *store.Job, now int64) error

// errNoStanding ends the transaction of a call whose caller has no standing on the job,
// or whose job does not exist: it rolls back, so nothing about the job changes.
type errNoStanding struct{ exists bool }

func (e *errNoStanding) Error() string { return "no standing" }

// onJob runs a lifecycle write in the order every call follows: authorize (load the job
// and establish the caller's standing on it), then fn checks and writes. A caller
// without standing gets the answer a missing job gets, and its attempt is recorded on its
// own chain; the job's chain and state are untouched, LOCK_BUSY evidence included.
//
// With batching on, the call shares a transaction with other lifecycle writes
// (onJobBatched) and answers the same.
func (s *Service) onJob(ctx context.Context, p Principal, c call, may standingFunc, fn jobFunc) error {
	if s.writes != nil {
		return s.onJobBatched(ctx, &writeCall{ctx: ctx, p: p, c: c, may: may, fn: fn, done: make(chan struct{})})
	}
	return s.onJobAlone(ctx, p, c, may, fn)
}

// onJobAlone is onJob in a transaction of its own.
func (s *Service) onJobAlone(ctx context.Context, p Principal, c call, may standingFunc, fn jobFunc) error {
	var plain *Error // a refusal whose transaction rolled back, so nothing recorded it yet
	err := s.write(ctx, c.jobID, func(ctx context.Context, tx store.Tx, now int64) error {
		plain = nil
		j, err := loadWithStanding(ctx, tx, p, c.jobID, may, true)
		if err != nil {
			return err
		}
		err = fn(ctx, tx, &j, now)
		if e, ok := err.(*Error); ok {
			plain = e
		}
		return err
	})
	var ns *errNoStanding
	if errors.As(err, &ns) {
		return s.refuseOutsider(ctx, p, c, ns.exists)
	}
	s.recordBusy(ctx, err, p, c.jobID, may)
	if plain != nil && err == error(plain) {
		s.recordRefusal(ctx, plain, p, c, may)
	}
	return err
}

// recordRefusal writes the evidence of a refusal of a caller with standing that its own
// transaction did not write (a publish of a job that is not approved, an approval of a
// cancelled job, a stale attempt): every refusal of a caller with standing is evidence.
// The refused transaction rolled back, so this is one of its own, for the job as it is
// now and only if the caller still has standing; it is best effort. Malformed requests,
// missing jobs, contention and outages are not refusals of the caller.
func (s *Service) recordRefusal(ctx context.Context, e *Error, p Principal, c call, may standingFunc) {
	switch {
	case ctx.Err() != nil:
		return
	case e.Code == CodeFailedPrecondition, e.Code == CodePermissionDenied:
	case e.Code == CodeAborted && e.Reason != ReasonLockBusy:
	default:
		return
	}
	err := s.store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		j, err := tx.GetJob(ctx, c.jobID, true)
		if err != nil || !may(p, &j) {
			return err
		}
		ev := refusalEvent(&j, p, s.nowMicro(), e.Reason, c.name+" refused: "+e.Msg)
		ev.PresentedHash = c.presented
		return appendEvent(ctx, tx, &ev)
	})
	if err != nil {
		s.log.Warn("recording a refusal", "job_id", c.jobID, "reason", e.Reason, "err", err)
	}
}

// loadWithStanding reads the job (locking it for a write) and establishes p's standing
// on it: errNoStanding when it does not exist or p has none.
func loadWithStanding(ctx context.Context, tx store.Tx, p Principal, id string, may standingFunc, forUpdate bool) (store.Job, error) {
	j, err := tx.GetJob(ctx, id, forUpdate)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return j, &errNoStanding{}
	case err != nil:
		return j, err
	case !may(p, &j):
		return j, &errNoStanding{exists: true}
	}
	return j, nil
}

// onJobRead is onJob for a call that only reads: fn runs in a read-only transaction.
func (s *Service) onJobRead(ctx context.Context, p Principal, c call, may standingFunc, fn func(ctx context.Context, tx store.Tx, j *store.Job) error) error {
	err := s.read(ctx, "job", c.jobID, func(ctx context.Context, tx store.Tx) error {
		j, err := loadWithStanding(ctx, tx, p, c.jobID, may, false)
		if err != nil {
			return err
		}
		return fn(ctx, tx, &j)
	})
	var ns *errNoStanding
	if errors.As(err, &ns) {
		return s.refuseOutsider(ctx, p, c, ns.exists)
	}
	return err
}

// refuseOutsider records the attempt of a caller without standing on its own chain and
// answers as for a job that does not exist. Beyond the per-principal limit it records
// nothing more and answers RESOURCE_EXHAUSTED, whether or not the job exists. The limit
// is taken here, after standing, so misses never lock a caller out of the jobs it does
// have standing on.
func (s *Service) refuseOutsider(ctx context.Context, p Principal, c call, exists bool) error {
	if _, err := identity.Key(p.ID); err != nil {
		return invalid("principal", "the caller's id %s", err) // checkPrincipal refuses it first
	}
	if !s.outsiders.take(p.ID, s.clock()) {
		s.log.Warn("refused calls without standing over the limit; not recording more", "principal", p.ID, "call", c.name)
		return rateLimited()
	}
	err := s.write(ctx, "", func(ctx context.Context, tx store.Tx, now int64) error {
		return outsiderEvent(ctx, tx, p, c, exists, now)
	})
	if err != nil {
		return err
	}
	return notFound("job", c.jobID)
}

// recordBusy writes the conflict event of a call that gave up on contention. The failed
// transaction rolled back, so this is a transaction of its own; it is best effort, and
// only for a caller with standing on the job.
func (s *Service) recordBusy(ctx context.Context, err error, p Principal, jobID string, may standingFunc) {
	if e, ok := AsError(err); !ok || e.Reason != ReasonLockBusy || jobID == "" || ctx.Err() != nil {
		return
	}
	err = s.store.ReadWrite(ctx, func(ctx context.Context, tx store.Tx) error {
		j, err := tx.GetJob(ctx, jobID, false)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil || !may(p, &j) {
			return err
		}
		e := conflictEvent(&j, p, s.nowMicro(), ReasonLockBusy, "gave up on contention; nothing changed")
		return appendEvent(ctx, tx, &e)
	})
	if err != nil {
		s.log.Warn("recording a lock-busy conflict", "job_id", jobID, "err", err)
	}
}

func rateLimited() *Error {
	return &Error{Code: CodeResourceExhausted, Reason: ReasonRateLimited,
		Msg: "too many calls on jobs that are not found; retry later"}
}

// OutsiderLimit bounds how many calls without standing one principal may make: a token
// bucket of Burst calls, refilled one every Every. Each such call writes an event on the
// caller's chain, so the limit bounds that chain's growth too. It is per replica.
type OutsiderLimit struct {
	Every time.Duration // default 2s: 30 a minute sustained
	Burst int           // default 30
}

func (l OutsiderLimit) withDefaults() OutsiderLimit {
	if l.Every <= 0 {
		l.Every = 2 * time.Second
	}
	if l.Burst <= 0 {
		l.Burst = 30
	}
	return l
}

// limiter is a token bucket per principal. Principals come from the tokens file, so the
// map stays as small as it is; full buckets are dropped anyway when it grows.
type limiter struct {
	lim     OutsiderLimit
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(l OutsiderLimit) *limiter {
	return &limiter{lim: l.withDefaults(), buckets: map[string]*bucket{}}
}

// level refills id's bucket up to now and returns it.
func (l *limiter) level(id string, now time.Time) *bucket {
	b, ok := l.buckets[id]
	if !ok {
		if len(l.buckets) >= 10000 {
			for k, old := range l.buckets {
				if now.Sub(old.at) >= time.Duration(l.lim.Burst)*l.lim.Every {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{tokens: float64(l.lim.Burst), at: now}
		l.buckets[id] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(float64(l.lim.Burst), b.tokens+float64(d)/float64(l.lim.Every))
		b.at = now
	}
	return b
}

// take takes a token of id's, and reports whether there was one.
func (l *limiter) take(id string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.level(id, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
