package server

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agate-pdp/agate/audit"
	"github.com/agate-pdp/agate/evidence"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/storetest"
)

var updateReadme = flag.Bool("update-readme", false, "rewrite the README's who-may-do-what table from the authorization matrix")

// The authorization matrix: every RPC × every kind of caller → the outcome. It is the one
// statement of who may do what: TestAuthorizationMatrix runs it through the real gRPC
// server, and TestReadmeWhoMayDoWhat holds the README's table to it.

// A matrixCaller is one kind of caller. Callers of one group behave alike and share a
// column in the README.
type matrixCaller struct {
	group string   // README column
	id    string   // principal id; "" sends no credentials
	roles []string //
	actor string   // the actor of the jobs it is tried on; "" is agent-7
	cert  string   // the principal whose client certificate the connection presents; "" none
}

var matrixCallers = []matrixCaller{
	{group: "no credentials"},
	{group: "decide: the submitter", id: "svc-orders", roles: []string{"decide"}},
	{group: "decide: another submitter", id: "svc-other", roles: []string{"decide"}},
	{group: "dispatch", id: "dispatcher", roles: []string{"dispatch"}},
	{group: "audit", id: "auditor@example.com", roles: []string{"audit"}},
	{group: "policy-admin", id: "policy-owner@example.com", roles: []string{"policy-admin"}},
	{group: "operator", id: "ops@example.com", roles: []string{"operator"}},
	{group: "a role no policy or method names", id: "nobody@example.com", roles: []string{"intern"}},
	{group: "eligible approver (admin)", id: "bob@example.com", roles: []string{"admin"}},
	{group: "eligible approver", id: "alice@example.com", roles: []string{"finance-approver"}},
	{group: "approver of another topic", id: "tess@example.com", roles: []string{"treasurer"}},
	// The job's actor, in four spellings of the approver's id: one person.
	{group: "the job's actor (any spelling), an approver", id: "alice@example.com", roles: []string{"finance-approver"}, actor: "alice@example.com"},
	{group: "the job's actor (any spelling), an approver", id: "alice@example.com", roles: []string{"finance-approver"}, actor: "Alice@Example.com"},
	{group: "the job's actor (any spelling), an approver", id: "alice@example.com", roles: []string{"finance-approver"}, actor: "ALICE@EXAMPLE.COM"},
	{group: "the job's actor (any spelling), an approver", id: "alice@example.com", roles: []string{"finance-approver"}, actor: "ａｌｉｃｅ@example.com"},
	// An eligible approver's token over the submitter's mTLS connection: a stolen token.
	{group: "a certificate and a token that disagree", id: "alice@example.com", roles: []string{"finance-approver"}, cert: "svc-orders"},
}

// Outcomes.
const (
	ok       = "ok"                // the call succeeds
	sees     = "sees it"           // the listing holds the job
	empty    = "empty"             // the listing does not hold it
	unauth   = "UNAUTHENTICATED"   // no credentials
	denied   = "PERMISSION_DENIED" // the RPC's roles exclude the caller; it names no job, nothing is recorded
	notFound = "NOT_FOUND"         // no standing: the answer for a missing job; the attempt is on the caller's chain
	self     = "SELF_APPROVAL"     // PERMISSION_DENIED, recorded on the job's chain
	noRole   = "ROLE_NOT_ALLOWED"  // PERMISSION_DENIED for a caller with standing, recorded on the job's chain
	inUse    = "ALREADY_EXISTS"    // Decide of another submitter's job id; nothing recorded on the job's chain
)

// fixture is the state of the fresh job a cell is tried on.
type fixture int

const (
	noJob     fixture = iota
	pending           // decided, waiting for approval
	approved          // approved by the admin approver
	published         // approved and published (attempt 1)
)

// matrixRow is one RPC: the fixture it needs, how to call it, and the outcome per caller
// in matrixCallers order.
type matrixRow struct {
	rpc  string
	job  fixture
	call func(ctx context.Context, c *matrixConn, j *matrixJobRef) error
	want []string
}

func row(rpc string, job fixture, call func(ctx context.Context, c *matrixConn, j *matrixJobRef) error, want ...string) matrixRow {
	return matrixRow{rpc: rpc, job: job, call: call, want: want}
}

