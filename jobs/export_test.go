package jobs

// QueuedDecides reports how many Decides wait for a batch, so tests can line up a batch
// exactly.
func QueuedDecides(s *Service) int {
	if s.batcher == nil {
		return 0
	}
	n, _ := s.batcher.state()
	return n
}

// SetWatchPaging makes s's watch streams read page events per statement and at most
// pages statements per poll.
func SetWatchPaging(s *Service, page, pages int) { s.watch.page, s.watch.pages = page, pages }
