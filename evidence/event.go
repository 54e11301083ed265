package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/agate-pdp/agate/canonical"
)

// Kind names what an event records.
type Kind string

// The event kinds, one per kind of transition.
const (
	KindDecision         Kind = "decision"
	KindApproval         Kind = "approval"
	KindRejection        Kind = "rejection"
	KindPublish          Kind = "publish"
	KindReplay           Kind = "replay"
	KindOutcome          Kind = "outcome"
	KindConflict         Kind = "conflict"
	KindExpiry           Kind = "expiry"
	KindCancel           Kind = "cancel"
	KindRefusal          Kind = "refusal"
	KindPolicyActivation Kind = "policy_activation"
)

// Kinds lists every kind in a stable order.
var Kinds = []Kind{KindDecision, KindApproval, KindRejection, KindPublish, KindReplay,
	KindOutcome, KindConflict, KindExpiry, KindCancel, KindRefusal, KindPolicyActivation}

// PolicyChain is the chain id of policy_activation events, which belong to no job.
// Activations are rare, so one chain for them is no hot spot; "@" is outside the
// job_id alphabet, so no job can share it.
const PolicyChain = "@policy"

// PrincipalChainPrefix starts the chain id of a principal's refused calls on jobs it has
// no standing on: PrincipalChain(canonical id). Such an attempt is evidence, but written
// on the job's chain it would let anyone grow that chain, and its existence would show
// in the answer; on the caller's own chain it does neither. "@" keeps these ids, like
// PolicyChain, out of the job_id alphabet.
const PrincipalChainPrefix = "@principal:"

// PrincipalChain returns the chain id of the principal whose canonical id is key.
func PrincipalChain(key string) string { return PrincipalChainPrefix + key }

// IsPrincipalChain reports whether id is a principal's chain.
func IsPrincipalChain(id string) bool { return strings.HasPrefix(id, PrincipalChainPrefix) }

// IsJobChain reports whether id is a job's chain, not the policy chain or a principal's.
func IsJobChain(id string) bool { return !strings.HasPrefix(id, "@") }

// Event is one append-only evidence record. Times are microseconds since the Unix epoch.
// Which fields must be set depends on Kind (see Required); Validate enforces it.
type Event struct {
	EventID          string   // ULID, unique
	JobID            string   // the job; PolicyChain for policy_activation; a PrincipalChain for a refusal without standing
	Seq              int64    // position in the job's chain, from 1
	TraceID          string   // request trace id
	Kind             Kind     //
	At               int64    // µs since epoch
	Actor            string   // the agent or principal the job acts for
	Principal        string   // the authenticated caller that caused the event
	Decision         string   // allow | deny | require_human
	ApprovalRequired bool     //
	RuleID           string   // deciding rule, or "default"
	Reason           string   // rule reason, approver/rejecter text, replay text
	MatchedRules     []string // every matched rule
	PolicySnapshot   string   // snapshot the job was decided under (for activation: the new one)
	PreviousSnapshot string   // activation: the one replaced; publish re-evaluation: the deciding one
	JobHash          string   // the job's hash (for a mismatch conflict: the stored one)
	PresentedHash    string   // for a mismatch conflict: the hash the caller presented
	ApprovedBy       string   //
	ApprovedRole     string   //
	ApprovedAt       int64    // µs
	Status           string   // the job's status after the event
	Attempt          int64    // publish attempt (1 = first publish)
	Conflict         string   // conflict or refusal reason code, e.g. SNAPSHOT_DRIFT
	ReplayReasonCode string   // bounded replay reason code
	Repeat           bool     // an idempotent repeat (already_approved, already_rejected, ...)
	AuthMethod       string   // how Principal authenticated: token, certificate, certificate+token or oidc:<issuer>
	PrevHash         string   // Hash of the previous event in the chain ("" for seq 1)
	Hash             string   // sha256 over the canonical form of every other field
}

// MissingFieldsError reports an event that lacks fields its kind requires.
type MissingFieldsError struct {
	Kind   Kind
	Fields []string
}

func (e *MissingFieldsError) Error() string {
	return fmt.Sprintf("evidence: %s event is missing %s", e.Kind, strings.Join(e.Fields, ", "))
}

