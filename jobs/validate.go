package jobs

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/agate-pdp/agate/canonical"
	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/identity"
)

// Input limits. Every request is checked against them before any transaction, so bad
// input changes nothing.
const (
	maxJobIDLen   = 128
	maxActorRunes = 256
	maxPayload    = 1 << 20
	maxTraceIDLen = 128
	maxReasonLen  = 512
)

// Replay reason codes: a bounded set, so they can label metrics; free text stays in the
// evidence.
const (
	ReplayWorkerOutage    = "WORKER_OUTAGE"
	ReplayPublishLost     = "PUBLISH_LOST"
	ReplayOutcomeTimeout  = "OUTCOME_TIMEOUT"
	ReplayOperatorRequest = "OPERATOR_REQUEST"
)

func validReplayCode(c string) bool {
	switch c {
	case ReplayWorkerOutage, ReplayPublishLost, ReplayOutcomeTimeout, ReplayOperatorRequest:
		return true
	}
	return false
}

func checkJobID(field, id string) error {
	if id == "" {
		return invalid(field, "required")
	}
	if len(id) > maxJobIDLen {
		return invalid(field, "at most %d characters", maxJobIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return invalid(field, "only letters, digits and . _ : - are allowed")
		}
	}
	return nil
}

// checkHash accepts only the form a job hash has: "sha256:" and 64 lowercase hex
// digits. Anything else is a malformed request, not a presented hash that differs.
func checkHash(h string) error {
	if h == "" {
		return invalid("job_hash", "required")
	}
	hexPart, ok := strings.CutPrefix(h, "sha256:")
	if !ok || len(hexPart) != 64 || strings.Trim(hexPart, "0123456789abcdef") != "" {
		return invalid("job_hash", `must be "sha256:" followed by 64 lowercase hex digits`)
	}
	return nil
}

// checkReason checks a free-text reason; required says whether it may be empty.
func checkReason(field, r string, required bool) error {
	if required && r == "" {
		return invalid(field, "required")
	}
	if len(r) > maxReasonLen {
		return invalid(field, "at most %d bytes", maxReasonLen)
	}
	if !utf8.ValidString(r) {
		return invalid(field, "not valid UTF-8")
	}
	return nil
}

// checkPrincipal refuses a caller without an id, or whose id has no canonical form (so
// separation of duties and quorum could not compare it).
func checkPrincipal(p Principal) error {
	if p.ID == "" {
		return invalid("principal", "the caller is not authenticated")
	}
	if _, err := identity.Key(p.ID); err != nil {
		return invalid("principal", "the caller's id %s", err)
	}
	return nil
}

// printable reports whether s is valid UTF-8 made of printable characters only.
func printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// checkDecide validates everything of a Decide or Evaluate request that does not need
// the policy.
func checkDecide(r *DecideRequest) error {
	if err := checkJobID("job.job_id", r.JobID); err != nil {
		return err
	}
	if r.Topic == "" {
		return invalid("job.topic", "required")
	}
	if err := decision.ValidateTopic(r.Topic); err != nil {
		return invalid("job.topic", "%s", err.Error())
	}
	if r.Actor == "" {
		return invalid("job.actor", "required")
	}
	// One identity per person: separation of duties compares the actor's canonical form
	// with the approver's, so an actor without one (padding, control characters) is
	// refused rather than compared as something else.
	if _, err := identity.Key(r.Actor); err != nil {
		return invalid("job.actor", "%s", err)
	}
	if utf8.RuneCountInString(r.Actor) > maxActorRunes || !printable(r.Actor) {
		return invalid("job.actor", "1 to %d printable characters", maxActorRunes)
	}
	for k, v := range r.Labels {
		if k == "" {
			return invalid("job.labels", "label names must not be empty")
		}
		if !scalar(v) {
			return invalid("job.labels."+k, "must be a string, bool or number")
		}
	}
	if len(r.Payload) > maxPayload {
		return invalid("job.payload", "larger than %d bytes", maxPayload)
	}
	if len(r.TraceID) > maxTraceIDLen || !printable(r.TraceID) {
		return invalid("job.trace_id", "at most %d printable characters", maxTraceIDLen)
	}
	return nil
}

// scalar reports whether v is a label value: string, bool or number.
func scalar(v any) bool {
	switch v.(type) {
	case string, bool, float64, float32,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return true
	}
	return false
}

// hashJob computes the job hash, reporting content without a canonical form as
// INVALID_FIELD at its path ("job.payload.items[2].amount", "job.labels.env").
func hashJob(r *DecideRequest) (string, error) {
	h, err := canonical.JobHash(r.Topic, r.Actor, r.Labels, r.Payload)
	if err != nil {
		return "", contentError(err)
	}
	return h, nil
}

func contentError(err error) error {
	var ce *canonical.Error
	if errors.As(err, &ce) {
		field := "job"
		if ce.Path != "" {
			field += "." + ce.Path
		}
		return invalid(field, "%s", ce.Msg)
	}
	return err
}

// labelError maps the engine's label schema errors to INVALID_FIELD.
func labelError(err error) error {
	var le *decision.LabelError
	if errors.As(err, &le) {
		return invalid("job.labels."+le.Label, "%s", le.Msg)
	}
	if errors.Is(err, decision.ErrInvalidTopic) {
		return invalid("job.topic", "%s", err.Error())
	}
	return err
}
