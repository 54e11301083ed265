// Package server owns Agate's gRPC surface: the DecisionService, PolicyService and
// EvidenceService adapters over the job lifecycle, the interceptor chain (recovery,
// limits, authentication, authorization, logging, metrics), the one mapping from
// errors to gRPC status codes, health and reflection.
package server
