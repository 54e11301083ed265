package audit_test

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
)

func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	je, ok := jobs.AsError(err)
	if !ok || je.Code != jobs.CodeInvalidArgument || je.Field != field {
		t.Errorf("err = %v, want INVALID_ARGUMENT on %s", err, field)
	}
}

func TestGetEvidence(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		sc := runScenario(t, e)
		ev, err := e.audit.GetEvidence(ctx, "pay-5")
		if err != nil {
			t.Fatal(err)
		}
		j := ev.Job
		want := evidence.Summary{JobID: "pay-5", TraceID: j.TraceID, Decision: "require_human", ApprovalRequired: true,
			PolicySnapshot: sc.snapV2, JobHash: j.Hash, ApprovedBy: alice.ID, ApprovedRole: "finance-approver",
			ApprovedAt: j.ApprovedAt, Status: "approved_and_published", Topic: "finance.payment.execute",
			Actor: "agent-7", Attempt: 1}
		if ev.Summary != want || j.ApprovedAt == 0 || j.TraceID == "" {
			t.Errorf("summary = %+v\nwant %+v", ev.Summary, want)
		}
		if missing := evidence.CheckSummary(ev.Summary); missing != nil {
			t.Errorf("summary lacks %v", missing)
		}
		if len(ev.Approvals) != 1 || ev.Approvals[0].Approver != alice.ID || ev.Approvals[0].Revision != 2 {
			t.Errorf("approvals = %+v, want alice's of revision 2", ev.Approvals)
		}
		if got := kinds(ev.Events); got != sc.kinds["pay-5"] {
			t.Errorf("events = %s", got)
		}
		// A job in conflict names the conflict's reason.
		step := func() { e.clock.Advance(time.Second) }
		step()
		must(e.svc.Decide(ctx, decider, payment("pay-6")))(t)
		step()
		e.activate(t, policyV1)
		step()
		_, _ = e.svc.Approve(ctx, alice, jobs.ApproveRequest{JobID: "pay-6", JobHash: ev.Job.Hash})
		if got := must(e.audit.GetEvidence(ctx, "pay-6"))(t); got.Conflict != "SNAPSHOT_DRIFT" || got.Summary.Status != "conflict" {
			t.Errorf("pay-6: status %s, conflict %q; want conflict SNAPSHOT_DRIFT", got.Summary.Status, got.Conflict)
		}
		pol := must(e.audit.GetEvidence(ctx, evidence.PolicyChain))(t)
		if len(pol.Events) != 3 || pol.Summary.JobID != "" {
			t.Errorf("policy chain: %d events, summary %+v", len(pol.Events), pol.Summary)
		}
		_, err = e.audit.GetEvidence(ctx, "no-such-job")
		if je, ok := jobs.AsError(err); !ok || je.Code != jobs.CodeNotFound {
			t.Errorf("unknown job: %v, want NOT_FOUND", err)
		}
		_, err = e.audit.GetEvidence(ctx, "bad id!")
		wantInvalid(t, err, "job_id")
	})
}

