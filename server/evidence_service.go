package server

import agatev1 "github.com/agate-pdp/agate/gen/agate/v1"

// evidenceService serves auditors. Until each RPC is implemented it answers UNIMPLEMENTED
// through the embedded generated type.
type evidenceService struct {
	agatev1.UnimplementedEvidenceServiceServer
	s *Server
}
