// Package e2e holds Agate's end-to-end tests: they build the real agate binary, start it
// as a process against SQLite and PostgreSQL, and talk to it with the generated Go
// client and with grpcurl, exactly as users and the README do.
package e2e
