package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/store"
)

// The evidence records on the wire. Events and checkpoints convert both ways without
// loss: `agate evidence verify --file` reads back exactly what ExportEvidence sent.

func wireEvent(e *evidence.Event) *agatev1.EvidenceEvent {
	return &agatev1.EvidenceEvent{
		EventId: e.EventID, JobId: e.JobID, Seq: e.Seq, TraceId: e.TraceID, Kind: string(e.Kind),
		At: e.At, Actor: e.Actor, Decision: e.Decision, ApprovalRequired: e.ApprovalRequired,
		RuleId: e.RuleID, Reason: e.Reason, PolicySnapshot: e.PolicySnapshot, JobHash: e.JobHash,
		ApprovedBy: e.ApprovedBy, ApprovedRole: e.ApprovedRole, ApprovedAt: e.ApprovedAt,
		Status: e.Status, Attempt: e.Attempt, Conflict: e.Conflict, MatchedRules: e.MatchedRules,
		PreviousSnapshot: e.PreviousSnapshot, ReplayReasonCode: e.ReplayReasonCode,
		PresentedHash: e.PresentedHash, Principal: e.Principal, Repeat: e.Repeat,
		PrevHash: e.PrevHash, Hash: e.Hash, AuthMethod: e.AuthMethod,
	}
}

// EventFromWire is the inverse of the event ExportEvidence sends.
func EventFromWire(w *agatev1.EvidenceEvent) evidence.Event {
	return evidence.Event{
		EventID: w.GetEventId(), JobID: w.GetJobId(), Seq: w.GetSeq(), TraceID: w.GetTraceId(),
		Kind: evidence.Kind(w.GetKind()), At: w.GetAt(), Actor: w.GetActor(), Principal: w.GetPrincipal(),
		Decision: w.GetDecision(), ApprovalRequired: w.GetApprovalRequired(), RuleID: w.GetRuleId(),
		Reason: w.GetReason(), MatchedRules: w.GetMatchedRules(), PolicySnapshot: w.GetPolicySnapshot(),
		PreviousSnapshot: w.GetPreviousSnapshot(), JobHash: w.GetJobHash(), PresentedHash: w.GetPresentedHash(),
		ApprovedBy: w.GetApprovedBy(), ApprovedRole: w.GetApprovedRole(), ApprovedAt: w.GetApprovedAt(),
		Status: w.GetStatus(), Attempt: w.GetAttempt(), Conflict: w.GetConflict(),
		ReplayReasonCode: w.GetReplayReasonCode(), Repeat: w.GetRepeat(), PrevHash: w.GetPrevHash(), Hash: w.GetHash(),
		AuthMethod: w.GetAuthMethod(),
	}
}

func wireCheckpoint(c *store.Checkpoint) *agatev1.Checkpoint {
	heads := make([]*agatev1.ChainHead, len(c.Heads))
	for i, h := range c.Heads {
		heads[i] = &agatev1.ChainHead{JobId: h.JobID, Seq: h.Seq, Hash: h.Hash}
	}
	out := &agatev1.Checkpoint{CheckpointId: c.ID, Seq: c.Seq, At: c.At, MerkleRoot: c.Root,
		PreviousHash: c.PrevHash, Heads: heads, Hash: c.Hash, Signature: c.Signature, KeyId: c.KeyID}
	if r := c.Rotation; r != nil {
		out.Rotation = &agatev1.KeyRotation{FromPublicKey: r.From, ToPublicKey: r.To, Endorsement: r.Endorsement}
	}
	return out
}

// CheckpointFromWire is the inverse of the checkpoint ExportEvidence sends.
func CheckpointFromWire(w *agatev1.Checkpoint) store.Checkpoint {
	c := store.Checkpoint{Seq: w.GetSeq(), Checkpoint: evidence.Checkpoint{ID: w.GetCheckpointId(),
		At: w.GetAt(), Root: w.GetMerkleRoot(), PrevHash: w.GetPreviousHash(), Hash: w.GetHash(),
		KeyID: w.GetKeyId(), Signature: w.GetSignature()}}
	for _, h := range w.GetHeads() {
		c.Heads = append(c.Heads, evidence.Head{JobID: h.GetJobId(), Seq: h.GetSeq(), Hash: h.GetHash()})
	}
	if r := w.GetRotation(); r != nil {
		c.Rotation = &evidence.Rotation{From: r.GetFromPublicKey(), To: r.GetToPublicKey(), Endorsement: r.GetEndorsement()}
	}
	return c
}

func wireManifest(m *audit.Manifest) *agatev1.ExportManifest {
	return &agatev1.ExportManifest{Format: m.Format, Since: m.Since, Until: m.Until,
		FirstCheckpointSeq: m.FirstCheckpoint, LastCheckpointSeq: m.LastCheckpoint,
		LastCheckpointHash: m.LastHash, KeyId: m.KeyID, Signature: m.Signature}
}

