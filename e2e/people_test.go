package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// TestHumanLoop is the human side of the loop with the real binary, on both backends:
// a pending job reaches the approvers' webhook (verified with the Standard Webhooks
// reference library); an approver signed in through a local OIDC issuer approves it
// with the CLI, which sends the hash it fetched; the dispatcher's watch stream sees the
// job become ready, and the dispatcher publishes it; the webhook hears of each step.
func TestHumanLoop(t *testing.T) {
	t.Parallel()
	for _, backend := range notifyBackends() {
		t.Run(backend.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			iss := startOIDCIssuer(t)
			r := newWebhookReceiver(t, false)
			key := filepath.Join(t.TempDir(), "evidence.key")
			a := startAgate(t, backend.db(t), append(auditArgs(key), "--tokens", oidcTokensFile(t, iss.srv.URL),
				"--notifications", destinationsFile(t, r))...)

			// The dispatcher watches from before the decision.
			stream, err := a.decision().WatchJobs(as(ctx, tokDispatch), &agatev1.WatchJobsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var seen []*agatev1.JobChange
			go func() {
				for {
					m, err := stream.Recv()
					if err != nil {
						return
					}
					if c := m.GetChange(); c != nil {
						mu.Lock()
						seen = append(seen, c)
						mu.Unlock()
					}
				}
			}()

			const id = "loop-pay-1"
			d := decidePendingPayment(t, a, id)
			heard := func(kind string) bool {
				for _, h := range r.all() {
					if h.verified == nil && h.msg.Data["job_id"] == id && h.msg.Data["kind"] == kind {
						return true
					}
				}
				return false
			}
			waitUntil(t, 30*time.Second, "the pending approval's webhook", func() bool { return heard("pending_approval") })

			cli := exec.Command(agateBinary(t), "approvals", "approve", "--server", a.grpcAddr, "--plaintext",
				"--reason", "invoice matches the order", id)
			cli.Env = append(os.Environ(), "AGATE_TOKEN="+iss.token(t, "carol@example.com", "finance-approvers"))
			if out, err := cli.CombinedOutput(); err != nil {
				t.Fatalf("agate approvals approve: %v\n%s", err, out)
			}

			var ready *agatev1.JobChange
			waitUntil(t, 30*time.Second, "the dispatcher to see the job approved", func() bool {
				mu.Lock()
				defer mu.Unlock()
				for _, c := range seen {
					if c.GetJob().GetJob().GetJobId() == id && c.GetStatus() == agatev1.JobStatus_JOB_STATUS_APPROVED {
						ready = c
						return true
					}
				}
				return false
			})
			if ready.GetJob().GetJobHash() != d.GetJobHash() || ready.GetPrincipal() != "carol@example.com" {
				t.Fatalf("watched change %v, want carol@example.com's approval of hash %s", ready, d.GetJobHash())
			}
			pub, err := a.decision().Publish(as(ctx, tokDispatch), &agatev1.PublishRequest{JobId: id, JobHash: ready.GetJob().GetJobHash()})
			if err != nil || pub.GetJob().GetStatus() != agatev1.JobStatus_JOB_STATUS_APPROVED_AND_PUBLISHED {
				t.Fatalf("Publish = %v, %v", pub, err)
			}
			waitUntil(t, 30*time.Second, "the approved and published webhooks", func() bool {
				return heard("approved") && heard("published")
			})
		})
	}
}
