// Package pgtest gives tests a PostgreSQL database of their own. It uses the server at
// AGATE_TEST_POSTGRES_URL when that is set; otherwise it starts one throwaway cluster
// per test binary from the system's server binaries (found with pg_config --bindir),
// run as the postgres user when the tests run as root, on a free loopback port. The
// schema is migrated once into a template database and every test gets a fresh copy.
//
// A watchdog process (the test binary itself, re-executed) stops the cluster and removes
// its files, or drops the databases it created on an external server, as soon as the
// test binary exits for any reason, so no server outlives a failed or killed run.
//
// When no PostgreSQL can be had, tests are skipped, or fail when
// AGATE_TEST_REQUIRE_POSTGRES=1 (as in CI).
package pgtest
