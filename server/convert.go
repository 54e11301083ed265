package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"

	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agate-pdp/agate/decision"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
)

func invalid(field, format string, args ...any) error {
	return &jobs.Error{Code: jobs.CodeInvalidArgument, Reason: "INVALID_FIELD", Field: field,
		Msg: field + ": " + fmt.Sprintf(format, args...)}
}

// decideRequest converts a wire job. Labels must be scalars; trace_id falls back to the
// trace of the call's span, which continues the caller's W3C traceparent when it sent
// one, then to a fresh id, so every job's evidence is traceable.
func decideRequest(ctx context.Context, j *agatev1.Job) (jobs.DecideRequest, error) {
	if j == nil {
		return jobs.DecideRequest{}, invalid("job", "is required")
	}
	labels := make(map[string]any, len(j.GetLabels()))
	for k, v := range j.GetLabels() {
		switch x := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			labels[k] = x.StringValue
		case *structpb.Value_BoolValue:
			labels[k] = x.BoolValue
		case *structpb.Value_NumberValue:
			if math.IsNaN(x.NumberValue) || math.IsInf(x.NumberValue, 0) {
				return jobs.DecideRequest{}, invalid("job.labels."+k, "must be a finite number")
			}
			labels[k] = x.NumberValue
		default:
			return jobs.DecideRequest{}, invalid("job.labels."+k, "must be a string, bool or number")
		}
	}
	trace := j.GetTraceId()
	if sc := oteltrace.SpanContextFromContext(ctx); trace == "" && sc.HasTraceID() {
		trace = sc.TraceID().String()
	}
	if trace == "" {
		trace = newTraceID()
	}
	return jobs.DecideRequest{JobID: j.GetJobId(), Topic: j.GetTopic(), Actor: j.GetActor(),
		Labels: labels, Payload: j.GetPayload(), TraceID: trace}, nil
}

func newTraceID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var decisionEnums = map[string]agatev1.Decision{
	"allow":         agatev1.Decision_DECISION_ALLOW,
	"deny":          agatev1.Decision_DECISION_DENY,
	"require_human": agatev1.Decision_DECISION_REQUIRE_HUMAN,
}

func decisionEnum(d string) agatev1.Decision { return decisionEnums[d] }

var statusEnums = map[jobs.Status]agatev1.JobStatus{
	jobs.StatusPendingApproval:      agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL,
	jobs.StatusApproved:             agatev1.JobStatus_JOB_STATUS_APPROVED,
	jobs.StatusApprovedAndPublished: agatev1.JobStatus_JOB_STATUS_APPROVED_AND_PUBLISHED,
	jobs.StatusAllowed:              agatev1.JobStatus_JOB_STATUS_ALLOWED,
	jobs.StatusAllowedAndPublished:  agatev1.JobStatus_JOB_STATUS_ALLOWED_AND_PUBLISHED,
	jobs.StatusDenied:               agatev1.JobStatus_JOB_STATUS_DENIED,
	jobs.StatusRejected:             agatev1.JobStatus_JOB_STATUS_REJECTED,
	jobs.StatusExpired:              agatev1.JobStatus_JOB_STATUS_EXPIRED,
	jobs.StatusCancelled:            agatev1.JobStatus_JOB_STATUS_CANCELLED,
	jobs.StatusConflict:             agatev1.JobStatus_JOB_STATUS_CONFLICT,
	jobs.StatusSucceeded:            agatev1.JobStatus_JOB_STATUS_SUCCEEDED,
	jobs.StatusFailed:               agatev1.JobStatus_JOB_STATUS_FAILED,
}

func statusEnum(s jobs.Status) agatev1.JobStatus { return statusEnums[s] }

func outcomeEnum(o string) agatev1.Outcome {
	switch o {
	case "succeeded":
		return agatev1.Outcome_OUTCOME_SUCCEEDED
	case "failed":
		return agatev1.Outcome_OUTCOME_FAILED
	}
	return agatev1.Outcome_OUTCOME_UNSPECIFIED
}

// wireJob rebuilds the submitted job from the lifecycle's view: the payload bytes exactly
// as received, so a worker runs exactly what was hashed and approved.
func wireJob(v *jobs.View) *agatev1.Job {
	pl := make(map[string]*structpb.Value, len(v.Labels))
	for k, l := range v.Labels {
		if pv, err := structpb.NewValue(l); err == nil {
			pl[k] = pv
		}
	}
	return &agatev1.Job{JobId: v.ID, Topic: v.Topic, Actor: v.Actor, Labels: pl,
		Payload: v.Payload, TraceId: v.TraceID}
}

func approvalRequirement(r *jobs.ApprovalRequirement) *agatev1.ApprovalRequirement {
	if r == nil {
		return nil
	}
	return &agatev1.ApprovalRequirement{Roles: r.Roles, Quorum: int32(r.Quorum), TtlSeconds: int64(r.TTL.Seconds())}
}

func wireApproval(a jobs.Approval) *agatev1.Approval {
	return &agatev1.Approval{ApprovedBy: a.By, ApprovedRole: a.Role, ApprovedAt: a.At, Reason: a.Reason}
}

func wireApprovals(as []jobs.Approval) []*agatev1.Approval {
	out := make([]*agatev1.Approval, len(as))
	for i, a := range as {
		out[i] = wireApproval(a)
	}
	return out
}

func jobView(v jobs.View) *agatev1.JobView {
	return &agatev1.JobView{
		Job: wireJob(&v), Status: statusEnum(v.Status), Decision: decisionEnum(v.Decision),
		RuleId: v.RuleID, Reason: v.Reason, MatchedRules: v.MatchedRules,
		PolicySnapshot: v.Snapshot, JobHash: v.Hash, SubmittedBy: v.SubmittedBy,
		Approvals: wireApprovals(v.Approvals), RequiredApproval: approvalRequirement(v.Required),
		ExpiresAt: v.ExpiresAt, Attempt: int32(v.Attempt), Outcome: outcomeEnum(v.Outcome),
		DecidedAt: v.DecidedAt, UpdatedAt: v.UpdatedAt, Revision: int32(v.Revision), PublishedAt: v.PublishedAt,
		Conflict: v.Conflict,
	}
}

func policyIssues(warns []decision.Warning) []*agatev1.PolicyIssue {
	out := make([]*agatev1.PolicyIssue, len(warns))
	for i, w := range warns {
		out[i] = &agatev1.PolicyIssue{Line: int32(w.Line), Field: w.Label, Message: w.Msg}
	}
	return out
}
