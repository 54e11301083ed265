package audit

import (
	"context"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

// Stats are the compliance guide's counters, derived from the evidence so they are as
// durable as it is and agree across replicas.
type Stats struct {
	AlreadyApproved  int64            // repeat approval events: Approve answered already_approved
	AlreadyRejected  int64            // repeat rejection events: Reject answered already_rejected
	LockBusy         int64            // conflict events with reason LOCK_BUSY
	SnapshotDrift    int64            // conflict events with reason SNAPSHOT_DRIFT
	JobHashMismatch  int64            // conflict events with reason JOB_HASH_MISMATCH
	ReplayedJobs     int64            // distinct jobs with a replay event
	Replays          int64            // replay events
	ReplaysByReason  map[string]int64 // replay events by replay_reason_code
	Statuses         map[string]int64 // jobs by the status their last event in the window left them in
	Decisions        map[string]int64 // decision events by decision
	RefusalsByReason map[string]int64 // refusal events by reason code, on jobs' chains and principals' (NO_STANDING, JOB_ID_IN_USE)
}

// Stats counts the events in w. A job's status is the one its last event (highest seq)
// in w records: for an open window, its current status.
func (s *Service) Stats(ctx context.Context, w Window) (Stats, error) {
	if err := w.check(); err != nil {
		return Stats{}, err
	}
	var out Stats
	err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
		out = Stats{ReplaysByReason: map[string]int64{}, Statuses: map[string]int64{},
			Decisions: map[string]int64{}, RefusalsByReason: map[string]int64{}}
		type last struct {
			seq    int64
			status string
		}
		latest := map[string]last{}
		replayed := map[string]bool{}
		err := eachEvent(ctx, tx, w.query(), func(e *evidence.Event) error {
			if evidence.IsJobChain(e.JobID) && e.Seq > latest[e.JobID].seq {
				latest[e.JobID] = last{e.Seq, e.Status}
			}
			switch e.Kind {
			case evidence.KindDecision:
				out.Decisions[e.Decision]++
			case evidence.KindApproval:
				if e.Repeat {
					out.AlreadyApproved++
				}
			case evidence.KindRejection:
				if e.Repeat {
					out.AlreadyRejected++
				}
			case evidence.KindConflict:
				switch e.Conflict {
				case "LOCK_BUSY":
					out.LockBusy++
				case "SNAPSHOT_DRIFT":
					out.SnapshotDrift++
				case "JOB_HASH_MISMATCH":
					out.JobHashMismatch++
				}
			case evidence.KindReplay:
				out.Replays++
				out.ReplaysByReason[e.ReplayReasonCode]++
				replayed[e.JobID] = true
			case evidence.KindRefusal:
				out.RefusalsByReason[e.Conflict]++
			}
			return nil
		})
		for _, l := range latest {
			if l.status != "" {
				out.Statuses[l.status]++
			}
		}
		out.ReplayedJobs = int64(len(replayed))
		return err
	})
	return out, err
}

// ControlMatrix maps the events in w to the agent controls: per control, how many events
// evidence it and how many of those lack a required field.
func (s *Service) ControlMatrix(ctx context.Context, w Window) ([]evidence.ControlCount, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	var out []evidence.ControlCount
	err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
		tally := evidence.NewMatrixTally()
		err := eachEvent(ctx, tx, w.query(), func(e *evidence.Event) error {
			tally.Add(e)
			return nil
		})
		out = tally.Counts()
		return err
	})
	return out, err
}
