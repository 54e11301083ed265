// Package evidence owns Agate's evidence contract: the event schema written with every
// state change, the required fields of each event kind and their validation (fail
// closed), the per-job hash chain that makes tampering detectable, and the mapping of
// event kinds to SOC 2, ISO 27001 and NIST AI RMF controls.
package evidence
