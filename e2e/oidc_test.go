package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc/codes"

	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
)

// oidcIssuer serves OpenID Connect discovery and a JWKS of one ECDSA key on loopback,
// and signs tokens with that key.
type oidcIssuer struct {
	srv *httptest.Server
	key *ecdsa.PrivateKey
}

func startOIDCIssuer(t *testing.T) *oidcIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss := &oidcIssuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss.srv.URL, "jwks_uri": iss.srv.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

// token signs a JWT for email in groups, valid for ten minutes.
func (i *oidcIssuer) token(t *testing.T, email string, groups ...string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: i.key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body, _ := json.Marshal(map[string]any{"iss": i.srv.URL, "aud": "agate", "sub": "00u-" + email,
		"email": email, "email_verified": true, "groups": groups, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
	obj, err := s.Sign(body)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// oidcTokensFile is examples/tokens.yaml with an oidc section for issuer.
func oidcTokensFile(t *testing.T, issuer string) string {
	t.Helper()
	body := readFile(t, filepath.Join(root, "examples/tokens.yaml")) + `
oidc:
  issuer: ` + issuer + `
  audiences: [agate]
  principal_claim: email
  groups_claim: groups
  groups:
    finance-approvers: [finance-approver]
`
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOIDCApproval, on each backend: an approver signed in at the company's identity
// provider approves a payment; the approval's evidence names OIDC and the issuer, the
// export of that evidence verifies offline, and a JWT mapping to no role is refused.
func TestOIDCApproval(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			iss := startOIDCIssuer(t)
			key := filepath.Join(t.TempDir(), "evidence.key")
			db, _ := backendDB(t, backend)
			a := startAgate(t, db, append(auditArgs(key), "--tokens", oidcTokensFile(t, iss.srv.URL))...)

			res := decidePayment(t, a, "oidc-pay-1")
			_, err := a.decision().Approve(as(ctx, iss.token(t, "carol@example.com", "sales")),
				&agatev1.ApproveRequest{JobId: "oidc-pay-1", JobHash: res.GetJobHash()})
			wantErr(t, err, codes.Unauthenticated, "UNAUTHENTICATED")
			// The same person as a tokens-file principal cannot sign in through the issuer.
			_, err = a.decision().Approve(as(ctx, iss.token(t, "Alice@Example.com", "finance-approvers")),
				&agatev1.ApproveRequest{JobId: "oidc-pay-1", JobHash: res.GetJobHash()})
			wantErr(t, err, codes.Unauthenticated, "UNAUTHENTICATED")

			ok, err := a.decision().Approve(as(ctx, iss.token(t, "carol@example.com", "finance-approvers")),
				&agatev1.ApproveRequest{JobId: "oidc-pay-1", JobHash: res.GetJobHash(), Reason: "invoice checked"})
			if err != nil {
				t.Fatalf("Approve by the OIDC principal: %v", err)
			}
			if ap := ok.GetApproval(); ap.GetApprovedBy() != "carol@example.com" || ap.GetApprovedRole() != "finance-approver" {
				t.Errorf("approval %v, want carol@example.com as finance-approver", ap)
			}
			ev, err := a.evidence().GetEvidence(as(ctx, tokAudit), &agatev1.GetEvidenceRequest{JobId: "oidc-pay-1"})
			if err != nil {
				t.Fatal(err)
			}
			var approval *agatev1.EvidenceEvent
			for _, e := range ev.GetEvents() {
				if e.GetKind() == "approval" {
					approval = e
				} else if e.GetKind() == "decision" && e.GetAuthMethod() != "token" {
					t.Errorf("decision auth_method %q, want token", e.GetAuthMethod())
				}
			}
			if approval == nil || approval.GetPrincipal() != "carol@example.com" || approval.GetAuthMethod() != "oidc:"+iss.srv.URL {
				t.Fatalf("approval event %v, want principal carol@example.com and auth_method oidc:%s", approval, iss.srv.URL)
			}
			waitSealed(t, a)
			agateOK(t, "evidence", "verify", "--file", exportFile(t, a), "--public-key", publicKeyFile(t, key))
		})
	}
}