func TestCountsMatchTheEvidence(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		sc := runScenario(t, e)
		all := audit.Window{}

		c := must(e.audit.CheckCompleteness(ctx, all))(t)
		if len(c.Findings) != 0 || c.EventsChecked != sc.total() || c.JobsChecked != int64(len(sc.statuses)) ||
			c.IncompleteEvents != 0 || c.IncompleteJobs != 0 {
			t.Errorf("completeness = %+v; want no findings, %d events, %d jobs", c, sc.total(), len(sc.statuses))
		}

		st := must(e.audit.Stats(ctx, all))(t)
		statuses := map[string]int64{}
		for _, s := range sc.statuses {
			statuses[s]++
		}
		want := audit.Stats{
			AlreadyApproved: 1, AlreadyRejected: 1, LockBusy: 0,
			SnapshotDrift:   sc.count(evidence.KindConflict, "SNAPSHOT_DRIFT"),
			JobHashMismatch: sc.count(evidence.KindConflict, "JOB_HASH_MISMATCH"),
			ReplayedJobs:    1, Replays: 1,
			ReplaysByReason:  map[string]int64{"WORKER_OUTAGE": 1},
			Statuses:         statuses,
			Decisions:        map[string]int64{"allow": 2, "deny": 1, "require_human": 7},
			RefusalsByReason: map[string]int64{"ALREADY_REJECTED": 1, "SELF_APPROVAL": 1, "NO_STANDING": 1, "JOB_ID_IN_USE": 1},
		}
		if !sameStats(st, want) {
			t.Errorf("stats = %+v\nwant %+v", st, want)
		}

		// Hand-counted from the mapping in evidence/controls.yaml and the scenario.
		wantMatrix := map[string]int64{
			"policy-gate":         sc.count(evidence.KindDecision, "") + sc.count(evidence.KindPolicyActivation, ""),
			"approval-integrity":  6 + 2 + 2 + 5, // approval, rejection, conflict, publish
			"idempotent-approval": 6 + 2 + 0 + 4, // approval, rejection, LOCK_BUSY conflict, refusal
			"replay":              1 + 2 + 5,     // replay, outcome, publish
		}
		m := must(e.audit.ControlMatrix(ctx, all))(t)
		for _, cc := range m {
			if cc.Events != wantMatrix[cc.ID] || cc.Incomplete != 0 {
				t.Errorf("control %s: %d events (%d incomplete), want %d", cc.ID, cc.Events, cc.Incomplete, wantMatrix[cc.ID])
			}
		}
		if len(m) != len(wantMatrix) {
			t.Errorf("%d controls, want %d", len(m), len(wantMatrix))
		}

		// A window counts only its events: the first three seconds hold the activation
		// and allow-1's decision and publish.
		w := audit.Window{Since: t0.UnixMicro(), Until: t0.Add(3 * time.Second).UnixMicro()}
		if c := must(e.audit.CheckCompleteness(ctx, w))(t); c.EventsChecked != 3 || c.JobsChecked != 1 {
			t.Errorf("windowed completeness checked %d events, %d jobs; want 3, 1", c.EventsChecked, c.JobsChecked)
		}
		if st := must(e.audit.Stats(ctx, w))(t); !maps.Equal(st.Statuses, map[string]int64{"allowed_and_published": 1}) {
			t.Errorf("windowed statuses = %v", st.Statuses)
		}
		_, err := e.audit.Stats(ctx, audit.Window{Since: 5, Until: 5})
		wantInvalid(t, err, "until")
	})
}

func sameStats(a, b audit.Stats) bool {
	for _, m := range [][2]map[string]int64{{a.ReplaysByReason, b.ReplaysByReason}, {a.Statuses, b.Statuses},
		{a.Decisions, b.Decisions}, {a.RefusalsByReason, b.RefusalsByReason}} {
		if !maps.Equal(m[0], m[1]) {
			return false
		}
	}
	return a.AlreadyApproved == b.AlreadyApproved && a.AlreadyRejected == b.AlreadyRejected &&
		a.LockBusy == b.LockBusy && a.SnapshotDrift == b.SnapshotDrift && a.JobHashMismatch == b.JobHashMismatch &&
		a.ReplayedJobs == b.ReplayedJobs && a.Replays == b.Replays
}

// A job row that lost its approver, and a chain without a job row, are found.
func TestCompletenessFindsGaps(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		runScenario(t, e)
		e.raw(t, `UPDATE jobs SET approved_by = '', approved_at = 0 WHERE job_id = 'xfer-1'`)
		e.raw(t, `DELETE FROM approvals WHERE job_id = 'deny-1'`)
		e.raw(t, `DELETE FROM jobs WHERE job_id = 'deny-1'`)
		c := must(e.audit.CheckCompleteness(ctx, audit.Window{}))(t)
		want := []audit.Finding{
			{JobID: "deny-1", Kind: audit.SummaryKind, Missing: []string{"job_id", "trace_id", "decision", "policy_snapshot", "job_hash", "status"}},
			{JobID: "xfer-1", Kind: audit.SummaryKind, Missing: []string{"approved_by", "approved_at"}},
		}
		slices.SortFunc(c.Findings, func(a, b audit.Finding) int { return cmp.Compare(a.JobID, b.JobID) })
		if len(c.Findings) != len(want) || c.IncompleteJobs != 2 || c.IncompleteEvents != 0 {
			t.Fatalf("findings = %+v, want %+v", c.Findings, want)
		}
		for i := range want {
			if c.Findings[i].JobID != want[i].JobID || !slices.Equal(c.Findings[i].Missing, want[i].Missing) {
				t.Errorf("finding %d = %+v, want %+v", i, c.Findings[i], want[i])
			}
		}
	})
}

