package e2e

import (
	"context"
	"math/rand/v2"
	"strings"

	"google.golang.org/grpc/codes"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// wrongHash is a well-formed hash of nothing the workload sends.
var wrongHash = "sha256:" + strings.Repeat("0", 64)

var replayCodes = []string{"WORKER_OUTAGE", "PUBLISH_LOST", "OUTCOME_TIMEOUT", "OPERATOR_REQUEST"}

// first is a job's part before the policy changes.
func (w *workload) first(ctx context.Context, rng *rand.Rand, j *wjob) {
	if !w.decide(ctx, rng, j) {
		return
	}
	switch j.path {
	case "allow":
		if maybe(rng, j, 20) {
			w.decide(ctx, rng, j) // a retried Decide: already_decided, no event
		}
		if maybe(rng, j, 85) && w.publish(ctx, rng, j, j.hash) {
			w.maybeOutcome(ctx, rng, j, 1)
		}
	case "deny":
		if maybe(rng, j, 30) { // nothing to publish: refused, and evidence, for the dispatcher has standing
			if w.call(j, codes.FailedPrecondition, "NOT_PENDING", func() error {
				_, err := w.replica(rng).Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: j.id, JobHash: j.hash})
				return err
			}) {
				w.tl.add("refusal", "NOT_PENDING")
			}
		}
	case "approve":
		first, second := approvers(rng)
		w.approve(ctx, rng, j, first, j.hash)
		if maybe(rng, j, 30) {
			w.approve(ctx, rng, j, first, j.hash) // the approver's own repeat: already_approved
		}
		if maybe(rng, j, 20) {
			// Another approver's Approve of an approved job is no repeat of theirs.
			w.refused(ctx, rng, j, second, j.hash, codes.FailedPrecondition, "ALREADY_APPROVED")
		}
		if w.publish(ctx, rng, j, j.hash) {
			if maybe(rng, j, 20) {
				w.publish(ctx, rng, j, j.hash) // already_published, no event
			}
			w.maybeOutcome(ctx, rng, j, 1)
		}
	case "reject":
		first, second := approvers(rng)
		w.reject(ctx, rng, j, first)
		if maybe(rng, j, 40) {
			w.reject(ctx, rng, j, second) // already_rejected
		}
		if maybe(rng, j, 40) {
			w.refused(ctx, rng, j, tokAlice, j.hash, codes.FailedPrecondition, "ALREADY_REJECTED")
		}
	case "mismatch":
		w.conflict(ctx, rng, j, "approve")
		w.approve(ctx, rng, j, tokAlice, j.hash)
		w.conflict(ctx, rng, j, "publish")
		w.publish(ctx, rng, j, j.hash)
	case "replay":
		w.approve(ctx, rng, j, tokBob, j.hash)
		w.publish(ctx, rng, j, j.hash)
		code := replayCodes[rng.IntN(len(replayCodes))]
		w.replay(ctx, rng, j, code)
		if maybe(rng, j, 50) {
			w.replay(ctx, rng, j, code) // already_replayed, no event
		}
		w.maybeOutcome(ctx, rng, j, 2)
	case "self":
		w.refused(ctx, rng, j, tokAlice, j.hash, codes.PermissionDenied, "SELF_APPROVAL")
		w.approve(ctx, rng, j, tokBob, j.hash)
	case "drift-approved":
		w.approve(ctx, rng, j, tokAlice, j.hash)
	case "cancel":
		if w.call(j, codes.OK, "", func() error {
			r, err := w.replica(rng).Cancel(as(ctx, tokDecide), &agatev1.CancelRequest{JobId: j.id, Reason: "order withdrawn"})
			if err == nil {
				w.status(j, r.Status)
			}
			return err
		}) {
			w.tl.add("cancel", "")
		}
	}
}

// second is a job's part after the policy changed.
func (w *workload) second(ctx context.Context, rng *rand.Rand, j *wjob) {
	switch j.path {
	case "drift-pending":
		w.conflict(ctx, rng, j, "drift")
		w.decide(ctx, rng, j) // re-decided under the new policy
		w.approve(ctx, rng, j, tokAlice, j.hash)
		w.publish(ctx, rng, j, j.hash)
	case "drift-approved":
		w.conflict(ctx, rng, j, "drift-publish")
	case "allow-drift":
		w.publish(ctx, rng, j, j.hash) // re-evaluated under the new policy: still allowed
	}
}

func approvers(rng *rand.Rand) (string, string) {
	if rng.IntN(2) == 0 {
		return tokAlice, tokBob
	}
	return tokBob, tokAlice
}

func (w *workload) status(j *wjob, s agatev1.JobStatus) {
	w.tl.update(func(tl *tally) { tl.status[j.id] = lower(s.String(), "JOB_STATUS_") })
}

func (w *workload) decide(ctx context.Context, rng *rand.Rand, j *wjob) bool {
	return w.call(j, codes.OK, "", func() error {
		d, err := w.replica(rng).Decide(as(ctx, tokDecide), &agatev1.DecideRequest{Job: j.req})
		if err != nil {
			return err
		}
		j.hash = d.JobHash
		w.status(j, d.Status)
		if !d.AlreadyDecided {
			w.tl.add("decision", "")
			w.tl.update(func(tl *tally) { tl.decisions[lower(d.Decision.String(), "DECISION_")]++ })
		}
		return nil
	})
}

