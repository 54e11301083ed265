// Package snapshots owns policy snapshots: immutable, content-addressed versions of a
// policy, the LRU cache of their compiled form, and a replica's view of which snapshot
// is active.
//
// A snapshot's identity is its content: the sha256 of its canonical source, and an id
// made of "snap_" and the first 16 hex digits of that digest, so `agate policy check`
// can print the id offline and loading the same content twice yields the same snapshot.
package snapshots
