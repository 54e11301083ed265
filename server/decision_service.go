package server

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
)

// decisionService adapts the job lifecycle to agate.v1.DecisionService. Who may act on
// which job is the lifecycle's to decide (its standing rules); handlers only convert.
type decisionService struct {
	agatev1.UnimplementedDecisionServiceServer
	s *Server
}

func (d *decisionService) fail(ctx context.Context, err error) error {
	d.s.countError(err)
	return toStatus(ctx, d.s.log, err)
}

// AccessRequestJobPrefix starts the job ids of AuthZEN access requests, which Agate
// derives from the submitter and its Idempotency-Key. Decide refuses them, so no
// principal can take the id a retry of another's access request will name.
const AccessRequestJobPrefix = "arq_"

func (d *decisionService) Decide(ctx context.Context, req *agatev1.DecideRequest) (*agatev1.DecideResponse, error) {
	r, err := decideRequest(ctx, req.GetJob())
	if err == nil && strings.HasPrefix(r.JobID, AccessRequestJobPrefix) {
		err = &jobs.Error{Code: jobs.CodeInvalidArgument, Reason: jobs.ReasonInvalidField, Field: "job.job_id",
			Msg:  "job.job_id: ids starting " + AccessRequestJobPrefix + " are reserved for AuthZEN access requests",
			Meta: map[string]string{"field": "job.job_id"}}
	}
	if err != nil {
		return nil, d.fail(ctx, err)
	}
	res, err := d.s.jobs.Decide(ctx, principalFrom(ctx), r)
	if err != nil {
		return nil, d.fail(ctx, err)
	}
	j := res.View()
	if !res.AlreadyDecided && d.s.metrics != nil {
		d.s.metrics.decisions.WithLabelValues(j.Decision).Inc()
	}
	return &agatev1.DecideResponse{
		JobId: j.ID, Decision: decisionEnum(j.Decision), Status: statusEnum(j.Status),
		RuleId: j.RuleID, Reason: j.Reason, MatchedRules: j.MatchedRules,
		PolicySnapshot: j.Snapshot, JobHash: j.Hash, TraceId: j.TraceID,
		RequiredApproval: approvalRequirement(j.Required),
		ExpiresAt:        j.ExpiresAt, DecidedAt: j.DecidedAt, Revision: int32(j.Revision),
		AlreadyDecided: res.AlreadyDecided,
	}, nil
}

func (d *decisionService) Approve(ctx context.Context, req *agatev1.ApproveRequest) (*agatev1.ApproveResponse, error) {
	res, err := d.s.jobs.Approve(ctx, principalFrom(ctx), jobs.ApproveRequest{JobID: req.GetJobId(), JobHash: req.GetJobHash(), Reason: req.GetReason()})
	if err != nil {
		d.s.countApproval("refused", err)
		return nil, d.fail(ctx, err)
	}
	outcome := "approved"
	if res.AlreadyApproved {
		outcome = "already_approved"
	}
	d.s.countApproval(outcome, nil)
	j := res.View()
	resp := &agatev1.ApproveResponse{JobId: j.ID, Status: statusEnum(j.Status), Approvals: wireApprovals(j.Approvals),
		Quorum: int32(res.Job.Quorum), PolicySnapshot: j.Snapshot, JobHash: j.Hash, ExpiresAt: j.ExpiresAt,
		AlreadyApproved: res.AlreadyApproved}
	if mine := res.Mine(); mine.By != "" {
		resp.Approval = wireApproval(mine)
	}
	return resp, nil
}

func (d *decisionService) Reject(ctx context.Context, req *agatev1.RejectRequest) (*agatev1.RejectResponse, error) {
	res, err := d.s.jobs.Reject(ctx, principalFrom(ctx), jobs.RejectRequest{JobID: req.GetJobId(), JobHash: req.GetJobHash(), Reason: req.GetReason()})
	if err != nil {
		d.s.countApproval("refused", err)
		return nil, d.fail(ctx, err)
	}
	outcome := "rejected"
	if res.AlreadyRejected {
		outcome = "already_rejected"
	}
	d.s.countApproval(outcome, nil)
	j := res.View()
	// The first rejection as stored, never the caller: a repeat names who rejected first.
	return &agatev1.RejectResponse{JobId: j.ID, Status: statusEnum(j.Status), RejectedBy: res.RejectedBy,
		RejectedRole: res.RejectedRole, RejectedAt: res.RejectedAt, AlreadyRejected: res.AlreadyRejected}, nil
}

func (d *decisionService) Publish(ctx context.Context, req *agatev1.PublishRequest) (*agatev1.PublishResponse, error) {
	res, err := d.s.jobs.Publish(ctx, principalFrom(ctx), jobs.PublishRequest{JobID: req.GetJobId(), JobHash: req.GetJobHash()})
	if err != nil {
		return nil, d.fail(ctx, err)
	}
	return &agatev1.PublishResponse{Job: jobView(res.View()), AlreadyPublished: res.AlreadyPublished}, nil
}

