// Package sqlite is the embedded store backend, Agate's zero-config default: one SQLite
// file through the pure-Go modernc.org/sqlite driver, in WAL mode with synchronous=FULL
// (an acknowledged write survives power loss). Writes run on one connection in BEGIN
// IMMEDIATE transactions, which exclude each other, so they are serializable; reads run
// on a separate read-only pool and see a consistent snapshot. All SQL is sqlstore's.
package sqlite