// ReadExport reads what `grpcurl … ExportEvidence` prints: a sequence of JSON
// ExportEvidenceResponse objects. Exports made before the manifest existed have none.
func ReadExport(r io.Reader) (audit.Export, error) {
	dec := json.NewDecoder(r)
	var out audit.Export
	for n := 1; ; n++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return audit.Export{}, fmt.Errorf("export item %d: %w", n, err)
		}
		var item agatev1.ExportEvidenceResponse
		if err := protojson.Unmarshal(bytes.TrimSpace(raw), &item); err != nil {
			return audit.Export{}, fmt.Errorf("export item %d: %w", n, err)
		}
		switch {
		case item.GetEvent() != nil:
			out.Events = append(out.Events, EventFromWire(item.GetEvent()))
		case item.GetCheckpoint() != nil:
			out.Checkpoints = append(out.Checkpoints, CheckpointFromWire(item.GetCheckpoint()))
		case item.GetManifest() != nil && n == 1:
			m := item.GetManifest()
			out.Manifest = &audit.Manifest{Format: m.GetFormat(), Since: m.GetSince(), Until: m.GetUntil(),
				FirstCheckpoint: m.GetFirstCheckpointSeq(), LastCheckpoint: m.GetLastCheckpointSeq(),
				LastHash: m.GetLastCheckpointHash(), KeyID: m.GetKeyId(), Signature: m.GetSignature()}
		case item.GetManifest() != nil:
			return audit.Export{}, fmt.Errorf("export item %d: a manifest must come first", n)
		default:
			return audit.Export{}, fmt.Errorf("export item %d holds neither an event nor a checkpoint", n)
		}
	}
}

func wireSummary(ev audit.JobEvidence) *agatev1.JobSummary {
	if ev.Job.ID == "" {
		return nil
	}
	s, j := ev.Summary, ev.Job
	return &agatev1.JobSummary{
		// The reference event's ten keys, in its order.
		JobId: s.JobID, TraceId: s.TraceID, Decision: s.Decision, ApprovalRequired: s.ApprovalRequired,
		PolicySnapshot: s.PolicySnapshot, JobHash: s.JobHash, ApprovedBy: s.ApprovedBy,
		ApprovedRole: s.ApprovedRole, ApprovedAt: s.ApprovedAt, Status: s.Status,
		Topic: s.Topic, Actor: s.Actor, SubmittedBy: j.SubmittedBy, RuleId: j.RuleID, Reason: j.Reason,
		Attempt: int32(s.Attempt), Approvers: storedApprovals(ev.Approvals), DecidedAt: j.DecidedAt,
		UpdatedAt: j.UpdatedAt, MatchedRules: j.MatchedRules, Quorum: int32(j.Quorum),
		Revision: int32(j.Revision), PublishedAt: j.PublishedAt, Conflict: ev.Conflict,
	}
}

var tamperKinds = map[evidence.ProblemKind]agatev1.TamperKind{
	evidence.Modified:  agatev1.TamperKind_TAMPER_KIND_MODIFIED,
	evidence.Deleted:   agatev1.TamperKind_TAMPER_KIND_DELETED,
	evidence.Inserted:  agatev1.TamperKind_TAMPER_KIND_INSERTED,
	evidence.Reordered: agatev1.TamperKind_TAMPER_KIND_REORDERED,
	audit.BadSignature: agatev1.TamperKind_TAMPER_KIND_BAD_SIGNATURE,
}

func wireReport(r audit.Report) *agatev1.VerifyEvidenceResponse {
	out := &agatev1.VerifyEvidenceResponse{Ok: r.OK(), EventsVerified: r.EventsVerified,
		ChainsVerified: r.ChainsVerified, CheckpointsVerified: r.CheckpointsVerified}
	for _, p := range r.Problems {
		out.Problems = append(out.Problems, &agatev1.VerificationProblem{Kind: tamperKinds[p.Kind],
			EventId: p.EventID, JobId: p.JobID, Seq: p.Seq, CheckpointId: p.CheckpointID, Detail: p.Detail,
			SpanFromSeq: p.SpanFrom, SpanToSeq: p.SpanTo})
	}
	return out
}

// storedApprovals converts the approvals an audit record holds as stored.
func storedApprovals(as []store.Approval) []*agatev1.Approval {
	out := make([]*agatev1.Approval, len(as))
	for i, a := range as {
		out[i] = &agatev1.Approval{ApprovedBy: a.Approver, ApprovedRole: a.Role, ApprovedAt: a.At, Reason: a.Reason}
	}
	return out
}
