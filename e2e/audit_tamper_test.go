package e2e

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oklog/ulid/v2"
	_ "modernc.org/sqlite" // raw access to the embedded database, as a tamperer would have

	"github.com/agate-pdp/agate/evidence"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/store/postgres/pgtest"
)

// rawDB runs SQL on the database behind the server's back.
type rawDB func(t *testing.T, q string, args ...any)

func rawPostgres(t *testing.T, url string) rawDB {
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return func(t *testing.T, q string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(context.Background(), q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func rawSQLite(t *testing.T, path string) rawDB {
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return func(t *testing.T, q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestTamperDetected tampers with the evidence rows in SQL, in each of the four ways at
// once on four jobs, while the server runs and keeps sealing; VerifyEvidence and
// `agate evidence verify` must both name exactly the rows concerned. Then a
// checkpoint row is edited, and a wrong key is pinned.
func TestTamperDetected(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			key := filepath.Join(t.TempDir(), "evidence.key")
			var db string
			var raw rawDB
			if backend == "postgres" {
				db = pgtest.URL(t)
				raw = rawPostgres(t, db)
			} else {
				db = filepath.Join(t.TempDir(), "agate.db")
				raw = rawSQLite(t, db)
			}
			a := startAgate(t, db, auditArgs(key)...)
			tl := runWorkload(t, []*agate{a}, 40, testSeed(t), "job")
			waitFor(t, "every chain to be sealed", 20*time.Second, func() bool {
				_, sealed := exportAll(t, a)
				return sealed
			})
			want := tamper(t, a, raw, tl)
			pem := publicKeyFile(t, key)
			checkProblems(t, a, db, pem, want)

			// A checkpoint edited in the database no longer verifies.
			raw(t, `UPDATE checkpoints SET root = $1 WHERE seq = 1`, strings.Repeat("0", 64))
			checkProblems(t, a, db, pem, append(want, "modified checkpoint 1"))

			// Against another key, every checkpoint's signature fails.
			other := hex.EncodeToString(make([]byte, 32))
			out, code := agateRun(t, "evidence", "verify", "--db", db, "--public-key", other)
			if code != 1 || !strings.Contains(out, "bad_signature checkpoint=") {
				t.Errorf("verify with another key: exit %d\n%s", code, out)
			}
		})
	}
}

// tamper modifies, deletes, inserts and reorders evidence rows of four jobs whose
// chains have at least four events, and returns the problems that must be reported.
func tamper(t *testing.T, a *agate, raw rawDB, tl *tally) []string {
	t.Helper()
	ctx := ctxT(t)
	var chains [][]evidence.Event
	for job := range tl.status {
		ev, err := a.evidence().GetEvidence(as(ctx, tokAudit), &agatev1.GetEvidenceRequest{JobId: job})
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Events) >= 4 {
			var events []evidence.Event
			for _, e := range ev.Events {
				events = append(events, server.EventFromWire(e))
			}
			chains = append(chains, events)
		}
	}
	if len(chains) < 4 {
		t.Fatalf("only %d chains of four events or more", len(chains))
	}
	mod, del, ins, reo := chains[0], chains[1], chains[2], chains[3]

	raw(t, `UPDATE evidence SET reason = 'nothing to see' WHERE event_id = $1`, mod[1].EventID)
	raw(t, `DELETE FROM evidence WHERE event_id = $1`, del[1].EventID)
	// A well-formed event with a valid hash, forking the chain after its first event.
	fork := ins[1]
	fork.EventID, fork.Seq, fork.ApprovedBy = ulid.Make().String(), int64(len(ins))+1, "mallory@example.com"
	var err error
	if fork.Hash, err = fork.ComputeHash(); err != nil {
		t.Fatal(err)
	}
	insertEvent(t, raw, fork)
	raw(t, `UPDATE evidence SET seq = 1000 WHERE event_id = $1`, reo[1].EventID)
	raw(t, `UPDATE evidence SET seq = 2 WHERE event_id = $1`, reo[2].EventID)
	raw(t, `UPDATE evidence SET seq = 3 WHERE event_id = $1`, reo[1].EventID)

	return []string{
		fmt.Sprintf("modified %s 2 %s", mod[0].JobID, mod[1].EventID),
		fmt.Sprintf("deleted %s 2 ", del[0].JobID),
		fmt.Sprintf("inserted %s %d %s", ins[0].JobID, fork.Seq, fork.EventID),
		fmt.Sprintf("reordered %s 2 %s", reo[0].JobID, reo[2].EventID),
		fmt.Sprintf("reordered %s 3 %s", reo[0].JobID, reo[1].EventID),
	}
}

// insertEvent writes e as a row, as the store would: absent fields are NULL.
func insertEvent(t *testing.T, raw rawDB, e evidence.Event) {
	t.Helper()
	null := func(v any) any {
		switch x := v.(type) {
		case string:
			if x == "" {
				return nil
			}
		case int64:
			if x == 0 {
				return nil
			}
		}
		return v
	}
	var matched any
	if len(e.MatchedRules) > 0 {
		matched = `["` + strings.Join(e.MatchedRules, `","`) + `"]`
	}
	raw(t, `INSERT INTO evidence (job_id, seq, event_id, trace_id, kind, at, actor, principal, decision,
		approval_required, rule_id, reason, matched_rules, policy_snapshot, previous_snapshot, job_hash,
		presented_hash, approved_by, approved_role, approved_at, status, attempt, conflict,
		replay_reason_code, repeat, prev_hash, hash, auth_method) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
		$11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)`,
		e.JobID, e.Seq, e.EventID, null(e.TraceID), string(e.Kind), e.At, null(e.Actor), e.Principal,
		null(e.Decision), e.ApprovalRequired, null(e.RuleID), null(e.Reason), matched,
		null(e.PolicySnapshot), null(e.PreviousSnapshot), null(e.JobHash), null(e.PresentedHash),
		null(e.ApprovedBy), null(e.ApprovedRole), null(e.ApprovedAt), null(e.Status), null(e.Attempt),
		null(e.Conflict), null(e.ReplayReasonCode), e.Repeat, null(e.PrevHash), e.Hash, null(e.AuthMethod))
}

var problemLine = regexp.MustCompile(`^(\w+) (?:job=(\S+)|checkpoint=?(\S*)) seq=(\d+)(?: event=(\S+))?: `)

// checkProblems asserts that VerifyEvidence and `agate evidence verify --db` both report
// exactly want ("kind job seq event", or "kind checkpoint seq").
func checkProblems(t *testing.T, a *agate, db, pem string, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	v, err := a.evidence().VerifyEvidence(as(ctxT(t), tokAudit), &agatev1.VerifyEvidenceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var rpc []string
	for _, p := range v.Problems {
		kind := lower(p.Kind.String(), "TAMPER_KIND_")
		if p.JobId == "" {
			rpc = append(rpc, fmt.Sprintf("%s checkpoint %d", kind, p.Seq))
		} else {
			rpc = append(rpc, fmt.Sprintf("%s %s %d %s", kind, p.JobId, p.Seq, p.EventId))
		}
	}
	slices.Sort(rpc)
	if v.Ok || !slices.Equal(rpc, want) {
		t.Errorf("VerifyEvidence (ok=%v):\n got %s\nwant %s\n%v", v.Ok, strings.Join(rpc, "\n     "), strings.Join(want, "\n     "), v.Problems)
	}

	out, code := agateRun(t, "evidence", "verify", "--db", db, "--public-key", pem)
	var cli []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		m := problemLine.FindStringSubmatch(line)
		switch {
		case m == nil:
		case m[2] != "":
			cli = append(cli, fmt.Sprintf("%s %s %s %s", m[1], m[2], m[4], m[5]))
		default:
			cli = append(cli, fmt.Sprintf("%s checkpoint %s", m[1], m[4]))
		}
	}
	slices.Sort(cli)
	if code != 1 || !slices.Equal(cli, want) || !strings.Contains(out, fmt.Sprintf("FAILED: %d problems", len(want))) {
		t.Errorf("agate evidence verify: exit %d\n got %s\nwant %s\n%s", code, strings.Join(cli, "\n     "), strings.Join(want, "\n     "), out)
	}
}
