package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc/metadata"

	"github.com/agate-pdp/agate/audit"
	agatev1 "github.com/agate-pdp/agate/gen/agate/v1"
	"github.com/agate-pdp/agate/jobs"
)

// testIssuer is an OpenID Connect issuer on loopback: discovery, a JWKS of its own
// ECDSA keys that the test can rotate, and a counter of key set fetches.
type testIssuer struct {
	srv     *httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	keys    map[string]*ecdsa.PrivateKey // published, by kid
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	iss := &testIssuer{keys: map[string]*ecdsa.PrivateKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss.url(), "jwks_uri": iss.url() + "/jwks",
			"id_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		iss.fetches.Add(1)
		iss.mu.Lock()
		defer iss.mu.Unlock()
		var set jose.JSONWebKeySet
		for kid, k := range iss.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "ES256", Use: "sig"})
		}
		_ = json.NewEncoder(w).Encode(set)
	})
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

func (i *testIssuer) url() string { return i.srv.URL }

// newKey makes a key; publish makes the JWKS serve it, retire stops serving it.
func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (i *testIssuer) publish(kid string, k *ecdsa.PrivateKey) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys[kid] = k
}

func (i *testIssuer) retire(kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	delete(i.keys, kid)
}

// sign returns a compact ES256 JWT of claims under kid.
func sign(t *testing.T, kid string, k *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
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

// oidcTokens is a tokens file with the static principals svc (decide), bob (approver),
// auditor (audit) and the service id alice-svc@example.com, and an oidc section for iss.
func oidcTokens(iss string) string {
	return `principals:
  - id: svc
    roles: [decide]
    tokens_sha256: ["` + sha("tok-svc") + `"]
  - id: bob
    roles: [approver]
    tokens_sha256: ["` + sha("tok-bob") + `"]
  - id: auditor
    roles: [audit]
    tokens_sha256: ["` + sha("tok-auditor") + `"]
  - id: svc-bot@example.com
    roles: [dispatch]
    tokens_sha256: ["` + sha("tok-bot") + `"]
  - id: jwt-shaped
    roles: [audit]
    tokens_sha256: ["` + sha(jwtShapedToken) + `"]
oidc:
  issuer: ` + iss + `
  audiences: [agate, agate-cli]
  principal_claim: email
  groups_claim: groups
  groups:
    payments-approvers: [approver]
    finance-leads: [approver, finance-approver]
`
}

// jwtShapedToken is a static token that has the form of a JWT.
const jwtShapedToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"

// claims are a valid token's claims for iss, edited by edit.
func claims(iss string, edit func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": iss, "aud": "agate", "sub": "00u1alice", "email": "alice@example.com",
		"email_verified": true, "groups": []string{"payments-approvers", "unrelated"},
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	if edit != nil {
		edit(c)
	}
	return c
}

func authAs(a *Authenticator, tok string) (jobs.Principal, error) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	return a.Authenticate(ctx)
}

