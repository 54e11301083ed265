package jobs

import "github.com/agate-pdp/agate/snapshots"

// Active returns this replica's current view of the active snapshot, and false before
// any snapshot has been activated.
func (s *Service) Active() (*snapshots.Active, bool) { return s.tracker.Current() }
