package audit

import (
	"context"
	"errors"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// SummaryKind is the Kind of a Finding about a job's summary record.
const SummaryKind = "summary"

// Finding is one record that lacks required fields.
type Finding struct {
	JobID   string   // the chain
	EventID string   // the event; "" for a summary record
	Kind    string   // the event's kind, or SummaryKind
	Missing []string // the required fields it lacks
}

// Completeness is the result of CheckCompleteness.
type Completeness struct {
	Findings         []Finding // events first, in (At, EventID) order, then summaries
	EventsChecked    int64
	JobsChecked      int64
	IncompleteEvents int64
	IncompleteJobs   int64
}

// CheckCompleteness checks every event in w against its kind's required fields, and the
// summary record of every job with an event in w against the guide's minimum evidence
// (evidence.CheckSummary): the reference check, generalised to every kind. A job whose
// row is missing has a summary that lacks everything.
func (s *Service) CheckCompleteness(ctx context.Context, w Window) (Completeness, error) {
	if err := w.check(); err != nil {
		return Completeness{}, err
	}
	var out Completeness
	err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
		out = Completeness{}
		seen := map[string]bool{}
		var jobIDs []string
		err := eachEvent(ctx, tx, w.query(), func(e *evidence.Event) error {
			out.EventsChecked++
			if missing := missingFields(e); missing != nil {
				out.IncompleteEvents++
				out.Findings = append(out.Findings, Finding{JobID: e.JobID, EventID: e.EventID,
					Kind: string(e.Kind), Missing: missing})
			}
			if evidence.IsJobChain(e.JobID) && !seen[e.JobID] {
				seen[e.JobID] = true
				jobIDs = append(jobIDs, e.JobID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range jobIDs {
			j, err := tx.GetJob(ctx, id, false)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			out.JobsChecked++
			if missing := evidence.CheckSummary(summaryOf(j)); missing != nil {
				out.IncompleteJobs++
				out.Findings = append(out.Findings, Finding{JobID: id, Kind: SummaryKind, Missing: missing})
			}
		}
		return nil
	})
	return out, err
}

// missingFields returns the required fields e lacks, or nil.
func missingFields(e *evidence.Event) []string {
	err := evidence.Validate(e)
	if err == nil {
		return nil
	}
	var mf *evidence.MissingFieldsError
	if errors.As(err, &mf) {
		return mf.Fields
	}
	return []string{"kind"}
}
