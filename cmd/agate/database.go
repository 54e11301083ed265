package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/postgres"
	"github.com/agate-pdp/agate/store/sqlite"
)

// databasePassword reads --db-password-file, if given, before anything is opened; the
// password never reaches a log line or an error.
func (c serveConfig) databasePassword(log *slog.Logger) (string, error) {
	password, err := readPasswordFile(c.DBPasswordFile, log)
	if err != nil {
		return "", err
	}
	if urlPassword(c.DB) != "" {
		log.Warn("--db holds a password, which anyone who can list processes may read; use --db-password-file, PGPASSWORD or PGPASSFILE")
	}
	return password, nil
}

// readPasswordFile reads a password file once; a final line break is not part of the
// password. "" reads nothing.
func readPasswordFile(path string, log *slog.Logger) (string, error) {
	if path == "" {
		return "", nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--db-password-file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("--db-password-file is readable by other users; restrict it to mode 0600 or 0400", "file", path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--db-password-file: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	if pw == "" {
		return "", errors.New("--db-password-file: is empty")
	}
	return pw, nil
}

// openStore picks the backend by the URL's scheme; anything else is a SQLite path. A
// password, when given, overrides the URL's. Errors carry no password.
func openStore(ctx context.Context, db, password string, log *slog.Logger, tp trace.TracerProvider) (store.Store, error) {
	scheme, _, _ := strings.Cut(db, "://")
	switch scheme {
	case "postgres", "postgresql":
		st, err := postgres.Open(ctx, db, postgres.Options{Logger: log, Password: password, Tracer: tp})
		if err != nil {
			return nil, redactError(err, password, urlPassword(db))
		}
		return st, nil
	case "sqlite", "file":
		return sqlite.Open(ctx, strings.TrimPrefix(strings.TrimPrefix(db, "sqlite://"), "file://"), sqlite.Options{Logger: log, Tracer: tp})
	default:
		if strings.Contains(db, "://") {
			return nil, fmt.Errorf("--db: unsupported scheme %q (use a file path, postgres:// or postgresql://)", scheme)
		}
		return sqlite.Open(ctx, db, sqlite.Options{Logger: log, Tracer: tp})
	}
}

// passwordParams are the URL query parameters PostgreSQL clients read a secret from.
var passwordParams = []string{"password", "sslpassword"}

// urlPassword is the password a database URL carries, in its user info or query.
func urlPassword(db string) string {
	u, err := url.Parse(db)
	if err != nil || u.Scheme == "" {
		return ""
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		return pw
	}
	for _, p := range passwordParams {
		if v := u.Query().Get(p); v != "" {
			return v
		}
	}
	return ""
}

// redactURL is a database URL fit for logs: no user information, no password
// parameters. A value that does not parse as a URL keeps only its scheme.
func redactURL(db string) string {
	if !strings.Contains(db, "://") {
		return db // a SQLite path
	}
	u, err := url.Parse(db)
	if err != nil {
		scheme, _, _ := strings.Cut(db, "://")
		return scheme + "://…"
	}
	if u.User != nil {
		u.User = url.User("…")
	}
	q := u.Query()
	for _, p := range passwordParams {
		if q.Has(p) {
			q.Set(p, "…")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// redactError hides every non-empty secret in err's message, whatever layer wrote it.
func redactError(err error, secrets ...string) error {
	msg := err.Error()
	hidden := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg, hidden = strings.ReplaceAll(msg, s, "xxxxx"), true
		}
		if e := url.QueryEscape(s); s != "" && e != s && strings.Contains(msg, e) {
			msg, hidden = strings.ReplaceAll(msg, e, "xxxxx"), true
		}
	}
	if !hidden {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactedError keeps errors.Is working through a message with secrets removed.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
