package sqlite

import (
	"errors"

	"modernc.org/sqlite"
	lib "modernc.org/sqlite/lib"

	"github.com/agate-pdp/agate/store/sqlstore"
)

var dialect = &sqlstore.Dialect{
	Name:      "sqlite",
	System:    "sqlite",
	ForUpdate: "", // BEGIN IMMEDIATE transactions already exclude each other
	Anonymous: true,
	BytesType: "BLOB",
	// julianday('now') has millisecond resolution; 2440587.5 is the Unix epoch's.
	NowMicros: "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
	Classify:  classify,
}

// classify reads SQLite's extended result codes, which the driver turns on.
func classify(err error) sqlstore.Class {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return sqlstore.ClassOther
	}
	switch se.Code() {
	case lib.SQLITE_CONSTRAINT_UNIQUE, lib.SQLITE_CONSTRAINT_PRIMARYKEY:
		return sqlstore.ClassUnique
	case lib.SQLITE_CONSTRAINT_CHECK, lib.SQLITE_CONSTRAINT_NOTNULL:
		return sqlstore.ClassCheck
	case lib.SQLITE_CONSTRAINT_FOREIGNKEY:
		return sqlstore.ClassForeignKey
	}
	switch se.Code() & 0xff {
	case lib.SQLITE_BUSY, lib.SQLITE_LOCKED:
		return sqlstore.ClassRetry
	case lib.SQLITE_CANTOPEN:
		return sqlstore.ClassUnavailable
	}
	return sqlstore.ClassOther
}