func TestSealerAndVerifyOnCleanEvidence(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		sc := runScenario(t, e)
		if cp := e.seal(t); cp == nil || cp.Seq != 1 || len(cp.Heads) != len(sc.kinds) {
			t.Fatalf("first seal = %+v, want checkpoint 1 over %d chains", cp, len(sc.kinds))
		}
		if cp, err := e.sealer.SealOnce(ctx); cp != nil || err != nil {
			t.Fatalf("sealing with nothing new = %v, %v; want nil, nil", cp, err)
		}
		// One chain grows: the next checkpoint seals only it, linked to the first.
		e.clock.Advance(time.Second)
		must(e.svc.ReportOutcome(ctx, dispatcher, jobs.OutcomeRequest{JobID: "xfer-1", Attempt: 1, Succeeded: true}))(t)
		cp := e.seal(t)
		if cp == nil || cp.Seq != 2 || len(cp.Heads) != 1 || cp.Heads[0].JobID != "xfer-1" || cp.Heads[0].Seq != 5 {
			t.Fatalf("second seal = %+v, want checkpoint 2 over xfer-1 #5", cp)
		}
		rep := must(e.audit.Verify(ctx, audit.Window{}))(t)
		if !rep.OK() || rep.CheckpointsVerified != 2 || rep.ChainsVerified != int64(len(sc.kinds)) || rep.EventsVerified != sc.total()+1 {
			t.Fatalf("verify = %+v", rep)
		}
		// The pinned key must be the signer's.
		other, err := audit.New(audit.Config{Store: e.st, PublicKey: make([]byte, 32)})
		if err != nil {
			t.Fatal(err)
		}
		rep = must(other.Verify(ctx, audit.Window{}))(t)
		if len(rep.Problems) != 2 || rep.Problems[0].Kind != audit.BadSignature || rep.Problems[1].Kind != audit.BadSignature ||
			rep.Problems[0].CheckpointID == "" {
			t.Errorf("verify with another key = %+v, want two bad signatures", rep.Problems)
		}
	})
}

func TestSampleAudit(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		sc := runScenario(t, e)
		seed := int64(7)
		res := must(e.audit.SampleAudit(ctx, audit.SampleRequest{Seed: &seed}))(t)
		if res.Population != int64(len(sc.finished)) || len(res.Verdicts) != len(sc.finished) ||
			res.Passed != len(sc.finished) || res.Failed != 0 || res.Seed != seed {
			t.Fatalf("sample = %+v", res)
		}
		for i, v := range res.Verdicts {
			if v.JobID != sc.finished[i] || !v.Passed || len(v.Checks) != len(audit.CheckNames) {
				t.Errorf("verdict %d = %+v", i, v)
			}
			for j, c := range v.Checks {
				if c.Name != audit.CheckNames[j] || !c.Passed {
					t.Errorf("%s: check %+v", v.JobID, c)
				}
			}
		}
		// The same seed draws the same sample; a sample of 3 is 3 of the population.
		a := must(e.audit.SampleAudit(ctx, audit.SampleRequest{N: 3, Seed: &seed}))(t)
		b := must(e.audit.SampleAudit(ctx, audit.SampleRequest{N: 3, Seed: &seed}))(t)
		if ids(a) == "" || ids(a) != ids(b) || len(a.Verdicts) != 3 {
			t.Errorf("same seed, samples %s and %s", ids(a), ids(b))
		}
		if r := must(e.audit.SampleAudit(ctx, audit.SampleRequest{N: 3}))(t); r.Seed < 0 || len(r.Verdicts) != 3 {
			t.Errorf("drawn seed: %+v", r)
		}
		_, err := e.audit.SampleAudit(ctx, audit.SampleRequest{N: -1})
		wantInvalid(t, err, "n")
	})
}