func (d *decisionService) ReportOutcome(ctx context.Context, req *agatev1.ReportOutcomeRequest) (*agatev1.ReportOutcomeResponse, error) {
	var ok bool
	switch req.GetOutcome() {
	case agatev1.Outcome_OUTCOME_SUCCEEDED:
		ok = true
	case agatev1.Outcome_OUTCOME_FAILED:
	default:
		return nil, d.fail(ctx, invalid("outcome", "must be OUTCOME_SUCCEEDED or OUTCOME_FAILED"))
	}
	res, err := d.s.jobs.ReportOutcome(ctx, principalFrom(ctx), jobs.OutcomeRequest{JobID: req.GetJobId(),
		Attempt: int64(req.GetAttempt()), Succeeded: ok, Detail: req.GetDetail()})
	if err != nil {
		return nil, d.fail(ctx, err)
	}
	j := res.View()
	return &agatev1.ReportOutcomeResponse{JobId: j.ID, Status: statusEnum(j.Status), Attempt: int32(j.Attempt),
		Outcome: outcomeEnum(j.Outcome), AlreadyReported: res.AlreadyReported}, nil
}

func (d *decisionService) ListReplayable(ctx context.Context, req *agatev1.ListReplayableRequest) (*agatev1.ListReplayableResponse, error) {
	list, next, err := d.s.jobs.ListReplayable(ctx, principalFrom(ctx), jobs.ReplayableQuery{
		OlderThan: time.Duration(req.GetOlderThanSeconds()) * time.Second,
		PageSize:  int(req.GetPageSize()), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, d.fail(ctx, err)
	}
	resp := &agatev1.ListReplayableResponse{NextPageToken: next}
	for _, v := range list {
		resp.Jobs = append(resp.Jobs, jobView(v))
	}
	return resp, nil
}

func (d *decisionService) Replay(ctx context.Context, req *agatev1.ReplayRequest) (*agatev1.ReplayResponse, error) {
	res, err := d.s.jobs.Replay(ctx, principalFrom(ctx), jobs.ReplayRequest{JobID: req.GetJobId(), JobHash: req.GetJobHash(),
		ExpectedAttempt: int64(req.GetExpectedAttempt()), ReasonCode: req.GetReasonCode(), Reason: req.GetReason()})
	if err != nil {
		return nil, d.fail(ctx, err)
	}
	if !res.AlreadyReplayed && d.s.metrics != nil {
		d.s.metrics.replays.WithLabelValues(req.GetReasonCode()).Inc()
	}
	return &agatev1.ReplayResponse{Job: jobView(res.View()), AlreadyReplayed: res.AlreadyReplayed}, nil
}

func (d *decisionService) Cancel(ctx context.Context, req *agatev1.CancelRequest) (*agatev1.CancelResponse, error) {
	res, err := d.s.jobs.Cancel(ctx, principalFrom(ctx), jobs.CancelRequest{JobID: req.GetJobId(), Reason: req.GetReason()})
	if err != nil {
		return nil, d.fail(ctx, err)
	}
	j := res.View()
	return &agatev1.CancelResponse{JobId: j.ID, Status: statusEnum(j.Status), CancelledBy: res.CancelledBy,
		CancelledAt: res.CancelledAt, AlreadyCancelled: res.AlreadyCancelled}, nil
}

// GetJob shows a job to a caller with standing on it; anyone else gets the answer a
// job that does not exist gets.
func (d *decisionService) GetJob(ctx context.Context, req *agatev1.GetJobRequest) (*agatev1.GetJobResponse, error) {
	view, err := d.s.jobs.GetJob(ctx, principalFrom(ctx), req.GetJobId())
	if err != nil {
		return nil, d.fail(ctx, err)
	}
	return &agatev1.GetJobResponse{Job: jobView(view.View())}, nil
}

func (d *decisionService) ListPendingApprovals(ctx context.Context, req *agatev1.ListPendingApprovalsRequest) (*agatev1.ListPendingApprovalsResponse, error) {
	q := jobs.PendingQuery{Topic: req.GetTopic(), Actor: req.GetActor(), RuleID: req.GetRuleId(),
		Snapshot: req.GetPolicySnapshot(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()}
	list, next, err := d.s.jobs.ListPending(ctx, principalFrom(ctx), q)
	if err != nil {
		return nil, d.fail(ctx, err)
	}
	now := d.s.now().UnixMicro()
	resp := &agatev1.ListPendingApprovalsResponse{NextPageToken: next}
	for _, v := range list {
		view := v.View()
		left := max((view.ExpiresAt-now)/1e6, 0)
		resp.PendingApprovals = append(resp.PendingApprovals,
			&agatev1.PendingApproval{Job: jobView(view), TimeLeftSeconds: left})
	}
	return resp, nil
}

// WatchJobs streams the transitions of the jobs the caller has standing on; who sees
// which is the lifecycle's to decide, per event.
func (d *decisionService) WatchJobs(req *agatev1.WatchJobsRequest, stream grpc.ServerStreamingServer[agatev1.WatchJobsResponse]) error {
	ctx := stream.Context()
	err := d.s.jobs.Watch(ctx, principalFrom(ctx), req.GetCursor(), func(it jobs.WatchItem) error {
		msg := &agatev1.WatchJobsResponse{Cursor: it.Cursor}
		if c := it.Change; c != nil {
			view := c.Job.View()
			msg.Change = &agatev1.JobChange{EventId: c.EventID, Kind: string(c.Kind), At: c.At,
				Principal: c.Principal, Status: statusEnum(c.Status), Job: jobView(view)}
			if view.Status == jobs.StatusPendingApproval {
				msg.Change.TimeLeftSeconds = max((view.ExpiresAt-d.s.now().UnixMicro())/1e6, 0)
			}
		}
		return stream.Send(msg)
	})
	if err != nil {
		return d.fail(ctx, err)
	}
	return nil
}
