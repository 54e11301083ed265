package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"

	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agate-pdp/agate/decision"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/store"
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

var statusEnums = map[store.Status]agatev1.JobStatus{
	store.StatusPendingApproval:      agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL,
	store.StatusApproved:             agatev1.JobStatus_JOB_STATUS_APPROVED,
	store.StatusApprovedAndPublished: agatev1.JobStatus_JOB_STATUS_APPROVED_AND_PUBLISHED,
	store.StatusAllowed:              agatev1.JobStatus_JOB_STATUS_ALLOWED,
	store.StatusAllowedAndPublished:  agatev1.JobStatus_JOB_STATUS_ALLOWED_AND_PUBLISHED,
	store.StatusDenied:               agatev1.JobStatus_JOB_STATUS_DENIED,
	store.StatusRejected:             agatev1.JobStatus_JOB_STATUS_REJECTED,
	store.StatusExpired:              agatev1.JobStatus_JOB_STATUS_EXPIRED,
	store.StatusCancelled:            agatev1.JobStatus_JOB_STATUS_CANCELLED,
	store.StatusConflict:             agatev1.JobStatus_JOB_STATUS_CONFLICT,
	store.StatusSucceeded:            agatev1.JobStatus_JOB_STATUS_SUCCEEDED,
	store.StatusFailed:               agatev1.JobStatus_JOB_STATUS_FAILED,
}

func statusEnum(s store.Status) agatev1.JobStatus { return statusEnums[s] }

func outcomeEnum(o string) agatev1.Outcome {
	switch o {
	case "succeeded":
		return agatev1.Outcome_OUTCOME_SUCCEEDED
	case "failed":
		return agatev1.Outcome_OUTCOME_FAILED
	}
	return agatev1.Outcome_OUTCOME_UNSPECIFIED
}

// wireJob rebuilds the submitted job from its stored form: the payload bytes exactly as
// received, so a worker runs exactly what was hashed and approved.
func wireJob(j store.Job) *agatev1.Job {
	var labels map[string]any
	_ = json.Unmarshal(j.Labels, &labels) // stored canonical JSON written by the lifecycle
	pl := make(map[string]*structpb.Value, len(labels))
	for k, v := range labels {
		if pv, err := structpb.NewValue(v); err == nil {
			pl[k] = pv
		}
	}
	return &agatev1.Job{JobId: j.ID, Topic: j.Topic, Actor: j.Actor, Labels: pl,
		Payload: j.Payload, TraceId: j.TraceID}
}

func approvalRequirement(roles []string, quorum int, ttlSeconds int64) *agatev1.ApprovalRequirement {
	if len(roles) == 0 {
		return nil
	}
	return &agatev1.ApprovalRequirement{Roles: roles, Quorum: int32(quorum), TtlSeconds: ttlSeconds}
}

func wireApprovals(as []store.Approval) []*agatev1.Approval {
	out := make([]*agatev1.Approval, len(as))
	for i, a := range as {
		out[i] = &agatev1.Approval{ApprovedBy: a.Approver, ApprovedRole: a.Role, ApprovedAt: a.At, Reason: a.Reason}
	}
	return out
}

func jobView(j store.Job, approvals []store.Approval) *agatev1.JobView {
	var ttl int64
	if j.ExpiresAt > 0 {
		ttl = (j.ExpiresAt - j.DecidedAt) / 1e6
	}
	return &agatev1.JobView{
		Job: wireJob(j), Status: statusEnum(j.Status), Decision: decisionEnum(j.Decision),
		RuleId: j.RuleID, Reason: j.Reason, MatchedRules: j.MatchedRules,
		PolicySnapshot: j.Snapshot, JobHash: j.Hash, SubmittedBy: j.SubmittedBy,
		Approvals: wireApprovals(approvals), RequiredApproval: approvalRequirement(j.ApprovalRoles, j.Quorum, ttl),
		ExpiresAt: j.ExpiresAt, Attempt: int32(j.Attempt), Outcome: outcomeEnum(j.Outcome),
		DecidedAt: j.DecidedAt, UpdatedAt: j.UpdatedAt, Revision: int32(j.Revision), PublishedAt: j.PublishedAt,
	}
}

func policyIssues(warns []decision.Warning) []*agatev1.PolicyIssue {
	out := make([]*agatev1.PolicyIssue, len(warns))
	for i, w := range warns {
		out[i] = &agatev1.PolicyIssue{Line: int32(w.Line), Field: w.Label, Message: w.Msg}
	}
	return out
}