func ids(r audit.SampleResult) string {
	var s string
	for _, v := range r.Verdicts {
		s += v.JobID + " "
	}
	return s
}

// Each tampering fails exactly the checks that guard against it.
func TestSampleAuditCatchesTampering(t *testing.T) {
	t.Parallel()
	onV1 := []string{"allow-1", "allow-2", "deny-1", "pay-1", "pay-2", "xfer-1"} // decided under V1
	tests := []struct {
		name  string
		sql   string
		args  []any
		fails map[string][]string // job -> the checks it must fail; every other check passes
	}{
		{"payload changed", `UPDATE jobs SET payload = $1 WHERE job_id = 'pay-1'`, []any{[]byte(`{"amount": 99999}`)},
			map[string][]string{"pay-1": {audit.CheckJobHash}}},
		{"actor changed to the approver", `UPDATE jobs SET actor = 'alice@example.com' WHERE job_id = 'pay-1'`, nil,
			map[string][]string{"pay-1": {audit.CheckJobHash, audit.CheckSeparationOfDuties}}},
		{"decision changed", `UPDATE jobs SET decision = 'allow' WHERE job_id = 'deny-1'`, nil,
			map[string][]string{"deny-1": {audit.CheckDecisionReplay}}},
		{"approval removed", `DELETE FROM approvals WHERE job_id = 'xfer-1' AND approver = 'carol@example.com'`, nil,
			map[string][]string{"xfer-1": {audit.CheckQuorum}}},
		{"event edited", `UPDATE evidence SET reason = 'edited' WHERE job_id = 'allow-1' AND seq = 2`, nil,
			map[string][]string{"allow-1": {audit.CheckChainIntegrity}}},
		// Every finished job's evidence names V1; those decided under it cannot be replayed.
		{"snapshot source changed", `UPDATE policy_snapshots SET source = $1 WHERE id = (SELECT policy_snapshot FROM jobs WHERE job_id = 'pay-1')`,
			[]any{[]byte("version: v1\n")}, func() map[string][]string {
				m := map[string][]string{"pay-5": {audit.CheckSnapshotIntegrity}}
				for _, id := range onV1 {
					m[id] = []string{audit.CheckSnapshotIntegrity, audit.CheckDecisionReplay}
				}
				return m
			}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "sqlite")
			sc := runScenario(t, e)
			if n := e.raw(t, tc.sql, tc.args...); n == 0 {
				t.Fatal("the tampering changed nothing")
			}
			seed := int64(1)
			res := must(e.audit.SampleAudit(context.Background(), audit.SampleRequest{N: 100, Seed: &seed}))(t)
			if len(res.Verdicts) != len(sc.finished) || res.Failed != len(tc.fails) {
				t.Errorf("%d verdicts, %d failed; want %d, %d", len(res.Verdicts), res.Failed, len(sc.finished), len(tc.fails))
			}
			for _, v := range res.Verdicts {
				var failed []string
				for _, c := range v.Checks {
					if !c.Passed {
						failed = append(failed, c.Name)
						if c.Detail == "" {
							t.Errorf("%s: %s failed without saying why", v.JobID, c.Name)
						}
					}
				}
				want := tc.fails[v.JobID]
				slices.Sort(failed)
				slices.Sort(want)
				if !slices.Equal(failed, want) || v.Passed != (len(want) == 0) {
					t.Errorf("%s failed %v (passed=%v), want %v", v.JobID, failed, v.Passed, want)
				}
			}
		})
	}
}

