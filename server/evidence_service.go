package server

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// evidenceService adapts the audit service to agate.v1.EvidenceService.
type evidenceService struct {
	agatev1.UnimplementedEvidenceServiceServer
	s *Server
}

// audit returns the audit service, or UNIMPLEMENTED when the server was built without one.
func (es *evidenceService) audit() (*audit.Service, error) {
	if es.s.audit == nil {
		return nil, status.Error(codes.Unimplemented, "the evidence service is not configured")
	}
	return es.s.audit, nil
}

func (es *evidenceService) fail(ctx context.Context, err error) error {
	return toStatus(ctx, es.s.log, err)
}

func window(since, until int64) audit.Window { return audit.Window{Since: since, Until: until} }

func wireEvents(events []evidence.Event) []*agatev1.EvidenceEvent {
	out := make([]*agatev1.EvidenceEvent, len(events))
	for i := range events {
		out[i] = wireEvent(&events[i])
	}
	return out
}

func (es *evidenceService) GetEvidence(ctx context.Context, req *agatev1.GetEvidenceRequest) (*agatev1.GetEvidenceResponse, error) {
	a, err := es.audit()
	if err != nil {
		return nil, err
	}
	ev, err := a.GetEvidence(ctx, req.GetJobId())
	if err != nil {
		return nil, es.fail(ctx, err)
	}
	return &agatev1.GetEvidenceResponse{Summary: wireSummary(ev), Events: wireEvents(ev.Events)}, nil
}

