// Package audit owns what auditors ask of the evidence: a job's evidence with its summary
// record, filtered queries paged up to a settled horizon, completeness checks, sample
// audits that re-verify jobs end to end, the control matrix, counters derived from
// evidence, exports, tamper verification against signed checkpoints, and the Sealer that
// writes those checkpoints in the background.
//
// It reads the store and writes nothing but checkpoints; it knows nothing of the
// transport. Failures a caller can act on are *jobs.Error values, so the server maps
// them as it maps the lifecycle's.
package audit
