package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// job is a job the phases take through its lifecycle.
type job struct{ id, hash string }

// driver makes calls to one agate over one connection per client.
type driver struct {
	conns   []*grpc.ClientConn
	clients []agatev1.DecisionServiceClient
}

func newDriver(addr string, clients int) (*driver, error) {
	d := &driver{}
	for range clients {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			d.close()
			return nil, err
		}
		d.conns = append(d.conns, conn)
		d.clients = append(d.clients, agatev1.NewDecisionServiceClient(conn))
	}
	return d, nil
}

func (d *driver) close() {
	for _, c := range d.conns {
		c.Close()
	}
}

// each calls fn for i in [0, n) from every client at once and returns the first error.
func (d *driver) each(ctx context.Context, n int, fn func(ctx context.Context, c agatev1.DecisionServiceClient, i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, c := range d.clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, c, i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

func as(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// decide Decides n new jobs with random ids: allowed ones (env staging, the policy's
// default) or, with pending, jobs that need an approval; it returns them.
func (d *driver) decide(ctx context.Context, prefix string, n int, pending bool) ([]job, error) {
	env, want := "staging", agatev1.JobStatus_JOB_STATUS_ALLOWED
	if pending {
		env, want = "production", agatev1.JobStatus_JOB_STATUS_PENDING_APPROVAL
	}
	out := make([]job, n)
	err := d.each(ctx, n, func(ctx context.Context, c agatev1.DecisionServiceClient, i int) error {
		id := prefix + "-" + rand.Text()
		payload := fmt.Appendf(nil, `{"amount":1250.5,"currency":"EUR","invoice":%q}`, id)
		r, err := c.Decide(as(ctx, "dev-decide"), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: id,
			Topic: "finance.payment.execute", Actor: "agent-7", Payload: payload,
			Labels: map[string]*structpb.Value{"env": structpb.NewStringValue(env)}}})
		if err != nil {
			return fmt.Errorf("Decide %s: %w", id, err)
		}
		if r.GetStatus() != want {
			return fmt.Errorf("Decide %s: status %s, want %s", id, r.GetStatus(), want)
		}
		out[i] = job{id, r.GetJobHash()}
		return nil
	})
	return out, err
}

func (d *driver) approve(ctx context.Context, js []job) error {
	return d.each(ctx, len(js), func(ctx context.Context, c agatev1.DecisionServiceClient, i int) error {
		r, err := c.Approve(as(ctx, "dev-alice"), &agatev1.ApproveRequest{JobId: js[i].id, JobHash: js[i].hash, Reason: "measured"})
		if err != nil {
			return fmt.Errorf("Approve %s: %w", js[i].id, err)
		}
		if r.GetStatus() != agatev1.JobStatus_JOB_STATUS_APPROVED || r.GetAlreadyApproved() {
			return fmt.Errorf("Approve %s: status %s", js[i].id, r.GetStatus())
		}
		return nil
	})
}

func (d *driver) publish(ctx context.Context, js []job) error {
	return d.each(ctx, len(js), func(ctx context.Context, c agatev1.DecisionServiceClient, i int) error {
		r, err := c.Publish(as(ctx, "dev-dispatch"), &agatev1.PublishRequest{JobId: js[i].id, JobHash: js[i].hash})
		if err != nil {
			return fmt.Errorf("Publish %s: %w", js[i].id, err)
		}
		if st := r.GetJob().GetStatus(); st != agatev1.JobStatus_JOB_STATUS_APPROVED_AND_PUBLISHED || r.GetAlreadyPublished() {
			return fmt.Errorf("Publish %s: status %s", js[i].id, st)
		}
		return nil
	})
}

func (d *driver) outcome(ctx context.Context, js []job) error {
	return d.each(ctx, len(js), func(ctx context.Context, c agatev1.DecisionServiceClient, i int) error {
		_, err := c.ReportOutcome(as(ctx, "dev-dispatch"), &agatev1.ReportOutcomeRequest{JobId: js[i].id, Attempt: 1,
			Outcome: agatev1.Outcome_OUTCOME_SUCCEEDED, Detail: "ok"})
		if err != nil {
			return fmt.Errorf("ReportOutcome %s: %w", js[i].id, err)
		}
		return nil
	})
}
