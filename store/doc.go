// Package store owns Agate's persistence contract: the Store interface, built from small
// role interfaces whose doc comments state each method's contract, the records it keeps
// (jobs, approvals, evidence events, policy snapshots, the active-snapshot pointer) and
// the error values every backend returns. Backends live in subpackages (postgres for
// PostgreSQL and CockroachDB, sqlite for the embedded default); storetest is the one
// conformance suite they all pass. Storage knows nothing of gRPC.
package store