func TestQueryEvidencePaging(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		sc := runScenario(t, e)
		e.clock.Advance(audit.DefaultSettle + time.Second) // everything so far is settled

		var got []evidence.Event
		q := audit.Query{PageSize: 4}
		var horizon int64
		for range 100 {
			page := must(e.audit.QueryEvidence(ctx, q))(t)
			if horizon == 0 {
				horizon = page.Horizon
				// A late event arrives in the middle of the paging: stamped after the
				// horizon, it belongs to the next query, never to this one.
				e.clock.Advance(time.Second)
				must(e.svc.Decide(ctx, decider, payment("late-1")))(t)
			}
			if page.Horizon != horizon || len(page.Events) > 4 {
				t.Fatalf("page of %d, horizon %d (first %d)", len(page.Events), page.Horizon, horizon)
			}
			got = append(got, page.Events...)
			if page.NextPageToken == "" {
				break
			}
			q.PageToken = page.NextPageToken
		}
		if int64(len(got)) != sc.total() {
			t.Fatalf("paged %d events, want %d", len(got), sc.total())
		}
		seen := map[string]bool{}
		for i, ev := range got {
			if seen[ev.EventID] || i > 0 && (ev.At < got[i-1].At || ev.At == got[i-1].At && ev.EventID <= got[i-1].EventID) {
				t.Fatalf("event %d (%s) repeated or out of order", i, ev.EventID)
			}
			seen[ev.EventID] = true
		}
		// Continuing from the horizon finds the late event once it is settled.
		if p := must(e.audit.QueryEvidence(ctx, audit.Query{Window: audit.Window{Since: horizon}}))(t); len(p.Events) != 0 {
			t.Errorf("the late event was returned before it settled: %v", p.Events)
		}
		e.clock.Advance(audit.DefaultSettle + time.Second)
		p := must(e.audit.QueryEvidence(ctx, audit.Query{Window: audit.Window{Since: horizon}}))(t)
		if len(p.Events) != 1 || p.Events[0].JobID != "late-1" {
			t.Errorf("continuation = %v, want late-1's decision", kinds(p.Events))
		}

		filters := []struct {
			q    audit.Query
			want int64
		}{
			{audit.Query{Kind: "approval"}, sc.count(evidence.KindApproval, "")},
			{audit.Query{Conflict: "SNAPSHOT_DRIFT"}, 1},
			{audit.Query{Topic: "finance.transfer.large"}, 4},
			{audit.Query{Decision: "deny"}, 1},
			{audit.Query{Status: "failed"}, 1},
			{audit.Query{ApprovedBy: carol.ID, Kind: "approval"}, 1},
			{audit.Query{RuleID: "deny-export"}, 1},
			{audit.Query{Snapshot: sc.snapV2, Kind: "decision"}, 1},
		}
		for _, f := range filters {
			f.q.Until = horizon
			if p := must(e.audit.QueryEvidence(ctx, f.q))(t); int64(len(p.Events)) != f.want {
				t.Errorf("QueryEvidence(%+v) = %d events, want %d", f.q, len(p.Events), f.want)
			}
		}

		first := must(e.audit.QueryEvidence(ctx, audit.Query{PageSize: 1}))(t)
		for _, bad := range []struct {
			q     audit.Query
			field string
		}{
			{audit.Query{PageToken: "garbage!"}, "page_token"},
			{audit.Query{PageToken: first.NextPageToken, Kind: "decision"}, "page_token"},
			{audit.Query{Kind: "aproval"}, "kind"},
			{audit.Query{Decision: "maybe"}, "decision"},
			{audit.Query{Status: "done"}, "status"},
			{audit.Query{PageSize: -1}, "page_size"},
			{audit.Query{Window: audit.Window{Since: 10, Until: 10}}, "until"},
		} {
			_, err := e.audit.QueryEvidence(ctx, bad.q)
			wantInvalid(t, err, bad.field)
		}
	})
}