// Columns: none, submitter, other submitter, dispatch, audit, policy-admin, operator,
// a role nothing names, admin approver, approver, other topic, actor ×4, a certificate
// and a token that disagree.
var authzMatrix = []matrixRow{
	row("Decide", pending, func(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
		_, err := c.dec.Decide(ctx, &agatev1.DecideRequest{Job: matrixJob(j.id, j.actor)})
		return err
	}, unauth, ok, inUse, denied, denied, denied, denied, denied, denied, denied, denied, denied, denied, denied, denied, unauth),
	row("Approve", pending, func(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
		_, err := c.dec.Approve(ctx, &agatev1.ApproveRequest{JobId: j.id, JobHash: j.hash})
		return err
	}, unauth, self, notFound, notFound, notFound, notFound, notFound, notFound, ok, ok, notFound, self, self, self, self, unauth),
	row("Reject", pending, func(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
		_, err := c.dec.Reject(ctx, &agatev1.RejectRequest{JobId: j.id, JobHash: j.hash, Reason: "no"})
		return err
	}, unauth, noRole, notFound, notFound, notFound, notFound, notFound, notFound, ok, ok, notFound, ok, ok, ok, ok, unauth),
	row("Cancel", pending, func(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
		_, err := c.dec.Cancel(ctx, &agatev1.CancelRequest{JobId: j.id, Reason: "withdrawn"})
		return err
	}, unauth, ok, notFound, notFound, notFound, notFound, ok, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, unauth),
	row("GetJob", pending, func(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
		_, err := c.dec.GetJob(ctx, &agatev1.GetJobRequest{JobId: j.id})
		return err
	}, unauth, ok, notFound, notFound, ok, notFound, ok, notFound, ok, ok, notFound, ok, ok, ok, ok, unauth),
	row("ListPendingApprovals", pending, listsPending,
		unauth, empty, empty, empty, sees, empty, empty, empty, sees, sees, empty, sees, sees, sees, sees, unauth),
	row("WatchJobs (a pending job)", pending, watchSees,
		unauth, sees, empty, empty, sees, empty, sees, empty, sees, sees, empty, sees, sees, sees, sees, unauth),
	row("WatchJobs (an approved job)", approved, watchSees,
		unauth, sees, empty, sees, sees, empty, sees, empty, sees, sees, empty, sees, sees, sees, sees, unauth),
	row("Publish", approved, func(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
		_, err := c.dec.Publish(ctx, &agatev1.PublishRequest{JobId: j.id, JobHash: j.hash})
		return err
	}, unauth, notFound, notFound, ok, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, unauth),
	row("Replay", published, func(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
		_, err := c.dec.Replay(ctx, &agatev1.ReplayRequest{JobId: j.id, JobHash: j.hash, ExpectedAttempt: 1,
			ReasonCode: jobs.ReplayWorkerOutage, Reason: "worker lost"})
		return err
	}, unauth, notFound, notFound, ok, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, unauth),
	row("ReportOutcome", published, func(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
		_, err := c.dec.ReportOutcome(ctx, &agatev1.ReportOutcomeRequest{JobId: j.id, Attempt: 1, Outcome: agatev1.Outcome_OUTCOME_SUCCEEDED})
		return err
	}, unauth, notFound, notFound, ok, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, notFound, unauth),
	row("ListReplayable", noJob, func(ctx context.Context, c *matrixConn, _ *matrixJobRef) error {
		_, err := c.dec.ListReplayable(ctx, &agatev1.ListReplayableRequest{})
		return err
	}, unauth, denied, denied, ok, denied, denied, denied, denied, denied, denied, denied, denied, denied, denied, denied, unauth),
	row("PutPolicy, ActivateSnapshot, ValidatePolicy", noJob, func(ctx context.Context, c *matrixConn, _ *matrixJobRef) error {
		if _, err := c.pol.ValidatePolicy(ctx, &agatev1.ValidatePolicyRequest{Source: matrixPolicy}); err != nil {
			return err
		}
		put, err := c.pol.PutPolicy(ctx, &agatev1.PutPolicyRequest{Source: matrixPolicy})
		if err != nil {
			return err
		}
		_, err = c.pol.ActivateSnapshot(ctx, &agatev1.ActivateSnapshotRequest{SnapshotId: put.GetSnapshot().GetSnapshotId(), DryRun: true})
		return err
	}, unauth, denied, denied, denied, denied, ok, denied, denied, denied, denied, denied, denied, denied, denied, denied, unauth),
	row("GetSnapshot, ListSnapshots", noJob, func(ctx context.Context, c *matrixConn, _ *matrixJobRef) error {
		list, err := c.pol.ListSnapshots(ctx, &agatev1.ListSnapshotsRequest{})
		if err != nil {
			return err
		}
		_, err = c.pol.GetSnapshot(ctx, &agatev1.GetSnapshotRequest{SnapshotId: list.GetSnapshots()[0].GetSnapshotId()})
		return err
	}, unauth, denied, denied, denied, ok, ok, denied, denied, denied, denied, denied, denied, denied, denied, denied, unauth),
	row("Evaluate", noJob, func(ctx context.Context, c *matrixConn, _ *matrixJobRef) error {
		_, err := c.pol.Evaluate(ctx, &agatev1.EvaluateRequest{Job: matrixJob("", "agent-7")})
		return err
	}, unauth, ok, ok, denied, denied, ok, denied, denied, denied, denied, denied, denied, denied, denied, denied, unauth),
	row("EvidenceService (every RPC)", pending, func(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
		_, err := c.ev.GetEvidence(ctx, &agatev1.GetEvidenceRequest{JobId: j.id})
		if err == nil {
			_, err = c.ev.Stats(ctx, &agatev1.StatsRequest{})
		}
		return err
	}, unauth, denied, denied, denied, ok, denied, denied, denied, denied, denied, denied, denied, denied, denied, denied, unauth),
}

