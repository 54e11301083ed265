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
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agate-pdp/agate/authzen"
	"github.com/agate-pdp/agate/jobs"
	"github.com/agate-pdp/agate/server"
	"github.com/agate-pdp/agate/snapshots"
	"github.com/agate-pdp/agate/store"
	"github.com/agate-pdp/agate/store/sqlite"
)

// testCase is one conformance case of testdata/cases: a request and what its answer
// must hold. want is matched as a subset: every member it names must be in the
// answer with that value (arrays element by element, with the same length); a string
// "~re:<regexp>" matches by regular expression; "{{base}}" is the server's URL.
type testCase struct {
	Name        string             `json:"name"`
	Source      string             `json:"source"`
	Method      string             `json:"method"`
	Path        string             `json:"path"`
	Headers     map[string]*string `json:"headers"` // over the defaults; null removes one
	Body        json.RawMessage    `json:"body"`
	RawBody     *string            `json:"raw_body"`
	Status      int                `json:"status"`
	Want        json.RawMessage    `json:"want"`
	WantHeaders map[string]string  `json:"want_headers"`
}

// backend is a job service on a fresh SQLite database with testdata/policy.yaml active.
func backend(t *testing.T) (*jobs.Service, store.Store) {
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
	svc, err := jobs.New(jobs.Config{Store: st, Tracker: snapshots.NewTracker(st, cache, nil), Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	src, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PutPolicy(ctx, jobs.Principal{ID: "policy-owner", Roles: []string{server.RolePolicyAdmin}}, src, true); err != nil {
		t.Fatal(err)
	}
	return svc, st
}

func authenticator(t *testing.T) *server.Authenticator {
	t.Helper()
	ids, err := server.LoadIdentities("testdata/tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return server.NewAuthenticator(ids)
}

// serve runs the handler over a real listener. With attach, the job service is
// attached first.
func serve(t *testing.T, tune func(*authzen.Config), attach bool) (*httptest.Server, *authzen.Handler, store.Store) {
	t.Helper()
	cfg := authzen.Config{Auth: authenticator(t)}
	if tune != nil {
		tune(&cfg)
	}
	h, err := authzen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var st store.Store
	if attach {
		var svc *jobs.Service
		svc, st = backend(t)
		if err := h.Attach(svc, testSecret); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, h, st
}

func loadCases(t *testing.T) []testCase {
	t.Helper()
	files, err := filepath.Glob("testdata/cases/*/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	var cases []testCase
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c testCase
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		c.Name = filepath.Base(filepath.Dir(f)) + "/" + c.Name
		cases = append(cases, c)
	}
	return cases
}

// TestConformance runs every case of testdata/cases against the handler over HTTP,
// backed by a real job service on SQLite, then checks that nothing was stored.
func TestConformance(t *testing.T) {
	srv, _, st := serve(t, nil, true)
	t.Run("cases", func(t *testing.T) {
		for _, c := range loadCases(t) {
			t.Run(c.Name, func(t *testing.T) {
				t.Parallel()
				runCase(t, srv.URL, c)
			})
		}
	})
	// An evaluation is a query: no job, whatever was asked.
	err := st.Read(context.Background(), func(ctx context.Context, tx store.Tx) error {
		js, err := tx.ListJobs(ctx, store.JobQuery{Limit: 10})
		if err == nil && len(js) > 0 {
			err = fmt.Errorf("evaluations stored %d jobs, first %q", len(js), js[0].ID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func runCase(t *testing.T, base string, c testCase) {
	t.Helper()
	var body io.Reader
	switch {
	case c.RawBody != nil:
		body = strings.NewReader(*c.RawBody)
	case len(c.Body) > 0 && string(c.Body) != "null":
		body = bytes.NewReader(c.Body)
	}
	req, err := http.NewRequest(c.Method, base+c.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok-decide")
	req.Header.Set("Content-Type", "application/json")
	resp, got := exchange(t, req, c.Headers)
	t.Logf("answer %d %s", resp.StatusCode, got)
	if resp.StatusCode != c.Status {
		t.Fatalf("%s\nstatus %d, want %d; body %s", c.Source, resp.StatusCode, c.Status, got)
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Errorf("no X-Request-ID in the answer")
	}
	for k, v := range c.WantHeaders {
		if err := match(v, resp.Header.Get(k), k, base); err != nil {
			t.Errorf("%s\nheader %v", c.Source, err)
		}
	}
	if len(c.Want) == 0 {
		return
	}
	var want, have any
	if err := json.Unmarshal(c.Want, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &have); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, got)
	}
	if err := match(want, have, "$", base); err != nil {
		t.Errorf("%s\n%v\nanswer %s", c.Source, err, got)
	}
}

// match reports how got falls short of want (see testCase).
func match(want, got any, at, base string) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %v, want an object", at, got)
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s: missing", at, k)
			}
			if err := match(w[k], gv, at+"."+k, base); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want %d items", at, got, len(w))
		}
		for i := range w {
			if err := match(w[i], g[i], fmt.Sprintf("%s[%d]", at, i), base); err != nil {
				return err
			}
		}
		return nil
	case string:
		w = strings.ReplaceAll(w, "{{base}}", base)
		if re, ok := strings.CutPrefix(w, "~re:"); ok {
			if s, isStr := got.(string); !isStr || !regexp.MustCompile(re).MatchString(s) {
				return fmt.Errorf("%s: got %v, want a match of %s", at, got, re)
			}
			return nil
		}
		want = w
	}
	if !reflect.DeepEqual(want, got) {
		return fmt.Errorf("%s: got %v, want %v", at, got, want)
	}
	return nil
}

// exchange sends req with headers set over its defaults (nil removes one) and returns
// the response with its whole body.
func exchange(t *testing.T, req *http.Request, headers map[string]*string) (*http.Response, []byte) {
	t.Helper()
	for k, v := range headers {
		if v == nil {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, *v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, got
}