// exportOf collects an export as a verifier reads it back, checking its order: the
// manifest, then events, then checkpoints.
func exportOf(t *testing.T, e *env, w audit.Window) audit.Export {
	t.Helper()
	var out audit.Export
	err := e.audit.Export(context.Background(), w, func(it audit.ExportItem) error {
		switch {
		case it.Manifest != nil:
			if out.Manifest != nil || len(out.Events)+len(out.Checkpoints) > 0 {
				t.Fatal("the manifest is not first")
			}
			out.Manifest = it.Manifest
		case it.Event != nil:
			if len(out.Checkpoints) > 0 {
				t.Fatal("an event after a checkpoint")
			}
			out.Events = append(out.Events, *it.Event)
		default:
			out.Checkpoints = append(out.Checkpoints, *it.Checkpoint)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.Manifest == nil {
		t.Fatal("no manifest")
	}
	return out
}

func pinned() audit.Trust {
	return audit.Trust{Keys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}}
}

func TestExportVerifiesOffline(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		sc := runScenario(t, e)
		e.seal(t)
		exp := exportOf(t, e, audit.Window{})
		if int64(len(exp.Events)) != sc.total() || len(exp.Checkpoints) != 1 || exp.Manifest.FirstCheckpoint != 1 {
			t.Fatalf("export: %d events, %d checkpoints, manifest %+v", len(exp.Events), len(exp.Checkpoints), exp.Manifest)
		}
		if rep := audit.VerifyExport(pinned(), exp, false); !rep.OK() || rep.EventsVerified != sc.total() {
			t.Fatalf("VerifyExport = %+v", rep)
		}
		// A window exports whole chains, and every chain its checkpoints seal: the one
		// checkpoint seals every chain, so the window holds them all.
		w := audit.Window{Since: must(e.audit.GetEvidence(ctx, "pay-5"))(t).Events[2].At}
		part := exportOf(t, e, w)
		if !slices.ContainsFunc(part.Events, func(ev evidence.Event) bool { return ev.JobID == "pay-5" && ev.Seq == 1 }) ||
			!slices.ContainsFunc(part.Events, func(ev evidence.Event) bool { return ev.JobID == "pay-1" }) {
			t.Errorf("windowed export = %s", kinds(part.Events))
		}
		if rep := audit.VerifyExport(pinned(), part, false); !rep.OK() {
			t.Errorf("windowed export does not verify: %+v", rep.Problems)
		}
		// An edited event in the file is found.
		events := slices.Clone(exp.Events)
		i := slices.IndexFunc(events, func(ev evidence.Event) bool { return ev.JobID == "pay-1" && ev.Seq == 2 })
		events[i].ApprovedBy = "mallory@example.com"
		rep := audit.VerifyExport(pinned(), audit.Export{Manifest: exp.Manifest, Events: events, Checkpoints: exp.Checkpoints}, false)
		if len(rep.Problems) != 1 || rep.Problems[0].Kind != evidence.Modified || rep.Problems[0].EventID != events[i].EventID {
			t.Errorf("edited export: %+v", rep.Problems)
		}
		// A job removed from the file, checkpoints kept, is found and named; so is one
		// cut short of its sealed head.
		gone := slices.DeleteFunc(slices.Clone(exp.Events), func(ev evidence.Event) bool { return ev.JobID == "pay-1" })
		short := slices.DeleteFunc(slices.Clone(exp.Events), func(ev evidence.Event) bool { return ev.JobID == "pay-2" && ev.Seq > 1 })
		for name, c := range map[string]struct {
			events []evidence.Event
			job    string
		}{"removed": {gone, "pay-1"}, "cut short": {short, "pay-2"}} {
			rep := audit.VerifyExport(pinned(), audit.Export{Manifest: exp.Manifest, Events: c.events, Checkpoints: exp.Checkpoints}, false)
			if len(rep.Problems) != 1 || rep.Problems[0].Kind != evidence.Deleted || rep.Problems[0].JobID != c.job {
				t.Errorf("%s: %+v, want one deletion naming %s", name, rep.Problems, c.job)
			}
		}
		// The same file without its manifest (as exports before it were) is still
		// checked for completeness, unless its verifier accepts the old format.
		if rep := audit.VerifyExport(pinned(), audit.Export{Events: gone, Checkpoints: exp.Checkpoints}, false); rep.OK() {
			t.Error("a removed job went unnoticed without the manifest")
		}
		if rep := audit.VerifyExport(pinned(), audit.Export{Events: gone, Checkpoints: exp.Checkpoints}, true); !rep.OK() {
			t.Errorf("legacy: %+v", rep.Problems)
		}
	})
}

func TestServiceConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "sqlite")
	if _, err := audit.New(audit.Config{PublicKey: make([]byte, 32)}); err == nil {
		t.Error("New without a store succeeded")
	}
	if _, err := audit.New(audit.Config{Store: e.st, PublicKey: []byte("short")}); err == nil {
		t.Error("New with a bad key succeeded")
	}
	if _, err := audit.NewSealer(audit.SealerConfig{Store: e.st}); err == nil {
		t.Error("NewSealer without a key succeeded")
	}
}
