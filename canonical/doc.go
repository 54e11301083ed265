// Package canonical owns the canonical JSON form (RFC 8785, the JSON
// Canonicalization Scheme) and the job hash built on it.
//
// Every component that hashes a job or an evidence event goes through this
// package, so a job hashes the same wherever it is computed, and any client
// with a JCS implementation can recompute the hash.
//
// Input is held to I-JSON (RFC 7493) and, beyond RFC 8785, to exact numbers:
// a number is accepted only when its canonical form denotes the same decimal
// value as the text that was sent. JCS writes every number as an IEEE 754
// double, so without this rule 9007199254740993 and 9007199254740992 would
// hash alike.
//
// The package does no I/O and does not use reflection; it is on the hot path
// of every decision.
package canonical
