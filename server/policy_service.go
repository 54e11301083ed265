package server

import (
	"context"
	"errors"

	"github.com/agate-pdp/agate/decision"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
)

// policyService adapts snapshot management and what-if evaluation to agate.v1.PolicyService.
type policyService struct {
	agatev1.UnimplementedPolicyServiceServer
	s *Server
}

func (ps *policyService) fail(ctx context.Context, err error) error {
	return toStatus(ctx, ps.s.log, err)
}

func wireSnapshot(s snapshots.Snapshot, active bool) *agatev1.Snapshot {
	return &agatev1.Snapshot{SnapshotId: s.ID, Sha256: s.SHA256, Source: string(s.Source),
		CreatedAt: s.CreatedAt.UnixMicro(), CreatedBy: s.CreatedBy, RuleCount: int32(s.RuleCount), Active: active}
}

func (ps *policyService) PutPolicy(ctx context.Context, req *agatev1.PutPolicyRequest) (*agatev1.PutPolicyResponse, error) {
	if req.GetSource() == "" {
		return nil, ps.fail(ctx, invalid("source", "is required"))
	}
	res, err := ps.s.jobs.PutPolicy(ctx, principalFrom(ctx), []byte(req.GetSource()), req.GetActivate())
	if err != nil {
		return nil, ps.fail(ctx, err)
	}
	if res.Activated && ps.s.metrics != nil {
		ps.s.metrics.SetActiveSnapshot(res.Snapshot.ID)
	}
	return &agatev1.PutPolicyResponse{Snapshot: wireSnapshot(res.Snapshot, res.Activated),
		Warnings: policyIssues(res.Warnings), Created: res.Created, Activated: res.Activated,
		PreviousSnapshotId: res.Previous}, nil
}

func (ps *policyService) ActivateSnapshot(ctx context.Context, req *agatev1.ActivateSnapshotRequest) (*agatev1.ActivateSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, ps.fail(ctx, invalid("snapshot_id", "is required"))
	}
	res, err := ps.s.jobs.ActivateSnapshot(ctx, principalFrom(ctx), req.GetSnapshotId(), req.GetDryRun())
	if err != nil {
		return nil, ps.fail(ctx, err)
	}
	if res.Activated && ps.s.metrics != nil {
		ps.s.metrics.SetActiveSnapshot(req.GetSnapshotId())
	}
	return &agatev1.ActivateSnapshotResponse{PreviousSnapshotId: res.Previous, Activated: res.Activated,
		AlreadyActive:     !req.GetDryRun() && !res.Activated && res.Previous == req.GetSnapshotId(),
		WouldDriftPending: int64(res.PendingDrift), WouldDriftApproved: int64(res.ApprovedDrift)}, nil
}

func (ps *policyService) GetSnapshot(ctx context.Context, req *agatev1.GetSnapshotRequest) (*agatev1.GetSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, ps.fail(ctx, invalid("snapshot_id", "is required"))
	}
	s, err := ps.s.jobs.GetSnapshot(ctx, req.GetSnapshotId())
	if err != nil {
		return nil, ps.fail(ctx, err)
	}
	return &agatev1.GetSnapshotResponse{Snapshot: wireSnapshot(s, s.ID == ps.activeID())}, nil
}

func (ps *policyService) activeID() string {
	if a, ok := ps.s.jobs.Active(); ok {
		return a.Snapshot.ID
	}
	return ""
}

func (ps *policyService) ListSnapshots(ctx context.Context, req *agatev1.ListSnapshotsRequest) (*agatev1.ListSnapshotsResponse, error) {
	list, next, err := ps.s.jobs.ListSnapshots(ctx, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, ps.fail(ctx, err)
	}
	active := ps.activeID()
	resp := &agatev1.ListSnapshotsResponse{NextPageToken: next, ActiveSnapshotId: active}
	for _, s := range list {
		resp.Snapshots = append(resp.Snapshots, wireSnapshot(s, s.ID == active))
	}
	return resp, nil
}

// ValidatePolicy reports every problem in a policy as data (valid=false) rather than as
// an error: the caller asked a question, and the answer is the list.
func (ps *policyService) ValidatePolicy(ctx context.Context, req *agatev1.ValidatePolicyRequest) (*agatev1.ValidatePolicyResponse, error) {
	snap, _, warns, err := snapshots.New([]byte(req.GetSource()), principalFrom(ctx).ID, ps.s.now())
	if err != nil {
		resp := &agatev1.ValidatePolicyResponse{Valid: false}
		var multi interface{ Unwrap() []error }
		errs := []error{err}
		if errors.As(err, &multi) {
			errs = multi.Unwrap()
		}
		for _, e := range errs {
			var pe *decision.PolicyError
			if errors.As(e, &pe) {
				resp.Errors = append(resp.Errors, &agatev1.PolicyIssue{Line: int32(pe.Line), Field: pe.Field, Message: pe.Msg})
			} else {
				resp.Errors = append(resp.Errors, &agatev1.PolicyIssue{Message: e.Error()})
			}
		}
		return resp, nil
	}
	return &agatev1.ValidatePolicyResponse{Valid: true, Warnings: policyIssues(warns), SnapshotId: snap.ID,
		Sha256: snap.SHA256, RuleCount: int32(snap.RuleCount)}, nil
}

func (ps *policyService) Evaluate(ctx context.Context, req *agatev1.EvaluateRequest) (*agatev1.EvaluateResponse, error) {
	r, err := decideRequest(ctx, req.GetJob())
	if err != nil {
		return nil, ps.fail(ctx, err)
	}
	res, err := ps.s.jobs.Evaluate(ctx, r, req.GetSnapshotId())
	if err != nil {
		return nil, ps.fail(ctx, err)
	}
	out := res.Result
	resp := &agatev1.EvaluateResponse{Decision: decisionEnum(out.Decision.String()), RuleId: out.RuleID,
		Reason: out.Reason, MatchedRules: out.Matched, SnapshotId: res.Snapshot, JobHash: res.JobHash}
	if out.Decision == decision.RequireHuman {
		resp.RequiredApproval = approvalRequirement(&jobs.ApprovalRequirement{Roles: out.Approval.Roles, Quorum: out.Approval.Quorum, TTL: out.Approval.TTL})
	}
	return resp, nil
}