func TestOIDCAuthenticate(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t)
	k1, stranger := newKey(t), newKey(t)
	iss.publish("k1", k1)
	ids, err := LoadIdentities(writeTokens(t, oidcTokens(iss.url())))
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(ids)
	now := time.Now()
	tests := []struct {
		name      string
		tok       string
		wantID    string
		wantRoles string
	}{
		{"valid", sign(t, "k1", k1, claims(iss.url(), nil)), "alice@example.com", "approver"},
		{"second audience, groups as one string", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) {
			c["aud"] = []string{"other", "agate-cli"}
			c["groups"] = "finance-leads"
		})), "alice@example.com", "approver,finance-approver"},
		{"email_verified as the string true", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["email_verified"] = "true" })),
			"alice@example.com", "approver"},
		{"expired", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["exp"] = now.Add(-time.Second).Unix() })), "", ""},
		{"no exp", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { delete(c, "exp") })), "", ""},
		{"not yet valid", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["nbf"] = now.Add(3 * time.Minute).Unix() })), "", ""},
		{"nbf within the skew", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["nbf"] = now.Add(20 * time.Second).Unix() })),
			"alice@example.com", "approver"},
		{"wrong audience", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["aud"] = "someone-else" })), "", ""},
		{"no audience", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { delete(c, "aud") })), "", ""},
		{"wrong issuer", sign(t, "k1", k1, claims("https://evil.example.com", nil)), "", ""},
		{"unknown key", sign(t, "k9", stranger, claims(iss.url(), nil)), "", ""},
		{"known kid, other key", sign(t, "k1", stranger, claims(iss.url(), nil)), "", ""},
		{"tampered payload", tamper(sign(t, "k1", k1, claims(iss.url(), nil))), "", ""},
		{"missing principal claim", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { delete(c, "email") })), "", ""},
		{"principal claim not a string", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["email"] = 7 })), "", ""},
		{"email_verified false", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["email_verified"] = false })), "", ""},
		{"email_verified missing", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { delete(c, "email_verified") })), "", ""},
		{"missing groups claim", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { delete(c, "groups") })), "", ""},
		{"groups map to no role", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["groups"] = []string{"unrelated", "Payments-Approvers"} })), "", ""},
		{"a group named like a role grants nothing", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["groups"] = []string{"approver", "audit"} })), "", ""},
		{"id of a tokens-file principal", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["email"] = "SVC-Bot@Example.com" })), "", ""},
		{"id of Agate itself", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["email"] = "agate" })), "", ""},
		{"id of the policy file", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["email"] = "agate:policy-file" })), "", ""},
		{"id that is not canonical", sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["email"] = "alice@example.com\u200b" })), "", ""},
		{"unsigned", unsigned(claims(iss.url(), nil)), "", ""},
		{"a JWT-shaped static token stays a token", jwtShapedToken, "jwt-shaped", "audit"},
		{"a static token", "tok-bob", "bob", "approver"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := authAs(a, tc.tok)
			if tc.wantID == "" {
				if err == nil {
					t.Fatalf("authenticated as %q %v, want refusal", p.ID, p.Roles)
				}
				if err != errUnauthenticated {
					t.Fatalf("err = %v, want the one vague refusal", err)
				}
				return
			}
			if err != nil || p.ID != tc.wantID || strings.Join(p.Roles, ",") != tc.wantRoles {
				t.Fatalf("got %q %v, %v; want %q [%s]", p.ID, p.Roles, err, tc.wantID, tc.wantRoles)
			}
			want := AuthOIDCPrefix + iss.url()
			if !strings.HasPrefix(tc.tok, "ey") || tc.tok == jwtShapedToken {
				want = AuthToken
			}
			if p.Auth != want {
				t.Errorf("auth method %q, want %q", p.Auth, want)
			}
		})
	}
}

func tamper(jwt string) string {
	parts := strings.Split(jwt, ".")
	body, _ := json.Marshal(map[string]any{"iss": "x", "email": "mallory@example.com"})
	parts[1] = base64.RawURLEncoding.EncodeToString(body)
	return strings.Join(parts, ".")
}

// unsigned is an alg "none" token.
func unsigned(c map[string]any) string {
	body, _ := json.Marshal(c)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(body) + ".c2ln"
}

// TestOIDCKeyRotation: the issuer rotates its keys; a token under the new key verifies
// once the cache refetches the key set, and one under the retired key no longer does
// after that.
func TestOIDCKeyRotation(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t)
	k1, k2 := newKey(t), newKey(t)
	iss.publish("k1", k1)
	ids, err := LoadIdentities(writeTokens(t, oidcTokens(iss.url())))
	if err != nil {
		t.Fatal(err)
	}
	ids.oidc.keys.minRefresh = 0 // no wait between fetches in this test
	a := NewAuthenticator(ids)
	if _, err := authAs(a, sign(t, "k1", k1, claims(iss.url(), nil))); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	before := iss.fetches.Load()
	for range 3 { // cached: no fetch per call
		if _, err := authAs(a, sign(t, "k1", k1, claims(iss.url(), nil))); err != nil {
			t.Fatal(err)
		}
	}
	if n := iss.fetches.Load(); n != before {
		t.Errorf("%d key set fetches for tokens under a cached key, want none", n-before)
	}
	iss.publish("k2", k2)
	iss.retire("k1")
	p, err := authAs(a, sign(t, "k2", k2, claims(iss.url(), nil)))
	if err != nil || p.ID != "alice@example.com" {
		t.Fatalf("after rotation: %q, %v", p.ID, err)
	}
	if _, err := authAs(a, sign(t, "k1", k1, claims(iss.url(), nil))); err != nil {
		t.Logf("k1 is refused once the refetched set lacks it: %v", err)
	} else {
		t.Error("a token under the retired key k1 still verifies after the key set was refetched")
	}
}

