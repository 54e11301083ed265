package server

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// TestInsiderSquatAccessRequestID: an AuthZEN access request's job id is derived from
// its submitter and Idempotency-Key, so a principal who learnt another's key could
// compute the id and Decide it first, turning the other's retries into conflicts.
// Decide refuses the namespace, whoever calls.
func TestInsiderSquatAccessRequestID(t *testing.T) {
	t.Parallel()
	c, _ := startDecisionServer(t)
	_, err := c.Decide(bearer("tok-svc"), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: AccessRequestJobPrefix + "squatted", Topic: "pay.out", Actor: "agent"}})
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("Decide of an access request id: %v", err)
	}
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	if reason != "INVALID_FIELD" {
		t.Fatalf("reason %q", reason)
	}
}
