package jobs

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
)

// maxPolicySize bounds a policy source.
const maxPolicySize = 4 << 20

// PutPolicyResult describes the stored snapshot.
type PutPolicyResult struct {
	Snapshot  snapshots.Snapshot // as stored (the existing one for identical content)
	Warnings  []decision.Warning
	Created   bool   // false when identical content was already stored
	Activated bool   // this call made it the active snapshot
	Previous  string // the snapshot active before this call activated another
}

// PutPolicy validates a policy source and stores it as a snapshot, and with activate
// makes it the active one (recorded as policy_activation evidence). Identical content
// yields the existing snapshot.
func (s *Service) PutPolicy(ctx context.Context, p Principal, source []byte, activate bool) (PutPolicyResult, error) {
	if err := checkPrincipal(p); err != nil {
		return PutPolicyResult{}, err
	}
	if len(source) == 0 {
		return PutPolicyResult{}, invalid("source", "required")
	}
	if len(source) > maxPolicySize {
		return PutPolicyResult{}, invalid("source", "larger than %d bytes", maxPolicySize)
	}
	snap, eng, warnings, err := snapshots.New(source, p.ID, s.clock())
	if err != nil {
		return PutPolicyResult{}, policyError(err)
	}
	var out PutPolicyResult
	err = s.write(ctx, "", func(ctx context.Context, tx store.Tx, now int64) error {
		out = PutPolicyResult{Snapshot: snap, Warnings: warnings}
		created, err := tx.PutSnapshot(ctx, snap)
		if err != nil {
			return err
		}
		out.Created = created
		if !created {
			if out.Snapshot, err = tx.GetSnapshot(ctx, snap.ID); err != nil {
				return err
			}
		}
		if !activate {
			return nil
		}
		out.Previous, out.Activated, err = activateIn(ctx, tx, snap.ID, p, now)
		return err
	})
	if err != nil {
		return PutPolicyResult{}, err
	}
	if activate {
		s.tracker.Set(out.Snapshot, eng)
	}
	if !out.Activated {
		out.Previous = ""
	}
	return out, nil
}

func policyError(err error) error {
	e := invalid("source", "%s", err.Error())
	e.Reason = ReasonInvalidPolicy
	var pe *decision.PolicyError
	if errors.As(err, &pe) {
		e.Meta["line"] = strconv.Itoa(pe.Line)
		if pe.Field != "" {
			e.Meta["policy_field"] = pe.Field
		}
	}
	return e
}

// activateIn points the active snapshot at id unless it already does, and records the
// activation. It returns the previously active snapshot ("" when none was).
func activateIn(ctx context.Context, tx store.Tx, id string, p Principal, now int64) (prev string, activated bool, err error) {
	prev, err = tx.ActiveSnapshotID(ctx)
	if err != nil && !errors.Is(err, snapshots.ErrNoActive) {
		return "", false, err
	}
	if prev == id {
		return prev, false, nil
	}
	if err := tx.SetActiveSnapshot(ctx, id, time.UnixMicro(now), p.ID); err != nil {
		return "", false, err
	}
	e := evidence.Event{
		JobID: evidence.PolicyChain, Kind: evidence.KindPolicyActivation, At: now, Principal: p.ID, AuthMethod: p.Auth,
		PolicySnapshot: id, PreviousSnapshot: prev, Reason: "activated",
	}
	return prev, true, appendEvent(ctx, tx, &e)
}

// ActivateResult reports an activation or its preview.
type ActivateResult struct {
	Previous      string // the snapshot active before the call ("" when none was)
	PendingDrift  int    // pending jobs decided under another snapshot
	ApprovedDrift int    // approved, unpublished jobs decided under another snapshot
	Activated     bool   // this call changed the active snapshot
	AlreadyActive bool   // id was already active; nothing changed
}

// ActivateSnapshot makes a stored snapshot the active one, recording a policy_activation
// event; with dryRun it only counts the jobs that would drift. Rolling back is
// activating an earlier snapshot.
func (s *Service) ActivateSnapshot(ctx context.Context, p Principal, id string, dryRun bool) (ActivateResult, error) {
	if err := checkPrincipal(p); err != nil {
		return ActivateResult{}, err
	}
	if id == "" {
		return ActivateResult{}, invalid("snapshot_id", "required")
	}
	var out ActivateResult
	var snap snapshots.Snapshot
	var eng *decision.Engine
	body := func(ctx context.Context, tx store.Tx, now int64) error {
		out = ActivateResult{}
		var err error
		if snap, err = tx.GetSnapshot(ctx, id); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return notFound("snapshot", id)
			}
			return err
		}
		if eng, err = s.cache.Engine(snap); err != nil {
			return err
		}
		if out.Previous, err = tx.ActiveSnapshotID(ctx); err != nil && !errors.Is(err, snapshots.ErrNoActive) {
			return err
		}
		out.AlreadyActive = out.Previous == id
		if out.PendingDrift, err = tx.CountJobs(ctx, []store.Status{store.StatusPendingApproval}, id); err != nil {
			return err
		}
		if out.ApprovedDrift, err = tx.CountJobs(ctx, []store.Status{store.StatusApproved}, id); err != nil {
			return err
		}
		if dryRun || out.AlreadyActive {
			return nil
		}
		_, out.Activated, err = activateIn(ctx, tx, id, p, now)
		return err
	}
	var err error
	if dryRun {
		err = s.read(ctx, "snapshot", id, func(ctx context.Context, tx store.Tx) error {
			return body(ctx, tx, s.nowMicro())
		})
	} else {
		err = s.write(ctx, "", body)
	}
	if err != nil {
		return ActivateResult{}, err
	}
	if !dryRun {
		s.tracker.Set(snap, eng)
	}
	return out, nil
}

// GetSnapshot returns a stored snapshot.
func (s *Service) GetSnapshot(ctx context.Context, id string) (snapshots.Snapshot, error) {
	if id == "" {
		return snapshots.Snapshot{}, invalid("snapshot_id", "required")
	}
	var snap snapshots.Snapshot
	err := s.read(ctx, "snapshot", id, func(ctx context.Context, tx store.Tx) error {
		var err error
		snap, err = tx.GetSnapshot(ctx, id)
		return err
	})
	return snap, err
}

// ListSnapshots lists stored snapshots, newest first.
func (s *Service) ListSnapshots(ctx context.Context, size int, token string) ([]snapshots.Snapshot, string, error) {
	size, err := pageSize(size)
	if err != nil {
		return nil, "", err
	}
	after := ""
	if token != "" {
		if after, err = decodeIDCursor(token); err != nil {
			return nil, "", err
		}
	}
	var list []snapshots.Snapshot
	err = s.read(ctx, "", "", func(ctx context.Context, tx store.Tx) error {
		var err error
		list, err = tx.ListSnapshots(ctx, after, size+1)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(list) > size {
		list = list[:size]
		next = encodeIDCursor(list[size-1].ID)
	}
	return list, next, nil
}
