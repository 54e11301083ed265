package server

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

func TestLoadIdentitiesRules(t *testing.T) {
	t.Parallel()
	tok := func(s string) string { return `["` + sha(s) + `"]` }
	tests := []struct {
		name string
		body string
		want string // substring of the error; "" = loads
	}{
		{"token principal", "principals:\n  - id: a\n    roles: [x]\n    tokens_sha256: " + tok("a") + "\n", ""},
		{"certificate principal", "principals:\n  - id: a\n    roles: [x]\n    certificates: [\"uri:spiffe://example.org/a\", \"dns:a.internal\"]\n", ""},
		{"no roles", "principals:\n  - id: a\n    tokens_sha256: " + tok("a") + "\n", "principals[0] (\"a\") has no roles"},
		{"empty roles", "principals:\n  - id: a\n    roles: []\n    tokens_sha256: " + tok("a") + "\n", "has no roles"},
		{"blank role", "principals:\n  - id: a\n    roles: [\" x\"]\n    tokens_sha256: " + tok("a") + "\n", "principals[0].roles[0]"},
		{"ids collide by case", "principals:\n  - id: alice@example.com\n    roles: [x]\n    tokens_sha256: " + tok("a") +
			"\n  - id: b\n    roles: [x]\n    tokens_sha256: " + tok("b") +
			"\n  - id: Alice@Example.COM\n    roles: [y]\n    tokens_sha256: " + tok("c") + "\n",
			`principals[0].id "alice@example.com" and principals[2].id "Alice@Example.COM" name one identity`},
		{"ids collide by width", "principals:\n  - id: alice\n    roles: [x]\n    tokens_sha256: " + tok("a") +
			"\n  - id: ａｌｉｃｅ\n    roles: [x]\n    tokens_sha256: " + tok("b") + "\n", "principals[0].id \"alice\" and principals[1].id"},
		{"id with trailing space", "principals:\n  - id: \"alice \"\n    roles: [x]\n    tokens_sha256: " + tok("a") + "\n", "principals[0].id has leading or trailing white space"},
		{"id with control character", "principals:\n  - id: \"al\\u202eice\"\n    roles: [x]\n    tokens_sha256: " + tok("a") + "\n", "principals[0].id holds a control"},
		{"missing id", "principals:\n  - roles: [x]\n", "principals[0].id is empty"},
		{"old certificate-only principal", "principals:\n  - id: spiffe://example.org/dispatcher\n    roles: [dispatch]\n",
			`certificates: ["uri:spiffe://example.org/dispatcher"]`},
		{"old certificate-only host", "principals:\n  - id: dispatcher\n    roles: [dispatch]\n", `certificates: ["dns:dispatcher"]`},
		{"certificate without type", "principals:\n  - id: a\n    roles: [x]\n    certificates: [\"spiffe://example.org/a\"]\n", `must start with "uri:"`},
		{"relative URI", "principals:\n  - id: a\n    roles: [x]\n    certificates: [\"uri:example.org/a\"]\n", "not an absolute URI"},
		{"wildcard DNS", "principals:\n  - id: a\n    roles: [x]\n    certificates: [\"dns:*.internal\"]\n", "wildcard"},
		{"bad DNS", "principals:\n  - id: a\n    roles: [x]\n    certificates: [\"dns:a_b.internal\"]\n", "not a DNS name"},
		{"certificate listed twice", "principals:\n  - id: a\n    roles: [x]\n    certificates: [\"dns:h.internal\"]\n" +
			"  - id: b\n    roles: [x]\n    certificates: [\"dns:H.Internal.\"]\n", "principals[0].certificates[0] and principals[1].certificates[0]"},
		{"unknown key", "principals:\n  - id: a\n    role: [x]\n", "field role not found"},
		{"bad digest", "principals:\n  - id: a\n    roles: [x]\n    tokens_sha256: [\"xyz\"]\n", "tokens_sha256[0]"},
		{"shared digest", "principals:\n  - id: a\n    roles: [x]\n    tokens_sha256: " + tok("t") +
			"\n  - id: b\n    roles: [x]\n    tokens_sha256: " + tok("t") + "\n", "one token"},
		{"not yaml at all", "{{{", "yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadIdentities(writeTokens(t, tc.body))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestExampleTokensLoad(t *testing.T) {
	t.Parallel()
	if _, err := LoadIdentities("../examples/tokens.yaml"); err != nil {
		t.Fatal(err)
	}
}

// authTokens: the auditor may list snapshots, the dispatcher may not, so the answer
// to ListSnapshots says who the server took the caller for.
var authTokens = `principals:
  - id: auditor
    roles: [audit]
    tokens_sha256: ["` + sha("tok-audit") + `"]
    certificates: ["uri:spiffe://example.org/auditor"]
  - id: dispatcher
    roles: [dispatch]
    tokens_sha256: ["` + sha("tok-dispatch") + `"]
    certificates: ["dns:dispatcher.internal"]
`

const (
	asAuditor    = codes.OK
	asDispatcher = codes.PermissionDenied
	refused      = codes.Unauthenticated
)

func TestCertificateAuthentication(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	other := newTestCA(t)
	certs := map[string]tls.Certificate{
		"auditor":        ca.issue(t, false, "spiffe://example.org/auditor"),
		"dispatcher":     ca.issue(t, false, "Dispatcher.Internal"),
		"unmapped":       ca.issue(t, false, "spiffe://example.org/somebody"),
		"named like id":  ca.issue(t, false, "dispatcher", "auditor"), // the old matching against ids
		"two principals": ca.issue(t, false, "spiffe://example.org/auditor", "dispatcher.internal"),
		"other CA":       other.issue(t, false, "spiffe://example.org/auditor"),
	}
	tests := []struct {
		cert, token string // "" = none
		want        codes.Code
	}{
		{"", "", refused},
		{"", "tok-audit", asAuditor},
		{"auditor", "", asAuditor},
		{"auditor", "tok-audit", asAuditor},
		{"auditor", "tok-dispatch", refused}, // a stolen token over another's mTLS
		{"dispatcher", "", asDispatcher},
		{"dispatcher", "tok-audit", refused},
		{"dispatcher", "tok-nope", refused},
		{"unmapped", "", refused},
		{"unmapped", "tok-audit", asAuditor}, // an unmapped certificate is ignored
		{"named like id", "", refused},
		{"named like id", "tok-dispatch", asDispatcher},
		{"two principals", "", refused},
		{"two principals", "tok-audit", refused},
		{"other CA", "tok-audit", codes.Unavailable}, // the handshake fails
	}
	addr := startServer(t, authTokens, func(c *Config) { c.TLS = ca.serverTLS(t, false) })
	for _, tc := range tests {
		t.Run(tc.cert+"+"+tc.token, func(t *testing.T) {
			t.Parallel()
			var cert *tls.Certificate
			if tc.cert != "" {
				c := certs[tc.cert]
				cert = &c
			}
			checkCaller(t, addr, ca.clientCreds(cert), tc.token, tc.want)
		})
	}
}

func TestRequiredClientCertificates(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	auditor := ca.issue(t, false, "spiffe://example.org/auditor")
	unmapped := ca.issue(t, false, "spiffe://example.org/somebody")
	addr := startServer(t, authTokens, func(c *Config) {
		c.TLS = ca.serverTLS(t, true)
		c.Auth = NewAuthenticator(c.Auth.ids.Load(), RequireClientCert())
	})
	tests := []struct {
		name  string
		cert  *tls.Certificate
		token string
		want  codes.Code
	}{
		{"token without certificate", nil, "tok-audit", codes.Unavailable}, // refused in the handshake
		{"token with unmapped certificate", &unmapped, "tok-audit", refused},
		{"mapped certificate", &auditor, "", asAuditor},
		{"same principal both ways", &auditor, "tok-audit", asAuditor},
		{"different principals", &auditor, "tok-dispatch", refused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkCaller(t, addr, ca.clientCreds(tc.cert), tc.token, tc.want)
		})
	}
	// Health stays public for any certificate the CA issued.
	conn := dial(t, addr, ca.clientCreds(&unmapped))
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check with an unmapped certificate: %v", err)
	}

	// The server will not require mapped certificates over a TLS listener that lets
	// clients connect without one.
	for _, tlsCfg := range []*tls.Config{nil, ca.serverTLS(t, false)} {
		cfg := testConfig(t, authTokens)
		cfg.Auth = NewAuthenticator(cfg.Auth.ids.Load(), RequireClientCert())
		cfg.TLS = tlsCfg
		if _, err := New(cfg); err == nil {
			t.Errorf("New required client certificates over %+v", tlsCfg)
		}
	}
}

// checkCaller calls ListSnapshots over creds with token and checks the code; every
// authentication refusal reads the same.
func checkCaller(t *testing.T, addr string, creds credentials.TransportCredentials, token string, want codes.Code) {
	t.Helper()
	ctx := context.Background()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	_, err := agatev1.NewPolicyServiceClient(dial(t, addr, creds)).ListSnapshots(ctx, &agatev1.ListSnapshotsRequest{})
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
	if want == refused && status.Convert(err).Message() != errUnauthenticated.msg {
		t.Fatalf("refusal message %q differs from the uniform one", status.Convert(err).Message())
	}
}