// ErrIncomplete matches every MissingFieldsError with errors.Is.
var ErrIncomplete = errors.New("evidence: incomplete event")

// Is makes errors.Is(err, ErrIncomplete) true.
func (e *MissingFieldsError) Is(target error) bool { return target == ErrIncomplete }

// fields returns the event's fields by wire name, for hashing and completeness checks.
// Zero values are included: the hash covers exactly what is stored. auth_method is the
// exception: it came after events were first sealed, so it is a member only when set,
// and an event sealed before it existed hashes to what it always did.
func (e *Event) fields() map[string]any {
	m := map[string]any{
		"event_id": e.EventID, "job_id": e.JobID, "seq": e.Seq, "trace_id": e.TraceID,
		"kind": string(e.Kind), "at": e.At, "actor": e.Actor, "principal": e.Principal,
		"decision": e.Decision, "approval_required": e.ApprovalRequired, "rule_id": e.RuleID,
		"reason": e.Reason, "policy_snapshot": e.PolicySnapshot,
		"previous_snapshot": e.PreviousSnapshot, "job_hash": e.JobHash,
		"presented_hash": e.PresentedHash, "approved_by": e.ApprovedBy,
		"approved_role": e.ApprovedRole, "approved_at": e.ApprovedAt, "status": e.Status,
		"attempt": e.Attempt, "conflict": e.Conflict, "replay_reason_code": e.ReplayReasonCode,
		"repeat": e.Repeat, "prev_hash": e.PrevHash,
	}
	rules := make([]any, len(e.MatchedRules))
	for i, r := range e.MatchedRules {
		rules[i] = r
	}
	m["matched_rules"] = rules
	if e.AuthMethod != "" {
		m["auth_method"] = e.AuthMethod
	}
	return m
}

// ComputeHash returns the chain hash of e: "sha256:" + hex(SHA-256(JCS(fields without
// hash, with prev_hash))). Including prev_hash links the event to its predecessor.
func (e *Event) ComputeHash() (string, error) {
	var buf [1024]byte
	b, err := e.appendCanonical(buf[:0])
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// appendCanonical writes the JCS form of fields() member by member, in key order: the
// same bytes as canonical.Append(fields()) (a test holds them equal) without building
// and sorting a map on every write.
func (e *Event) appendCanonical(dst []byte) ([]byte, error) {
	o := canonical.NewObject(dst)
	o.String("actor", e.Actor)
	o.Bool("approval_required", e.ApprovalRequired)
	o.Int("approved_at", e.ApprovedAt)
	o.String("approved_by", e.ApprovedBy)
	o.String("approved_role", e.ApprovedRole)
	o.Int("at", e.At)
	o.Int("attempt", e.Attempt)
	if e.AuthMethod != "" {
		o.String("auth_method", e.AuthMethod)
	}
	o.String("conflict", e.Conflict)
	o.String("decision", e.Decision)
	o.String("event_id", e.EventID)
	o.String("job_hash", e.JobHash)
	o.String("job_id", e.JobID)
	o.String("kind", string(e.Kind))
	o.Strings("matched_rules", e.MatchedRules)
	o.String("policy_snapshot", e.PolicySnapshot)
	o.String("presented_hash", e.PresentedHash)
	o.String("prev_hash", e.PrevHash)
	o.String("previous_snapshot", e.PreviousSnapshot)
	o.String("principal", e.Principal)
	o.String("reason", e.Reason)
	o.Bool("repeat", e.Repeat)
	o.String("replay_reason_code", e.ReplayReasonCode)
	o.String("rule_id", e.RuleID)
	o.Int("seq", e.Seq)
	o.String("status", e.Status)
	o.String("trace_id", e.TraceID)
	return o.Bytes()
}

// Seal links e after the chain head (prevSeq, prevHash), validates it and sets its hash.
// It fails closed: an incomplete event is returned as a *MissingFieldsError and not sealed.
func (e *Event) Seal(prevSeq int64, prevHash string) error {
	e.Seq = prevSeq + 1
	e.PrevHash = prevHash
	if err := Validate(e); err != nil {
		return err
	}
	h, err := e.ComputeHash()
	if err != nil {
		return err
	}
	e.Hash = h
	return nil
}