// TestOIDCUnknownKidsDoNotHammerTheIssuer: made-up key ids from unauthenticated callers
// refetch the key set at most once per refresh interval.
func TestOIDCUnknownKidsDoNotHammerTheIssuer(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t)
	k1, stranger := newKey(t), newKey(t)
	iss.publish("k1", k1)
	ids, err := LoadIdentities(writeTokens(t, oidcTokens(iss.url())))
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(ids)
	if _, err := authAs(a, sign(t, "k1", k1, claims(iss.url(), nil))); err != nil {
		t.Fatal(err)
	}
	before := iss.fetches.Load()
	for i := range 20 {
		if _, err := authAs(a, sign(t, "made-up-"+string(rune('a'+i)), stranger, claims(iss.url(), nil))); err == nil {
			t.Fatal("a token under an unpublished key verified")
		}
	}
	if n := iss.fetches.Load() - before; n > 1 {
		t.Errorf("20 tokens with unknown key ids fetched the key set %d times, want at most once per %s", n, oidcKeyRefresh)
	}
}

// TestOIDCIssuerDown: with the issuer unreachable every JWT is refused, and static
// tokens keep working.
func TestOIDCIssuerDown(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t)
	k1 := newKey(t)
	iss.publish("k1", k1)
	url := iss.url()
	iss.srv.Close()
	ids, err := LoadIdentities(writeTokens(t, oidcTokens(url)))
	if err != nil {
		t.Fatal(err)
	}
	if err := ids.CheckOIDC(t.Context()); err == nil {
		t.Error("CheckOIDC succeeded against a closed issuer")
	}
	a := NewAuthenticator(ids)
	if _, err := authAs(a, sign(t, "k1", k1, claims(url, nil))); err == nil {
		t.Error("a JWT verified with the issuer down")
	}
	if p, err := authAs(a, "tok-bob"); err != nil || p.ID != "bob" {
		t.Errorf("static token with the issuer down: %q, %v", p.ID, err)
	}
}

