package authzen_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agate-pdp/agate/authzen"
)

const allowBody = `{"subject":{"type":"user","id":"alice"},"action":{"name":"read"},"resource":{"type":"record","id":"record-1"}}`

// post sends body to path with the decide token unless headers say otherwise, and
// returns the status and the decoded answer.
func post(t *testing.T, base, path string, body io.Reader, headers http.Header) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok-decide")
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range headers {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, out
}

// The body limit is gRPC's request limit, 4 MiB: one byte more is 413, before any of
// it is decoded.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	srv, _, _ := serve(t, nil, true)
	pad := strings.Repeat(" ", 4<<20-len(allowBody))
	code, _, out := post(t, srv.URL, authzen.EvaluationPath, strings.NewReader(allowBody+pad), nil)
	if code != http.StatusOK || out["decision"] != true {
		t.Fatalf("a body of exactly 4 MiB: %d %v", code, out)
	}
	code, h, out := post(t, srv.URL, authzen.EvaluationPath, strings.NewReader(allowBody+pad+" "), nil)
	if code != http.StatusRequestEntityTooLarge || out["field"] != "body" || out["reason"] != "INVALID_FIELD" ||
		h.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("4 MiB + 1: %d %v", code, out)
	}
}

// Go's JSON decoder would turn invalid UTF-8 into U+FFFD, so two different byte strings
// would be one actor: it is refused instead, as gRPC refuses it.
func TestInvalidUTF8(t *testing.T) {
	t.Parallel()
	srv, _, _ := serve(t, nil, true)
	body := `{"subject":{"type":"user","id":"al` + "\xff" + `ice"},"action":{"name":"read"},"resource":{"type":"record","id":"record-1"}}`
	code, _, out := post(t, srv.URL, authzen.EvaluationPath, strings.NewReader(body), nil)
	if code != http.StatusBadRequest || out["field"] != "body" {
		t.Fatalf("%d %v", code, out)
	}
}

// Two Authorization fields are refused, as two authorization metadata values are over
// gRPC: a proxy that adds its own must not let the caller's win, or the other way round.
func TestTwoAuthorizationHeaders(t *testing.T) {
	t.Parallel()
	srv, _, _ := serve(t, nil, true)
	for _, vals := range [][]string{{"Bearer tok-decide", "Bearer tok-decide"}, {"Bearer tok-dispatch", "Bearer tok-decide"}} {
		code, h, out := post(t, srv.URL, authzen.EvaluationPath, strings.NewReader(allowBody), http.Header{"Authorization": vals})
		if code != http.StatusUnauthorized || out["reason"] != "UNAUTHENTICATED" || h.Get("WWW-Authenticate") == "" {
			t.Fatalf("%v: %d %v", vals, code, out)
		}
	}
}

// Before the job service and the deployment's secret are attached (the database is
// still being reached), every endpoint but the metadata answers 503, the access
// request endpoints included: without the secret no task id or evaluation id can be
// made or checked. A secret too short to key a MAC is refused.
func TestUnavailableUntilAttached(t *testing.T) {
	t.Parallel()
	srv, h, _ := serve(t, nil, false)
	for _, path := range []string{authzen.EvaluationPath, authzen.EvaluationsPath, authzen.RequestsPath,
		authzen.RequestsPath + "/arq_x/cancel"} {
		code, hdr, out := post(t, srv.URL, path, strings.NewReader(allowBody), nil)
		if code != http.StatusServiceUnavailable || hdr.Get("X-Request-ID") == "" {
			t.Fatalf("%s before Attach: %d %v", path, code, out)
		}
	}
	resp, err := http.Get(srv.URL + authzen.MetadataPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata before Attach: %d", resp.StatusCode)
	}
	svc, _ := backend(t)
	for _, bad := range []authzen.Secret{{}, {Key: []byte("short")}} {
		if err := h.Attach(svc, bad); err == nil {
			t.Fatalf("Attach with a %d-byte secret succeeded", len(bad.Key))
		}
	}
	if code, _, out := post(t, srv.URL, authzen.EvaluationPath, strings.NewReader(allowBody), nil); code != http.StatusServiceUnavailable {
		t.Fatalf("after a refused Attach: %d %v", code, out)
	}
	if err := h.Attach(svc, testSecret); err != nil {
		t.Fatal(err)
	}
	if err := h.Attach(svc, testSecret); err == nil {
		t.Fatal("a second Attach succeeded")
	}
	if code, _, out := post(t, srv.URL, authzen.EvaluationPath, strings.NewReader(allowBody), nil); code != http.StatusOK || out["decision"] != true {
		t.Fatalf("after Attach: %d %v", code, out)
	}
}

