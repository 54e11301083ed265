package authzen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agate-pdp/agate/authzen"
	"github.com/agate-pdp/agate/evidence"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/sqlite"
)

// flow is one ARAP conformance flow of testdata/arap/flows: steps run in order against
// one server, each an HTTP request (a testCase with a token and captures) or an act of
// Agate's own (approve, reject, a policy change, the clock moving on, a count of the
// job's evidence). "{{name}}" in a step is a value an earlier step captured; a whole
// JSON string "{{name}}" is replaced by the captured JSON value itself.
type flow struct {
	Name   string            `json:"name"`
	Source string            `json:"source"`
	Steps  []json.RawMessage `json:"steps"`
}

type flowStep struct {
	testCase
	Token   string            `json:"token"`   // default tok-pep
	Capture map[string]string `json:"capture"` // name → dotted path into the answer
	Absent  []string          `json:"absent"`  // dotted paths the answer must not have
	// Agate's own acts instead of a request:
	Approve   *agateAct   `json:"approve"`
	Reject    *agateAct   `json:"reject"`
	PutPolicy string      `json:"put_policy"` // a policy file to activate
	Advance   string      `json:"advance"`    // move the clock on (a Go duration)
	Events    *eventsWant `json:"events"`
}

type agateAct struct {
	Task string `json:"task"`
	As   string `json:"as"` // a principal of testdata/tokens.yaml
	Hash string `json:"hash"`
}

