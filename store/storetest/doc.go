// Package storetest is the one conformance suite every store backend passes (Run), and
// the helpers other packages' tests use to get a fresh store of each backend
// (ForEachBackend, Backends, OpenSQLite, OpenPostgres). Nothing in it is specific to a
// backend: each backend's own test only calls Run with its opener.
package storetest
