package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// The paths a workload job takes, with their weights out of 100. The drift paths are
// decided under the first policy and finished under a second one.
var paths = []struct {
	name   string
	weight int
}{
	{"allow", 20}, {"deny", 10}, {"approve", 18}, {"reject", 10}, {"mismatch", 8}, {"replay", 10},
	{"self", 5}, {"drift-pending", 6}, {"drift-approved", 4}, {"allow-drift", 5}, {"cancel", 4},
}

// tally is what the test itself counts while it drives the workload: every event the
// lifecycle must have written, and every job's status after its last call.
type tally struct {
	mu              sync.Mutex
	events          map[string]int64 // by kind; conflicts and refusals also as "kind:CODE"
	decisions       map[string]int64
	status          map[string]string
	alreadyApproved int64
	alreadyRejected int64
	replaysByReason map[string]int64
	replayed        map[string]bool
}

func newTally() *tally {
	return &tally{events: map[string]int64{}, decisions: map[string]int64{}, status: map[string]string{},
		replaysByReason: map[string]int64{}, replayed: map[string]bool{}}
}

func (tl *tally) add(kind, code string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.events[kind]++
	if code != "" {
		tl.events[kind+":"+code]++
	}
}

func (tl *tally) update(fn func(tl *tally)) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	fn(tl)
}

// total is the number of events counted.
func (tl *tally) total() int64 {
	var n int64
	for k, v := range tl.events {
		if !strings.Contains(k, ":") {
			n += v
		}
	}
	return n
}

func lower(enum, prefix string) string { return strings.ToLower(strings.TrimPrefix(enum, prefix)) }

// wjob is one job of the workload. Only one worker handles it at a time.
type wjob struct {
	id, path string
	full     bool // takes every optional step of its path, so each path is covered once
	req      *agatev1.Job
	hash     string
}

// maybe reports whether j takes an optional step taken pct times in a hundred.
func maybe(rng *rand.Rand, j *wjob, pct int) bool { return rng.IntN(100) < pct || j.full }

// workload drives jobs down every path of the lifecycle through a set of replicas.
type workload struct {
	t     *testing.T
	rs    []*agate
	tl    *tally
	jobs  []*wjob
	phase int
}

// runWorkload decides n jobs (ids prefixed by prefix) on paths drawn from seed, spread
// over the replicas by a pool of workers; activates a second policy; then finishes the
// jobs that drift. It returns what it counted.
func runWorkload(t *testing.T, rs []*agate, n int, seed uint64, prefix string) *tally {
	t.Helper()
	t.Logf("workload: %d jobs, seed %d", n, seed)
	w := &workload{t: t, rs: rs, tl: newTally(), phase: 1}
	w.tl.add("policy_activation", "") // the --policy file, activated at the first start
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range n {
		j := &wjob{id: fmt.Sprintf("%s-%04d", prefix, i), path: pick(rng)}
		if i < len(paths) { // the first jobs walk each path in full
			j.path, j.full = paths[i].name, true
		}
		j.req = jobFor(t, j, rng)
		w.jobs = append(w.jobs, j)
	}
	w.each(seed, w.first)

	// A second policy that decides every job as the first does: what was decided or
	// approved under the first now drifts.
	ctx := ctxT(t)
	src := readFile(t, filepath.Join(root, "examples/policy.yaml")) + "\n# audited\n"
	put, err := rs[0].policy().PutPolicy(as(ctx, tokPolicy), &agatev1.PutPolicyRequest{Source: src, Activate: true})
	if err != nil || !put.Activated {
		t.Fatalf("PutPolicy = %v, %v", put, err)
	}
	w.tl.add("policy_activation", "")
	for _, r := range rs {
		waitFor(t, "every replica to follow the new policy", 10*time.Second, func() bool {
			l, err := r.policy().ListSnapshots(as(ctx, tokAudit), &agatev1.ListSnapshotsRequest{})
			return err == nil && l.ActiveSnapshotId == put.Snapshot.SnapshotId
		})
	}
	w.phase = 2
	w.each(seed+1, w.second)
	return w.tl
}

func pick(rng *rand.Rand) string {
	n := rng.IntN(100)
	for _, p := range paths {
		if n < p.weight {
			return p.name
		}
		n -= p.weight
	}
	return paths[0].name
}

func jobFor(t *testing.T, j *wjob, rng *rand.Rand) *agatev1.Job {
	actor, topic, lb := "agent-7", "finance.payment.execute", map[string]any{"env": "production"}
	switch j.path {
	case "allow", "allow-drift":
		topic, lb = "ops.report.generate", map[string]any{"env": "dev"}
	case "deny":
		topic, lb = "customer.data.export", map[string]any{"env": "production", "destination": "external"}
	case "self":
		actor = "alice@example.com"
	}
	return &agatev1.Job{JobId: j.id, Topic: topic, Actor: actor, Labels: labels(t, lb),
		Payload: fmt.Appendf(nil, `{"amount":%d,"invoice":"INV-%s"}`, rng.IntN(100000), j.id)}
}

// each runs fn for every job on a pool of workers.
func (w *workload) each(seed uint64, fn func(ctx context.Context, rng *rand.Rand, j *wjob)) {
	const workers = 8
	queue := make(chan *wjob)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i)+100))
			for j := range queue {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				fn(ctx, rng, j)
				cancel()
			}
		})
	}
	for _, j := range w.jobs {
		if w.t.Failed() {
			break
		}
		queue <- j
	}
	close(queue)
	wg.Wait()
	if w.t.Failed() {
		w.t.FailNow()
	}
}

// replica picks the replica for the next call.
func (w *workload) replica(rng *rand.Rand) agatev1.DecisionServiceClient {
	return w.rs[rng.IntN(len(w.rs))].decision()
}

// call runs fn as a client would: a LOCK_BUSY answer, which the server records as a
// conflict event, is retried. It reports whether fn answered as wanted: success for
// codes.OK, else that code with that reason; any other answer fails the test.
func (w *workload) call(j *wjob, want codes.Code, reason string, fn func() error) bool {
	err, busy := retryBusy(fn)
	for range busy {
		w.tl.add("conflict", "LOCK_BUSY")
	}
	if want == codes.OK && err == nil || want != codes.OK && status.Code(err) == want && hasReason(err, reason) {
		return true
	}
	w.t.Errorf("%s (%s, phase %d): err = %v, want %v %s", j.id, j.path, w.phase, err, want, reason)
	return false
}

func hasReason(err error, reason string) bool {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason == reason
		}
	}
	return false
}