// listsPending answers sees or empty (as an error, to share the cells' shape): whether
// the fixture job is in the caller's approval queue.
func listsPending(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
	req := &agatev1.ListPendingApprovalsRequest{PageSize: 500}
	for {
		page, err := c.dec.ListPendingApprovals(ctx, req)
		if err != nil {
			return err
		}
		for _, p := range page.GetPendingApprovals() {
			if p.GetJob().GetJob().GetJobId() == j.id {
				return errSees
			}
		}
		if page.GetNextPageToken() == "" {
			return errEmpty
		}
		req.PageToken = page.GetNextPageToken()
	}
}

// watchSees answers sees or empty: whether a watch stream opened after the fixture job's
// transitions tells the caller about it. The stream's first poll reads them (an empty
// cursor starts the settle time in the past), so a heartbeat arriving without them
// means the caller sees nothing of the job.
func watchSees(ctx context.Context, c *matrixConn, j *matrixJobRef) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := c.dec.WatchJobs(ctx, &agatev1.WatchJobsRequest{})
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		switch {
		case err != nil:
			return err
		case msg.GetChange() == nil:
			return errEmpty
		case msg.GetChange().GetJob().GetJob().GetJobId() == j.id:
			return errSees
		}
	}
}

var errSees, errEmpty = errors.New(sees), errors.New(empty)

const matrixPolicy = `version: v1
labels:
  env: {type: string, enum: [production, dev], required: true}
rules:
  - id: finance-prod
    when: {topic: finance.payment.execute, env: production}
    decision: require_human
    reason: production payments need a human
    approval: {roles: [admin, finance-approver], quorum: 1, ttl: 24h}
  - id: treasury
    when: {topic: finance.transfer.large}
    decision: require_human
    approval: {roles: [treasurer]}
`

func matrixJob(id, actor string) *agatev1.Job {
	return &agatev1.Job{JobId: id, Topic: "finance.payment.execute", Actor: actor,
		Labels:  map[string]*structpb.Value{"env": structpb.NewStringValue("production")},
		Payload: []byte(`{"amount":1250.5,"invoice":"INV-1001"}`)}
}

// matrixConn is one caller's clients, with its credentials in every call's context.
type matrixConn struct {
	dec agatev1.DecisionServiceClient
	pol agatev1.PolicyServiceClient
	ev  agatev1.EvidenceServiceClient
}

// matrixServer is a real gRPC server over a real listener, with the matrix's principals.
type matrixServer struct {
	conn      *grpc.ClientConn            // TLS without a client certificate
	certConns map[string]*grpc.ClientConn // by the principal whose certificate it presents
	as        func(id string) context.Context
}

// matrixCertURI is the URI SAN of a principal's client certificate.
func matrixCertURI(id string) string { return "spiffe://matrix.test/" + url.PathEscape(id) }