type eventsWant struct {
	Task  string         `json:"task"`
	Kinds map[string]int `json:"kinds"` // how many events of each kind
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// arapServer is the handler and a job service on SQLite sharing a test clock.
type arapServer struct {
	srv   *httptest.Server
	svc   *jobs.Service
	st    store.Store
	clock *clock
	ids   map[string]jobs.Principal
}

func newARAPServer(t *testing.T) *arapServer {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "agate.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cache, err := snapshots.NewCache(4)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 4, 30, 20, 15, 0, 0, time.UTC)}
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	a := &arapServer{svc: svc, st: st, clock: clk, ids: map[string]jobs.Principal{}}
	a.putPolicy(t, "testdata/policy.yaml")
	h, err := authzen.New(authzen.Config{Auth: authenticator(t), Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Attach(svc, testSecret); err != nil {
		t.Fatal(err)
	}
	a.srv = httptest.NewServer(h)
	t.Cleanup(a.srv.Close)
	for _, p := range []jobs.Principal{
		{ID: "approver", Roles: []string{"admin"}},
		{ID: "pep-arap", Roles: []string{"decide", "dispatch"}},
		{ID: "other-pep", Roles: []string{"decide", "dispatch"}},
	} {
		a.ids[p.ID] = p
	}
	return a
}

func (a *arapServer) putPolicy(t *testing.T, file string) {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.PutPolicy(context.Background(), jobs.Principal{ID: "policy-owner", Roles: []string{server.RolePolicyAdmin}}, src, true); err != nil {
		t.Fatal(err)
	}
}

// TestARAPFlows runs every flow of testdata/arap/flows.
func TestARAPFlows(t *testing.T) {
	files, err := filepath.Glob("testdata/arap/flows/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no flows: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var fl flow
			d := json.NewDecoder(bytes.NewReader(raw))
			d.DisallowUnknownFields()
			if err := d.Decode(&fl); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			runFlow(t, newARAPServer(t), fl)
		})
	}
}

var placeholder = regexp.MustCompile(`\{\{([a-z_0-9]+)\}\}`)

// expand replaces placeholders in a step's text with captured values.
func expand(t *testing.T, text string, vars map[string]any) string {
	t.Helper()
	for name, v := range vars {
		raw, _ := json.Marshal(v)
		text = strings.ReplaceAll(text, `"{{`+name+`}}"`, string(raw))
	}
	return placeholder.ReplaceAllStringFunc(text, func(m string) string {
		name := m[2 : len(m)-2]
		v, ok := vars[name]
		if !ok {
			if name == "base" {
				return m
			}
			t.Fatalf("%s: not captured", m)
		}
		if s, ok := v.(string); ok {
			return strings.Trim(strconv.Quote(s), `"`)
		}
		raw, _ := json.Marshal(v)
		return strings.Trim(strconv.Quote(string(raw)), `"`)
	})
}

// at follows a dotted path ("context.access_request.expires_at", "evaluations.0").
func at(v any, path string) (any, bool) {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			if v = x[k]; v == nil {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func runFlow(t *testing.T, a *arapServer, fl flow) {
	vars := map[string]any{}
	ctx := context.Background()
	for i, raw := range fl.Steps {
		var s flowStep
		d := json.NewDecoder(strings.NewReader(expand(t, string(raw), vars)))
		d.DisallowUnknownFields()
		if err := d.Decode(&s); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		label := fmt.Sprintf("step %d %s", i, s.Name)
		switch {
		case s.Approve != nil || s.Reject != nil:
			act := s.Approve
			if act == nil {
				act = s.Reject
			}
			p, ok := a.ids[act.As]
			if !ok {
				t.Fatalf("%s: no principal %q", label, act.As)
			}
			hash := act.Hash
			if hash == "" {
				v, err := a.svc.GetJob(ctx, jobs.Principal{ID: "auditor", Roles: []string{"audit"}}, act.Task)
				if err != nil {
					t.Fatalf("%s: %v", label, err)
				}
				hash = v.Job.Hash
			}
			var err error
			if s.Approve != nil {
				_, err = a.svc.Approve(ctx, p, jobs.ApproveRequest{JobID: act.Task, JobHash: hash, Reason: "looks right"})
			} else {
				_, err = a.svc.Reject(ctx, p, jobs.RejectRequest{JobID: act.Task, JobHash: hash, Reason: "no"})
			}
			if err != nil {
				t.Fatalf("%s: %v", label, err)
			}
		case s.PutPolicy != "":
			a.putPolicy(t, s.PutPolicy)
		case s.Advance != "":
			dur, err := time.ParseDuration(s.Advance)
			if err != nil {
				t.Fatal(err)
			}
			a.clock.advance(dur)
		case s.Events != nil:
			var events []evidence.Event
			err := a.st.Read(ctx, func(ctx context.Context, tx store.Tx) error {
				var err error
				events, err = tx.ListEvents(ctx, s.Events.Task)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, e := range events {
				got[string(e.Kind)]++
			}
			for k, n := range s.Events.Kinds {
				if got[k] != n {
					t.Errorf("%s: %d %s events, want %d (all: %v)", label, got[k], k, n, got)
				}
			}
			if probs := evidence.VerifyChain(events); len(probs) > 0 {
				t.Errorf("%s: the job's chain does not verify: %v", label, probs)
			}
		default:
			if s.Token == "" {
				s.Token = "tok-pep"
			}
			if s.Headers == nil {
				s.Headers = map[string]*string{}
			}
			if _, set := s.Headers["Authorization"]; !set {
				auth := "Bearer " + s.Token
				s.Headers["Authorization"] = &auth
			}
			s.Source = fl.Source + " — " + label
			got := doCase(t, a.srv.URL, s.testCase)
			for _, path := range s.Absent {
				if v, ok := at(got, path); ok {
					t.Errorf("%s: %s is %v, want it absent", label, path, v)
				}
			}
			for name, path := range s.Capture {
				v, ok := at(got, path)
				if !ok {
					t.Fatalf("%s: nothing at %s to capture as %s: %v", label, path, name, got)
				}
				vars[name] = v
			}
		}
		if t.Failed() {
			t.Fatalf("%s failed", label)
		}
	}
}

// doCase runs one request as runCase does, and returns its decoded answer.
func doCase(t *testing.T, base string, c testCase) any {
	t.Helper()
	var body io.Reader
	switch {
	case c.RawBody != nil:
		body = strings.NewReader(*c.RawBody)
	case len(c.Body) > 0 && string(c.Body) != "null":
		body = bytes.NewReader(c.Body)
	}
	path := strings.ReplaceAll(c.Path, "{{base}}", base)
	if !strings.HasPrefix(path, "http") {
		path = base + path
	}
	req, err := http.NewRequest(c.Method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, got := exchange(t, req, c.Headers)
	if resp.StatusCode != c.Status {
		t.Fatalf("%s\n%s %s: status %d, want %d; body %s", c.Source, c.Method, c.Path, resp.StatusCode, c.Status, got)
	}
	for k, v := range c.WantHeaders {
		if err := match(v, resp.Header.Get(k), k, base); err != nil {
			t.Errorf("%s\nheader %v", c.Source, err)
		}
	}
	var have any
	if len(bytes.TrimSpace(got)) > 0 {
		if err := json.Unmarshal(got, &have); err != nil {
			t.Fatalf("answer is not JSON: %v: %s", err, got)
		}
	}
	if len(c.Want) > 0 {
		var want any
		if err := json.Unmarshal(c.Want, &want); err != nil {
			t.Fatal(err)
		}
		if err := match(want, have, "$", base); err != nil {
			t.Errorf("%s\n%v\nanswer %s", c.Source, err, got)
		}
	}
	return have
}