func TestMaxEvaluations(t *testing.T) {
	t.Parallel()
	srv, _, _ := serve(t, func(c *authzen.Config) { c.MaxEvaluations = 2 }, true)
	items := `{"resource":{"type":"record","id":"record-1"}}`
	body := `{"subject":{"type":"user","id":"alice"},"action":{"name":"read"},"evaluations":[` + items + `,` + items + `]}`
	if code, _, out := post(t, srv.URL, authzen.EvaluationsPath, strings.NewReader(body), nil); code != http.StatusOK {
		t.Fatalf("2 items: %d %v", code, out)
	}
	body = strings.Replace(body, "]}", ","+items+"]}", 1)
	code, _, out := post(t, srv.URL, authzen.EvaluationsPath, strings.NewReader(body), nil)
	if code != http.StatusBadRequest || out["field"] != "evaluations" {
		t.Fatalf("3 items: %d %v", code, out)
	}
}

// The certification scenario's idempotency test (c-2-6): the same request answers the
// same, context included.
func TestSameRequestSameAnswer(t *testing.T) {
	t.Parallel()
	srv, _, _ := serve(t, nil, true)
	body := `{"subject":{"type":"user","id":"alice"},"action":{"name":"can_edit"},"resource":{"type":"document","id":"d"}}`
	var first []byte
	for i := range 3 {
		_, _, out := post(t, srv.URL, authzen.EvaluationPath, strings.NewReader(body), nil)
		got, _ := json.Marshal(out)
		if i == 0 {
			first = got
		} else if !bytes.Equal(got, first) {
			t.Fatalf("answer %d differs:\n%s\n%s", i, got, first)
		}
	}
}

// A configured base URL is what the metadata names, whatever Host the request had;
// without one, the metadata names the URL the PEP fetched, https over TLS.
func TestMetadataBaseURL(t *testing.T) {
	t.Parallel()
	get := func(t *testing.T, c *http.Client, url string) map[string]any {
		t.Helper()
		resp, err := c.Get(url + authzen.MetadataPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	srv, _, _ := serve(t, func(c *authzen.Config) { c.BaseURL = "https://pdp.example.com/" }, false)
	m := get(t, http.DefaultClient, srv.URL)
	if m["policy_decision_point"] != "https://pdp.example.com" ||
		m["access_evaluations_endpoint"] != "https://pdp.example.com/access/v1/evaluations" {
		t.Fatalf("%v", m)
	}

	h, err := authzen.New(authzen.Config{Auth: authenticator(t)})
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv := httptest.NewTLSServer(h)
	t.Cleanup(tlsSrv.Close)
	if m := get(t, tlsSrv.Client(), tlsSrv.URL); m["policy_decision_point"] != tlsSrv.URL ||
		!strings.HasPrefix(tlsSrv.URL, "https://") || m["access_evaluation_endpoint"] != tlsSrv.URL+"/access/v1/evaluation" {
		t.Fatalf("over TLS: %v", m)
	}
	// A bearer token over TLS authenticates as over plaintext.
	req, _ := http.NewRequest(http.MethodPost, tlsSrv.URL+authzen.EvaluationPath, strings.NewReader(allowBody))
	req.Header.Set("Authorization", "Bearer tok-nobody")
	req.Header.Set("Content-Type", "application/json")
	resp, err := tlsSrv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable { // not attached: 503 before credentials are looked at
		t.Fatalf("over TLS: %d", resp.StatusCode)
	}
}

func TestParseBaseURL(t *testing.T) {
	t.Parallel()
	for in, ok := range map[string]bool{
		"https://pdp.example.com":          true,
		"https://pdp.example.com/tenant1/": true,
		"http://127.0.0.1:7072":            true,
		"http://localhost:7072":            true,
		"http://pdp.example.com":           false,
		"pdp.example.com":                  false,
		"https://pdp.example.com?x=1":      false,
		"https://pdp.example.com#f":        false,
		"https://u:p@pdp.example.com":      false,
		"ftp://pdp.example.com":            false,
	} {
		if _, err := authzen.ParseBaseURL(in); (err == nil) != ok {
			t.Errorf("%q: %v, want ok=%v", in, err, ok)
		}
	}
}

// testSecret stands for the deployment's evidence signing key seed.
var testSecret = authzen.Secret{Key: []byte("0123456789abcdef0123456789abcdef")}
