package server

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// AuthenticateHTTP applies Authenticate's rules to an HTTP request's Authorization
// fields and TLS state: the cases of TestCertificateAuthentication, over HTTPS.
func TestCertificateAuthenticationHTTP(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	ids, err := parseIdentities([]byte(authTokens))
	if err != nil {
		t.Fatal(err)
	}
	auth := NewAuthenticator(ids)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := auth.AuthenticateHTTP(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, p.ID)
	}))
	srv.TLS = ca.serverTLS(t, false)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	certs := map[string]tls.Certificate{
		"auditor":        ca.issue(t, false, "spiffe://example.org/auditor"),
		"dispatcher":     ca.issue(t, false, "Dispatcher.Internal"),
		"unmapped":       ca.issue(t, false, "spiffe://example.org/somebody"),
		"two principals": ca.issue(t, false, "spiffe://example.org/auditor", "dispatcher.internal"),
	}
	for _, tc := range []struct {
		cert   string
		tokens []string
		want   string // the principal, or "" for 401
	}{
		{"", nil, ""},
		{"", []string{"Bearer tok-audit"}, "auditor"},
		{"", []string{"bearer  tok-audit "}, "auditor"},
		{"", []string{"Bearer tok-audit", "Bearer tok-audit"}, ""}, // repeated
		{"", []string{"Basic tok-audit"}, ""},
		{"auditor", nil, "auditor"},
		{"auditor", []string{"Bearer tok-dispatch"}, ""}, // a stolen token over another's mTLS
		{"dispatcher", nil, "dispatcher"},
		{"unmapped", []string{"Bearer tok-audit"}, "auditor"},
		{"unmapped", nil, ""},
		{"two principals", []string{"Bearer tok-audit"}, ""},
	} {
		cfg := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}
		if tc.cert != "" {
			cfg.Certificates = []tls.Certificate{certs[tc.cert]}
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header["Authorization"] = tc.tokens
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := string(body)
		if resp.StatusCode != http.StatusOK {
			got = ""
		}
		if got != tc.want {
			t.Errorf("certificate %q, authorization %q: %d %q, want %q", tc.cert, tc.tokens, resp.StatusCode, body, tc.want)
		}
	}
}
