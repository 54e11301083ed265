package jobs

// QueuedDecides reports how many Decides wait for a batch, so tests can line up a batch
// exactly.
func QueuedDecides(s *Service) int {
	if s.decides == nil {
		return 0
	}
	_, n, _ := s.decides.state()
	return n
}

// SetWatchPaging makes s's watch streams read page events per statement and at most
// pages statements per poll.
func SetWatchPaging(s *Service, page, pages int) { s.watch.page, s.watch.pages = page, pages }

// QueuedWrites reports how many lifecycle writes wait for a batch.
func QueuedWrites(s *Service) int {
	if s.writes == nil {
		return 0
	}
	_, n, _ := s.writes.state()
	return n
}
