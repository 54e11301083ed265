package jobs

import (
	"context"
	"fmt"

	"github.com/agate-pdp/agate/canonical"
	"github.com/agate-pdp/agate/store"
)

// checkStored recomputes the hash of the stored job's content before Publish or Replay
// hands it out. The stored hash is what was decided and approved; content that no
// longer hashes to it was changed in the database behind Agate's back. Then nothing is
// handed out, the job is left as it is, and a conflict event records both hashes.
func checkStored(ctx context.Context, tx store.Tx, j *store.Job, p Principal, now int64, call string) error {
	computed := "(content cannot be hashed)"
	labels, lerr := decodeLabels(j.Labels)
	if lerr == nil {
		h, herr := canonical.JobHash(j.Topic, j.Actor, labels, j.Payload)
		if herr == nil && h == j.Hash {
			return nil
		}
		if herr == nil {
			computed = h
		}
	}
	e := conflictEvent(j, p, now, ReasonStoredJobTampered,
		fmt.Sprintf("%s refused: the stored job's content hashes to %s, not to its stored job_hash", call, computed))
	e.PresentedHash = computed
	if err := appendEvent(ctx, tx, &e); err != nil {
		return err
	}
	return refuseAfterCommit(&Error{Code: CodeDataLoss, Reason: ReasonStoredJobTampered,
		Msg:  "the stored job was changed after it was decided: nothing was handed out; restore it and investigate",
		Meta: map[string]string{"expected_job_hash": j.Hash, "computed_job_hash": computed}})
}