func (es *evidenceService) QueryEvidence(ctx context.Context, req *agatev1.QueryEvidenceRequest) (*agatev1.QueryEvidenceResponse, error) {
	a, err := es.audit()
	if err != nil {
		return nil, err
	}
	page, err := a.QueryEvidence(ctx, audit.Query{Window: window(req.GetSince(), req.GetUntil()),
		Kind: req.GetKind(), Decision: req.GetDecision(), Status: req.GetStatus(), Topic: req.GetTopic(),
		RuleID: req.GetRuleId(), Snapshot: req.GetPolicySnapshot(), ApprovedBy: req.GetApprovedBy(),
		Conflict: req.GetConflict(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, es.fail(ctx, err)
	}
	return &agatev1.QueryEvidenceResponse{Events: wireEvents(page.Events), NextPageToken: page.NextPageToken,
		Horizon: page.Horizon}, nil
}

func (es *evidenceService) CheckCompleteness(ctx context.Context, req *agatev1.CheckCompletenessRequest) (*agatev1.CheckCompletenessResponse, error) {
	a, err := es.audit()
	if err != nil {
		return nil, err
	}
	c, err := a.CheckCompleteness(ctx, window(req.GetSince(), req.GetUntil()))
	if err != nil {
		return nil, es.fail(ctx, err)
	}
	out := &agatev1.CheckCompletenessResponse{EventsChecked: c.EventsChecked, JobsChecked: c.JobsChecked,
		IncompleteEvents: c.IncompleteEvents, IncompleteJobs: c.IncompleteJobs}
	for _, f := range c.Findings {
		out.Findings = append(out.Findings, &agatev1.CompletenessFinding{JobId: f.JobID, EventId: f.EventID,
			Kind: f.Kind, MissingFields: f.Missing})
	}
	return out, nil
}

func (es *evidenceService) SampleAudit(ctx context.Context, req *agatev1.SampleAuditRequest) (*agatev1.SampleAuditResponse, error) {
	a, err := es.audit()
	if err != nil {
		return nil, err
	}
	res, err := a.SampleAudit(ctx, audit.SampleRequest{Window: window(req.GetSince(), req.GetUntil()),
		N: int(req.GetN()), Seed: req.Seed})
	if err != nil {
		return nil, es.fail(ctx, err)
	}
	out := &agatev1.SampleAuditResponse{Summary: &agatev1.AuditSummary{Population: res.Population,
		Sampled: int32(len(res.Verdicts)), Passed: int32(res.Passed), Failed: int32(res.Failed), Seed: res.Seed}}
	for _, v := range res.Verdicts {
		wv := &agatev1.AuditVerdict{JobId: v.JobID, Passed: v.Passed}
		for _, c := range v.Checks {
			wv.Checks = append(wv.Checks, &agatev1.AuditCheck{Name: c.Name, Passed: c.Passed, Detail: c.Detail})
		}
		out.Verdicts = append(out.Verdicts, wv)
	}
	return out, nil
}

func (es *evidenceService) ControlMatrix(ctx context.Context, req *agatev1.ControlMatrixRequest) (*agatev1.ControlMatrixResponse, error) {
	a, err := es.audit()
	if err != nil {
		return nil, err
	}
	counts, err := a.ControlMatrix(ctx, window(req.GetSince(), req.GetUntil()))
	if err != nil {
		return nil, es.fail(ctx, err)
	}
	out := &agatev1.ControlMatrixResponse{}
	for _, c := range counts {
		kinds := make([]string, len(c.Kinds))
		for i, k := range c.Kinds {
			kinds[i] = k.String()
		}
		out.Controls = append(out.Controls, &agatev1.Control{Id: c.ID, Name: c.Name, Soc2: c.SOC2,
			Iso27001: c.ISO27001, NistAiRmf: c.NISTAIRMF, EvidenceKinds: kinds, EventCount: c.Events,
			IncompleteCount: c.Incomplete})
	}
	return out, nil
}

func (es *evidenceService) ExportEvidence(req *agatev1.ExportEvidenceRequest, stream grpc.ServerStreamingServer[agatev1.ExportEvidenceResponse]) error {
	a, err := es.audit()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	err = a.Export(ctx, window(req.GetSince(), req.GetUntil()), func(it audit.ExportItem) error {
		msg := &agatev1.ExportEvidenceResponse{}
		switch {
		case it.Manifest != nil:
			msg.Item = &agatev1.ExportEvidenceResponse_Manifest{Manifest: wireManifest(it.Manifest)}
		case it.Event != nil:
			msg.Item = &agatev1.ExportEvidenceResponse_Event{Event: wireEvent(it.Event)}
		default:
			msg.Item = &agatev1.ExportEvidenceResponse_Checkpoint{Checkpoint: wireCheckpoint(it.Checkpoint)}
		}
		return stream.Send(msg)
	})
	return es.fail(ctx, err)
}

func (es *evidenceService) Stats(ctx context.Context, req *agatev1.StatsRequest) (*agatev1.StatsResponse, error) {
	a, err := es.audit()
	if err != nil {
		return nil, err
	}
	st, err := a.Stats(ctx, window(req.GetSince(), req.GetUntil()))
	if err != nil {
		return nil, es.fail(ctx, err)
	}
	return &agatev1.StatsResponse{AlreadyApproved: st.AlreadyApproved, AlreadyRejected: st.AlreadyRejected,
		LockBusyConflicts: st.LockBusy, SnapshotDriftConflicts: st.SnapshotDrift,
		JobHashMismatchConflicts: st.JobHashMismatch, ReplayedJobs: st.ReplayedJobs,
		ReplaysByReason: st.ReplaysByReason, Statuses: st.Statuses, Decisions: st.Decisions,
		Replays: st.Replays, RefusalsByReason: st.RefusalsByReason}, nil
}

func (es *evidenceService) VerifyEvidence(ctx context.Context, req *agatev1.VerifyEvidenceRequest) (*agatev1.VerifyEvidenceResponse, error) {
	a, err := es.audit()
	if err != nil {
		return nil, err
	}
	rep, err := a.Verify(ctx, window(req.GetSince(), req.GetUntil()))
	if err != nil {
		return nil, es.fail(ctx, err)
	}
	return wireReport(rep), nil
}

func (es *evidenceService) GetPublicKey(context.Context, *agatev1.GetPublicKeyRequest) (*agatev1.GetPublicKeyResponse, error) {
	a, err := es.audit()
	if err != nil {
		return nil, err
	}
	pub := a.PublicKey()
	return &agatev1.GetPublicKeyResponse{PublicKey: []byte(pub), PublicKeyHex: hex.EncodeToString(pub),
		KeyId: evidence.KeyID(ed25519.PublicKey(pub)), Algorithm: "ed25519"}, nil
}