func (w *workload) approve(ctx context.Context, rng *rand.Rand, j *wjob, tok, hash string) bool {
	return w.call(j, codes.OK, "", func() error {
		r, err := w.replica(rng).Approve(as(ctx, tok), &agatev1.ApproveRequest{JobId: j.id, JobHash: hash, Reason: "checked"})
		if err != nil {
			return err
		}
		w.status(j, r.Status)
		w.tl.add("approval", "")
		if r.AlreadyApproved {
			w.tl.update(func(tl *tally) { tl.alreadyApproved++ })
		}
		return nil
	})
}

func (w *workload) reject(ctx context.Context, rng *rand.Rand, j *wjob, tok string) {
	w.call(j, codes.OK, "", func() error {
		r, err := w.replica(rng).Reject(as(ctx, tok), &agatev1.RejectRequest{JobId: j.id, JobHash: j.hash, Reason: "not this one"})
		if err != nil {
			return err
		}
		w.status(j, r.Status)
		w.tl.add("rejection", "")
		if r.AlreadyRejected {
			w.tl.update(func(tl *tally) { tl.alreadyRejected++ })
		}
		return nil
	})
}

// refused is an Approve the lifecycle refuses and records as a refusal event.
func (w *workload) refused(ctx context.Context, rng *rand.Rand, j *wjob, tok, hash string, code codes.Code, reason string) {
	if w.call(j, code, reason, func() error {
		_, err := w.replica(rng).Approve(as(ctx, tok), &agatev1.ApproveRequest{JobId: j.id, JobHash: hash})
		return err
	}) {
		w.tl.add("refusal", reason)
	}
}

// conflict provokes a conflict event: a hash mismatch at Approve or Publish, or
// snapshot drift at Approve (the job moves to conflict) or Publish (likewise).
func (w *workload) conflict(ctx context.Context, rng *rand.Rand, j *wjob, how string) {
	reason, status := "JOB_HASH_MISMATCH", ""
	var fn func() error
	switch how {
	case "approve":
		fn = func() error {
			_, err := w.replica(rng).Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: j.id, JobHash: wrongHash})
			return err
		}
	case "publish":
		fn = func() error {
			_, err := w.replica(rng).Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: j.id, JobHash: wrongHash})
			return err
		}
	case "drift":
		reason, status = "SNAPSHOT_DRIFT", "conflict"
		fn = func() error {
			_, err := w.replica(rng).Approve(as(ctx, tokAlice), &agatev1.ApproveRequest{JobId: j.id, JobHash: j.hash})
			return err
		}
	case "drift-publish":
		reason, status = "SNAPSHOT_DRIFT", "conflict"
		fn = func() error {
			_, err := w.replica(rng).Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: j.id, JobHash: j.hash})
			return err
		}
	}
	if !w.call(j, codes.Aborted, reason, fn) {
		return
	}
	w.tl.add("conflict", reason)
	if status != "" {
		w.tl.update(func(tl *tally) { tl.status[j.id] = status })
	}
}

func (w *workload) publish(ctx context.Context, rng *rand.Rand, j *wjob, hash string) bool {
	return w.call(j, codes.OK, "", func() error {
		r, err := w.replica(rng).Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: j.id, JobHash: hash})
		if err != nil {
			return err
		}
		w.status(j, r.Job.Status)
		if !r.AlreadyPublished {
			w.tl.add("publish", "")
		}
		return nil
	})
}

func (w *workload) replay(ctx context.Context, rng *rand.Rand, j *wjob, code string) {
	w.call(j, codes.OK, "", func() error {
		r, err := w.replica(rng).Replay(as(ctx, tokDispatch), &agatev1.ReplayRequest{JobId: j.id, JobHash: j.hash,
			ExpectedAttempt: 1, ReasonCode: code, Reason: "the worker did not report back"})
		if err != nil {
			return err
		}
		w.status(j, r.Job.Status)
		if !r.AlreadyReplayed {
			w.tl.add("replay", code)
			w.tl.update(func(tl *tally) { tl.replaysByReason[code]++; tl.replayed[j.id] = true })
		}
		return nil
	})
}

// maybeOutcome reports an outcome for the attempt seven times in ten.
func (w *workload) maybeOutcome(ctx context.Context, rng *rand.Rand, j *wjob, attempt int32) {
	if !maybe(rng, j, 70) {
		return
	}
	outcome := agatev1.Outcome_OUTCOME_SUCCEEDED
	if rng.IntN(4) == 0 {
		outcome = agatev1.Outcome_OUTCOME_FAILED
	}
	w.call(j, codes.OK, "", func() error {
		r, err := w.replica(rng).ReportOutcome(as(ctx, tokDispatch), &agatev1.ReportOutcomeRequest{JobId: j.id,
			Attempt: attempt, Outcome: outcome, Detail: "done"})
		if err != nil {
			return err
		}
		w.status(j, r.Status)
		if !r.AlreadyReported {
			w.tl.add("outcome", "")
		}
		return nil
	})
}
