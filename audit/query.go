package audit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/store"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// Query filters and pages events. Empty filters match everything; the others combine
// with AND and match exactly.
type Query struct {
	Window
	Kind       string
	Decision   string
	Status     string
	Topic      string // events of jobs with this topic
	RuleID     string
	Snapshot   string
	ApprovedBy string
	Conflict   string
	PageSize   int // default 100, at most 1000
	PageToken  string
}

// Page is one page of events.
type Page struct {
	Events        []evidence.Event
	NextPageToken string // "" when every settled event matching the query was returned
	// Horizon is where the query stopped (exclusive, µs): Until, or the settled horizon
	// when that came first. Events at or after it were left out; querying again with
	// Since = Horizon continues from there.
	Horizon int64
}

// QueryEvidence returns one page of the events matching q, ordered by (At, EventID).
//
// Events carry the time their transaction read its clock, but commit later, and replicas'
// clocks differ: an event stamped before one already returned may still become visible.
// So the first page fixes a settled horizon, now minus the settle time, and every page
// of the query stops there; the page token carries the horizon with the position, so
// later pages neither skip an event that commits late nor repeat one.
func (s *Service) QueryEvidence(ctx context.Context, q Query) (Page, error) {
	if err := q.check(); err != nil {
		return Page{}, err
	}
	size := defaultPageSize
	switch {
	case q.PageSize < 0:
		return Page{}, invalid("page_size", "must not be negative")
	case q.PageSize > maxPageSize:
		size = maxPageSize
	case q.PageSize > 0:
		size = q.PageSize
	}
	fp := q.fingerprint()
	cur := cursor{horizon: s.clock().UnixMicro() - micros(s.settle)}
	if q.PageToken != "" {
		var err error
		if cur, err = decodeCursor(q.PageToken, fp); err != nil {
			return Page{}, err
		}
	}
	end := cur.horizon
	if q.Until > 0 && q.Until < end {
		end = q.Until
	}
	page := Page{Horizon: end}
	if end <= q.Since {
		return page, nil
	}
	eq := store.EventQuery{Since: q.Since, Until: end, Kind: q.Kind, Decision: q.Decision,
		Status: q.Status, RuleID: q.RuleID, Snapshot: q.Snapshot, ApprovedBy: q.ApprovedBy,
		Conflict: q.Conflict, Topic: q.Topic, AfterAt: cur.at, AfterEventID: cur.id, Limit: size + 1}
	err := s.read(ctx, func(ctx context.Context, tx store.Tx) error {
		var err error
		page.Events, err = tx.QueryEvents(ctx, eq)
		return err
	})
	if err != nil {
		return Page{}, err
	}
	if len(page.Events) > size {
		page.Events = page.Events[:size]
		last := page.Events[size-1]
		page.NextPageToken = cursor{at: last.At, id: last.EventID, horizon: cur.horizon}.encode(fp)
	}
	return page, nil
}

// statuses are the values a job's status, and so an event's, can take.
var statuses = []store.Status{store.StatusAllowed, store.StatusDenied, store.StatusPendingApproval,
	store.StatusApproved, store.StatusRejected, store.StatusExpired, store.StatusCancelled,
	store.StatusConflict, store.StatusAllowedAndPublished, store.StatusApprovedAndPublished,
	store.StatusSucceeded, store.StatusFailed}

// check refuses filter values that can never match, so a typo is an error rather than
// an empty answer.
func (q Query) check() error {
	if err := q.Window.check(); err != nil {
		return err
	}
	if q.Kind != "" && evidence.Required(evidence.Kind(q.Kind)) == nil {
		return invalid("kind", "%q is not an event kind", q.Kind)
	}
	if q.Decision != "" && !slices.Contains([]string{"allow", "deny", "require_human"}, q.Decision) {
		return invalid("decision", "must be allow, deny or require_human")
	}
	if q.Status != "" && !slices.Contains(statuses, store.Status(q.Status)) {
		return invalid("status", "%q is not a job status", q.Status)
	}
	return nil
}

// fingerprint identifies the filters, so a page token is refused with other filters.
func (q Query) fingerprint() string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%d\x00%d\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s",
		q.Since, q.Until, q.Kind, q.Decision, q.Status, q.Topic, q.RuleID, q.Snapshot, q.ApprovedBy, q.Conflict))
	return hex.EncodeToString(sum[:6])
}

// cursor is a page token's content: the position after which the next page starts and
// the horizon the query stops at.
type cursor struct {
	at      int64
	id      string
	horizon int64
}

const tokenVersion = "q1"

func (c cursor) encode(fp string) string {
	raw := strings.Join([]string{tokenVersion, fp, strconv.FormatInt(c.at, 10), strconv.FormatInt(c.horizon, 10), c.id}, "|")
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(tok, fp string) (cursor, error) {
	bad := invalid("page_token", "not a token this service issued")
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return cursor{}, bad
	}
	parts := strings.SplitN(string(b), "|", 5)
	if len(parts) != 5 || parts[0] != tokenVersion || parts[4] == "" {
		return cursor{}, bad
	}
	if parts[1] != fp {
		return cursor{}, invalid("page_token", "was issued for other filters")
	}
	at, err1 := strconv.ParseInt(parts[2], 10, 64)
	horizon, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil {
		return cursor{}, bad
	}
	return cursor{at: at, id: parts[4], horizon: horizon}, nil
}
