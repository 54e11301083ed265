package evidence

import (
	"bytes"
	"testing"

	"github.com/agate-pdp/agate/canonical"
)

// sameForm checks that the hand-ordered writer produces exactly the JCS form of the
// fields map, or fails exactly when that does.
func sameForm(t *testing.T, e *Event) {
	t.Helper()
	got, gotErr := e.appendCanonical(nil)
	want, wantErr := canonical.Append(nil, e.fields())
	if (gotErr != nil) != (wantErr != nil) || !bytes.Equal(got, want) && wantErr == nil {
		t.Fatalf("hand-ordered form %s (%v)\nmap form %s (%v)", got, gotErr, want, wantErr)
	}
}

func TestHashFormMatchesFieldsMap(t *testing.T) {
	t.Parallel()
	for _, k := range Kinds {
		e := fullEvent(k)
		e.Seq, e.PrevHash = 3, "sha256:prev"
		sameForm(t, &e)
	}
	sameForm(t, &Event{}) // every member at its zero value
}

// TestHashFormBeforeAuthMethod: an event without auth_method, such as every event sealed
// before the field existed, hashes exactly as it did then, so old chains still verify;
// with it, the hash covers it.
func TestHashFormBeforeAuthMethod(t *testing.T) {
	t.Parallel()
	e := fullEvent(KindApproval)
	e.Seq, e.PrevHash, e.AuthMethod = 2, "sha256:prev", ""
	// Computed by the release before auth_method existed.
	const sealedBefore = "sha256:c39cb5b3355c5d7fd59d85b84ba2a9afab8e61b328be36d8518d564ecec6e243"
	if h, err := e.ComputeHash(); err != nil || h != sealedBefore {
		t.Fatalf("hash without auth_method = %s, %v; want %s", h, err, sealedBefore)
	}
	for _, m := range []string{"token", "certificate", "oidc:https://login.example.com"} {
		e.AuthMethod = m
		sameForm(t, &e)
		if h, _ := e.ComputeHash(); h == sealedBefore {
			t.Errorf("auth_method %q leaves the hash unchanged", m)
		}
	}
}

func FuzzHashForm(f *testing.F) {
	f.Add("job_1", "agent-7", "why \"quoted\"\n", "rule-a", int64(1), int64(1_700_000_000_000_000), true)
	f.Add("", "", "", "", int64(-1), int64(1<<53+1), false)
	f.Add("\xff", "é", "\u2028", "x", int64(0), int64(0), false)
	f.Fuzz(func(t *testing.T, job, actor, reason, rule string, seq, at int64, repeat bool) {
		e := fullEvent(KindDecision)
		e.JobID, e.Actor, e.Reason, e.Seq, e.At, e.Repeat = job, actor, reason, seq, at, repeat
		e.MatchedRules = []string{rule, reason}
		sameForm(t, &e)
	})
}