func TestOIDCConfigRules(t *testing.T) {
	t.Parallel()
	base := "principals:\n  - id: svc\n    roles: [decide]\n    tokens_sha256: [\"" + sha("x") + "\"]\n"
	section := func(issuer, rest string) string {
		return base + "oidc:\n  issuer: " + issuer + "\n" + rest
	}
	good := "  audiences: [agate]\n  principal_claim: email\n  groups_claim: groups\n  groups:\n    g: [approver]\n"
	tests := []struct {
		name, body, want string
	}{
		{"valid https", section("https://login.example.com/oauth2/default", good), ""},
		{"valid loopback http", section("http://127.0.0.1:8080", good), ""},
		{"no issuer", base + "oidc:\n" + good, "oidc.issuer: is required"},
		{"http beyond loopback", section("http://login.example.com", good), "over https"},
		{"issuer with query", section("https://login.example.com/?x=1", good), "not an issuer URL"},
		{"other scheme", section("ftp://login.example.com", good), "scheme must be https"},
		{"no audiences", section("https://i.example.com", "  principal_claim: email\n  groups_claim: groups\n  groups:\n    g: [approver]\n"), "oidc.audiences"},
		{"no principal claim", section("https://i.example.com", "  audiences: [agate]\n  groups_claim: groups\n  groups:\n    g: [approver]\n"), "oidc.principal_claim"},
		{"no groups claim", section("https://i.example.com", "  audiences: [agate]\n  principal_claim: sub\n  groups:\n    g: [approver]\n"), "oidc.groups_claim"},
		{"no groups", section("https://i.example.com", "  audiences: [agate]\n  principal_claim: sub\n  groups_claim: groups\n"), "oidc.groups: map at least one"},
		{"unknown key", section("https://i.example.com", good+"  roles_claim: roles\n"), "field roles_claim not found"},
		{"blank role", section("https://i.example.com", "  audiences: [agate]\n  principal_claim: sub\n  groups_claim: groups\n  groups:\n    g: [\" approver\"]\n"), `oidc.groups["g"][0]`},
	}
	for _, r := range []string{RoleDecide, RoleDispatch, RoleAudit, RolePolicyAdmin, jobs.RoleOperator} {
		tests = append(tests, struct{ name, body, want string }{"service role " + r,
			section("https://i.example.com", "  audiences: [agate]\n  principal_claim: sub\n  groups_claim: groups\n  groups:\n    g: [approver]\n    admins: [approver, "+r+"]\n"),
			`oidc.groups["admins"][1]: "` + r + `" is a service role`})
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

// TestOIDCApprovalEvidence: an approver signed in through the issuer approves a job;
// the approval's evidence names OIDC and the issuer, the decision's the static token.
func TestOIDCApprovalEvidence(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t)
	k1 := newKey(t)
	iss.publish("k1", k1)
	cfg := testConfig(t, oidcTokens(iss.url()))
	if _, err := cfg.Jobs.PutPolicy(t.Context(), jobs.Principal{ID: "owner", Roles: []string{RolePolicyAdmin}},
		[]byte(approvalPolicy), true); err != nil {
		t.Fatal(err)
	}
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	au, err := audit.New(audit.Config{Store: cfg.Store, PublicKey: key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Audit = au
	_, addr := serve(t, cfg)
	conn := dial(t, addr, nil)
	dec, ev := agatev1.NewDecisionServiceClient(conn), agatev1.NewEvidenceServiceClient(conn)

	res, err := dec.Decide(bearer("tok-svc"), &agatev1.DecideRequest{Job: &agatev1.Job{JobId: "pay-1", Topic: "pay.out", Actor: "agent-7"}})
	if err != nil {
		t.Fatal(err)
	}
	jwt := sign(t, "k1", k1, claims(iss.url(), nil))
	if _, err := dec.Approve(bearer(jwt), &agatev1.ApproveRequest{JobId: "pay-1", JobHash: res.GetJobHash(), Reason: "ok"}); err != nil {
		t.Fatalf("Approve by the OIDC principal: %v", err)
	}
	got, err := ev.GetEvidence(bearer("tok-auditor"), &agatev1.GetEvidenceRequest{JobId: "pay-1"})
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]string{}
	for _, e := range got.GetEvents() {
		methods[e.GetKind()] = e.GetAuthMethod()
		if e.GetKind() == "approval" && e.GetPrincipal() != "alice@example.com" {
			t.Errorf("approval principal %q", e.GetPrincipal())
		}
	}
	if want := AuthOIDCPrefix + iss.url(); methods["approval"] != want {
		t.Errorf("approval auth_method %q, want %q (events %v)", methods["approval"], want, methods)
	}
	if methods["decision"] != AuthToken {
		t.Errorf("decision auth_method %q, want %q", methods["decision"], AuthToken)
	}
}

// TestReadmeOIDCExampleLoads: the README's OIDC tokens file is one Agate accepts.
func TestReadmeOIDCExampleLoads(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "#### OIDC sign-in")
	_, block, ok2 := strings.Cut(section, "```yaml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no yaml block under #### OIDC sign-in")
	}
	ids, err := LoadIdentities(writeTokens(t, block))
	if err != nil {
		t.Fatalf("the README's example: %v", err)
	}
	if ids.OIDCIssuer() != "https://login.example.com/oauth2/default" {
		t.Errorf("issuer %q", ids.OIDCIssuer())
	}
}

// TestOIDCCancelledCallerSpoilsNothing: a caller whose deadline has passed cannot make
// discovery or a key refresh fail for everyone until the next retry.
func TestOIDCCancelledCallerSpoilsNothing(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t)
	k1, k2 := newKey(t), newKey(t)
	iss.publish("k1", k1)
	ids, err := LoadIdentities(writeTokens(t, oidcTokens(iss.url())))
	if err != nil {
		t.Fatal(err)
	}
	var skew atomic.Int64 // how far the key cache's clock is ahead
	ids.oidc.keys.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	a := NewAuthenticator(ids)
	cancelled := func(tok string) {
		ctx, cancel := context.WithCancel(metadata.NewIncomingContext(context.Background(),
			metadata.Pairs("authorization", "Bearer "+tok)))
		cancel()
		_, _ = a.Authenticate(ctx)
	}
	cancelled(sign(t, "k1", k1, claims(iss.url(), nil))) // the first call runs discovery
	if _, err := authAs(a, sign(t, "k1", k1, claims(iss.url(), nil))); err != nil {
		t.Fatalf("after a cancelled caller's discovery: %v", err)
	}
	iss.publish("k2", k2)
	skew.Store(int64(2 * oidcKeyRefresh))                // the next unknown key id may refetch
	cancelled(sign(t, "k2", k2, claims(iss.url(), nil))) // this one triggers the refresh
	if _, err := authAs(a, sign(t, "k2", k2, claims(iss.url(), nil))); err != nil {
		t.Fatalf("after a cancelled caller's key refresh: %v", err)
	}
}