func startMatrixServer(t *testing.T, st store.Store) *matrixServer {
	t.Helper()
	ctx := context.Background()
	cache, err := snapshots.NewCache(4)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache,
		Outsiders: jobs.OutsiderLimit{Burst: 1 << 20}, Watch: jobs.WatchConfig{Poll: 5 * time.Millisecond, Heartbeat: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	if _, err := svc.PutPolicy(ctx, jobs.Principal{ID: "policy-owner@example.com", Roles: []string{"policy-admin"}},
		[]byte(matrixPolicy), true); err != nil {
		t.Fatal(err)
	}
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	au, err := audit.New(audit.Config{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var tokens strings.Builder
	tokens.WriteString("principals:\n")
	seen := map[string]bool{}
	for _, c := range matrixCallers {
		if c.id == "" || seen[c.id] {
			continue
		}
		seen[c.id] = true
		// A principal without roles is possible wherever identities come from; the
		// lifecycle must fail closed for it whatever the tokens file accepts.
		fmt.Fprintf(&tokens, "  - id: %q\n    roles: [%s]\n    tokens_sha256: [%q]\n    certificates: [%q]\n",
			c.id, strings.Join(c.roles, ", "), sha("tok-"+c.id), "uri:"+matrixCertURI(c.id))
	}
	ca := newTestCA(t)
	srv, err := New(Config{Jobs: svc, Audit: au, Store: st, TLS: ca.serverTLS(t, false),
		Auth: NewAuthenticator(must(LoadIdentities(writeTokens(t, tokens.String())))(t))})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	dialWith := func(cert *tls.Certificate) *grpc.ClientConn {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(ca.clientCreds(cert)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	certConns := map[string]*grpc.ClientConn{}
	for _, c := range matrixCallers {
		if c.cert != "" && certConns[c.cert] == nil {
			cert := ca.issue(t, false, matrixCertURI(c.cert))
			certConns[c.cert] = dialWith(&cert)
		}
	}
	return &matrixServer{conn: dialWith(nil), certConns: certConns, as: func(id string) context.Context {
		if id == "" {
			return t.Context()
		}
		return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer tok-"+id)
	}}
}

func (m *matrixServer) client() *matrixConn { return connOf(m.conn) }

// clientOf is the connection a caller calls on: with its certificate, when it has one.
func (m *matrixServer) clientOf(c matrixCaller) *matrixConn {
	if c.cert != "" {
		return connOf(m.certConns[c.cert])
	}
	return m.client()
}

func connOf(conn *grpc.ClientConn) *matrixConn {
	return &matrixConn{dec: agatev1.NewDecisionServiceClient(conn), pol: agatev1.NewPolicyServiceClient(conn),
		ev: agatev1.NewEvidenceServiceClient(conn)}
}

// outcomeOf names the outcome err stands for.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return ok
	case errors.Is(err, errSees):
		return sees
	case errors.Is(err, errEmpty):
		return empty
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unauthenticated:
		return unauth
	case codes.NotFound:
		return notFound
	case codes.AlreadyExists:
		return inUse
	case codes.PermissionDenied:
		switch reason(st) {
		case jobs.ReasonSelfApproval:
			return self
		case jobs.ReasonRoleNotAllowed:
			if strings.Contains(st.Message(), "approve this job") {
				return noRole
			}
			return denied
		}
	}
	return st.Code().String() + " " + reason(st) + ": " + st.Message()
}

func reason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// TestAuthorizationMatrix runs every RPC as every kind of caller against a fresh job in
// the state the RPC needs, over gRPC, on every backend. For a caller refused without
// standing it also checks that the answer is the one a missing job gets, that the job's
// status, evidence chain and the Stats counters did not change, and that the attempt is
// on the caller's own chain (and counted as a NO_STANDING refusal).
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	for _, r := range authzMatrix {
		if len(r.want) != len(matrixCallers) {
			t.Fatalf("%s: %d outcomes for %d callers", r.rpc, len(r.want), len(matrixCallers))
		}
	}
	storetest.ForEachBackend(t, func(t *testing.T, st store.Store) {
		t.Parallel()
		m := startMatrixServer(t, st)
		c := m.client()
		for ri, r := range authzMatrix {
			for ci, caller := range matrixCallers {
				name := fmt.Sprintf("%s as %s (%s)", r.rpc, caller.group, cmpOr(caller.actor, caller.id))
				j := m.fixture(t, c, r.job, fmt.Sprintf("m-%d-%d", ri, ci), cmpOr(caller.actor, "agent-7"))
				var before jobState
				if j != nil {
					before = m.state(t, c, j.id, caller.id)
				}
				err := r.call(m.as(caller.id), m.clientOf(caller), j)
				got := outcomeOf(err)
				if got != r.want[ci] {
					t.Errorf("%s: %s, want %s", name, got, r.want[ci])
					continue
				}
				if j == nil {
					continue
				}
				after := m.state(t, c, j.id, caller.id)
				switch got {
				case notFound:
					// The answer a job that does not exist gets, word for word.
					missing := r.call(m.as(caller.id), c, &matrixJobRef{id: "m-missing", hash: j.hash, actor: j.actor})
					if a, b := status.Convert(err), status.Convert(missing); a.Code() != b.Code() || reason(a) != reason(b) ||
						a.Message() != strings.ReplaceAll(b.Message(), "m-missing", j.id) {
						t.Errorf("%s: %v, but for a missing job %v", name, err, missing)
					}
					after = m.state(t, c, j.id, caller.id)
					if after.status != before.status || !after.chain.equal(before.chain) {
						t.Errorf("%s: the job changed: %+v → %+v", name, before, after)
					}
					wantStats := maps.Clone(before.stats)
					wantStats["refusal:NO_STANDING"] += 2 // the call, and the one on the missing job
					if !maps.Equal(after.stats, wantStats) {
						t.Errorf("%s: Stats %v → %v", name, before.stats, after.stats)
					}
					if after.mine.n != before.mine.n+2 || after.mine.last.GetConflict() != jobs.EvidenceNoStanding ||
						after.mine.last.GetPrincipal() != caller.id {
						t.Errorf("%s: the caller's chain: %d → %d events, last %v", name, before.mine.n, after.mine.n, after.mine.last)
						continue
					}
					prev := after.mine.events[len(after.mine.events)-2]
					if !strings.Contains(prev.GetReason(), j.id) || !strings.Contains(prev.GetReason(), strings.Fields(r.rpc)[0]) {
						t.Errorf("%s: the caller's chain does not name the attempt: %q", name, prev.GetReason())
					}
				case self, noRole:
					// A refusal of a caller with standing is the job's evidence.
					if after.status != before.status || after.chain.n != before.chain.n+1 ||
						after.chain.last.GetConflict() != got || after.chain.last.GetPrincipal() != caller.id {
						t.Errorf("%s: job chain %+v → %+v", name, before.chain, after.chain)
					}
				case inUse:
					// Nothing on the job's chain; the attempt on the caller's.
					wantStats := maps.Clone(before.stats)
					wantStats["refusal:"+jobs.ReasonJobIDInUse]++
					if after.status != before.status || !after.chain.equal(before.chain) || !maps.Equal(after.stats, wantStats) ||
						after.mine.n != before.mine.n+1 || after.mine.last.GetConflict() != jobs.ReasonJobIDInUse {
						t.Errorf("%s: %+v → %+v", name, before, after)
					}
				case denied, unauth, empty, sees:
					if !after.chain.equal(before.chain) || !maps.Equal(after.stats, before.stats) || after.mine.n != before.mine.n {
						t.Errorf("%s: something was written: %+v → %+v", name, before, after)
					}
				}
			}
		}
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// matrixJobRef names a cell's job.
type matrixJobRef struct{ id, hash, actor string }

// fixture decides a fresh job (as the submitter) and brings it to state f.
func (m *matrixServer) fixture(t *testing.T, c *matrixConn, f fixture, id, actor string) *matrixJobRef {
	t.Helper()
	if f == noJob {
		return nil
	}
	d, err := c.dec.Decide(m.as("svc-orders"), &agatev1.DecideRequest{Job: matrixJob(id, actor)})
	if err != nil {
		t.Fatalf("fixture %s: Decide: %v", id, err)
	}
	if f >= approved {
		if _, err := c.dec.Approve(m.as("bob@example.com"), &agatev1.ApproveRequest{JobId: id, JobHash: d.JobHash}); err != nil {
			t.Fatalf("fixture %s: Approve: %v", id, err)
		}
	}
	if f >= published {
		if _, err := c.dec.Publish(m.as("dispatcher"), &agatev1.PublishRequest{JobId: id, JobHash: d.JobHash}); err != nil {
			t.Fatalf("fixture %s: Publish: %v", id, err)
		}
	}
	return &matrixJobRef{id: id, hash: d.JobHash, actor: actor}
}

// chainState is a chain's length and last event.
type chainState struct {
	n      int
	last   *agatev1.EvidenceEvent
	events []*agatev1.EvidenceEvent
}

func (a chainState) equal(b chainState) bool {
	return a.n == b.n && a.last.GetHash() == b.last.GetHash()
}

// jobState is what a refused call must not change: the job's status and chain, the
// Stats counters; and the caller's own chain.
type jobState struct {
	status agatev1.JobStatus
	chain  chainState
	stats  map[string]int64
	mine   chainState
}

func (m *matrixServer) state(t *testing.T, c *matrixConn, jobID, caller string) jobState {
	t.Helper()
	auditor := m.as("auditor@example.com")
	var s jobState
	ev, err := c.ev.GetEvidence(auditor, &agatev1.GetEvidenceRequest{JobId: jobID})
	if err != nil {
		t.Fatalf("GetEvidence(%s): %v", jobID, err)
	}
	s.status = agatev1.JobStatus(agatev1.JobStatus_value["JOB_STATUS_"+strings.ToUpper(ev.GetSummary().GetStatus())])
	s.chain = chainOf(ev.GetEvents())
	st, err := c.ev.Stats(auditor, &agatev1.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	s.stats = flatStats(st)
	if caller != "" {
		key, err := identity.Key(caller)
		if err != nil {
			t.Fatal(err)
		}
		mine, err := c.ev.GetEvidence(auditor, &agatev1.GetEvidenceRequest{JobId: evidence.PrincipalChain(key)})
		if status.Code(err) != codes.NotFound && err != nil {
			t.Fatalf("GetEvidence(the caller's chain): %v", err)
		}
		s.mine = chainOf(mine.GetEvents())
	}
	return s
}

func chainOf(evs []*agatev1.EvidenceEvent) chainState {
	s := chainState{n: len(evs), events: evs}
	if len(evs) > 0 {
		s.last = evs[len(evs)-1]
	}
	return s
}

// flatStats flattens the Stats counters into one map, so two readings compare at once.
func flatStats(st *agatev1.StatsResponse) map[string]int64 {
	m := map[string]int64{"already_approved": st.GetAlreadyApproved(), "already_rejected": st.GetAlreadyRejected(),
		"lock_busy": st.GetLockBusyConflicts(), "snapshot_drift": st.GetSnapshotDriftConflicts(), "job_hash_mismatch": st.GetJobHashMismatchConflicts(),
		"replayed_jobs": st.GetReplayedJobs(), "replays": st.GetReplays()}
	for prefix, part := range map[string]map[string]int64{"status:": st.GetStatuses(), "decision:": st.GetDecisions(),
		"refusal:": st.GetRefusalsByReason(), "replay:": st.GetReplaysByReason()} {
		for k, v := range part {
			m[prefix+k] = v
		}
	}
	return m
}

// readmeTable renders the matrix as the README's who-may-do-what table: one column per
// caller group, whose members must agree.
func readmeTable() (string, error) {
	var groups []string
	for _, c := range matrixCallers {
		if !slices.Contains(groups, c.group) {
			groups = append(groups, c.group)
		}
	}
	symbol := map[string]string{ok: "✓", sees: "✓ sees it", empty: "sees nothing", unauth: "–", denied: "denied",
		notFound: "not found", self: "SELF_APPROVAL", noRole: "ROLE_NOT_ALLOWED", inUse: "ALREADY_EXISTS"}
	var b strings.Builder
	b.WriteString("| RPC | " + strings.Join(groups, " | ") + " |\n|---" + strings.Repeat("|---", len(groups)) + "|\n")
	for _, r := range authzMatrix {
		b.WriteString("| " + r.rpc)
		for _, g := range groups {
			cell := ""
			for ci, c := range matrixCallers {
				if c.group != g {
					continue
				}
				if cell != "" && cell != r.want[ci] {
					return "", fmt.Errorf("%s: callers of group %q differ: %s, %s", r.rpc, g, cell, r.want[ci])
				}
				cell = r.want[ci]
			}
			b.WriteString(" | " + symbol[cell])
		}
		b.WriteString(" |\n")
	}
	return b.String(), nil
}

const (
	readmeStart = "<!-- who-may-do-what: generated from server/authz_matrix_test.go; go test ./server -run TestReadmeWhoMayDoWhat -update-readme -->\n"
	readmeEnd   = "<!-- /who-may-do-what -->"
)

// TestReadmeWhoMayDoWhat holds the README's table to the matrix, so the two cannot drift.
func TestReadmeWhoMayDoWhat(t *testing.T) {
	t.Parallel()
	table, err := readmeTable()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	i, j := strings.Index(readme, readmeStart), strings.Index(readme, readmeEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the markers %q … %q", strings.TrimSpace(readmeStart), readmeEnd)
	}
	body := readme[i+len(readmeStart) : j]
	if body == table {
		return
	}
	if *updateReadme {
		if err := os.WriteFile("../README.md", []byte(readme[:i+len(readmeStart)]+table+readme[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's who-may-do-what table differs from the matrix; run with -update-readme. Want:\n%s", table)
}
