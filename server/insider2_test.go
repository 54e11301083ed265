package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestInsider2OIDCConfusableReservedIDs: an OIDC principal id may not be, or be the same
// identity as, a tokens-file principal or Agate itself. The check compares canonical
// keys only, so a look-alike (UTS #39 confusable) id signs in: a person at the identity
// provider whose email claim is "svc-bоt@example.com" (Cyrillic о) or "аgate:expiry"
// (Cyrillic а) becomes an approver whose evidence reads like the dispatcher's or the
// expiry sweeper's.
func TestInsider2OIDCConfusableReservedIDs(t *testing.T) {
	t.Parallel()
	iss := newTestIssuer(t)
	k1 := newKey(t)
	iss.publish("k1", k1)
	ids, err := LoadIdentities(writeTokens(t, oidcTokens(iss.url())))
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(ids)
	for _, id := range []string{
		"svc-b\u043et@example.com", // Cyrillic о: looks like the tokens file's svc-bot@example.com
		"\u0430gate:expiry",        // Cyrillic а: looks like the expiry sweeper
		"\u0430gate",               // looks like Agate itself
		"b\u043eb",                 // looks like the tokens file's bob
	} {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			tok := sign(t, "k1", k1, claims(iss.url(), func(c map[string]any) { c["email"] = id }))
			if p, err := authAs(a, tok); err == nil {
				t.Errorf("signed in as %q %v: a look-alike of a reserved id is accepted", p.ID, p.Roles)
			}
		})
	}
}

// TestInsider2TokensFileSystemPrincipal: the tokens file accepts a principal whose id is
// Agate's own ("agate", "agate:expiry"), so the expiry sweeper's events (principal
// agate:expiry) can be forged by a tokens-file principal; OIDC refuses these ids, the
// tokens file does not.
func TestInsider2TokensFileSystemPrincipal(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"agate", "agate:expiry", "Agate:Expiry", "agate:policy-file"} {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			body := "principals:\n  - id: \"" + id + "\"\n    roles: [approver]\n    tokens_sha256: [\"" + sha("tok-x") + "\"]\n"
			if _, err := parseIdentities([]byte(body)); err == nil {
				t.Errorf("the tokens file accepted the system principal id %q", id)
			}
		})
	}
}

// TestInsider2JWKSRefreshBlocksKnownKeys: a key set refresh holds the cache's lock for
// the whole fetch. Anyone can send a JWT with an unknown kid; while the issuer's JWKS
// endpoint is slow (up to the 10 s fetch timeout), every sign-in, even under a cached
// key, waits behind it. A slow issuer plus one made-up kid every 10 s stalls all OIDC
// sign-ins.
func TestInsider2JWKSRefreshBlocksKnownKeys(t *testing.T) {
	t.Parallel()
	k1 := newKey(t)
	var n atomic.Int32
	hung, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > 1 {
			close(hung)
			select { // the issuer is slow
			case <-release:
			case <-r.Context().Done():
			}
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &k1.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	}))
	t.Cleanup(srv.Close)
	var once atomic.Bool
	free := func() {
		if once.CompareAndSwap(false, true) {
			close(release)
		}
	}
	t.Cleanup(free)
	kc := &jwksCache{client: srv.Client(), now: time.Now, minRefresh: 0, url: srv.URL}
	good := sign(t, "k1", k1, claims("https://issuer.example", nil))
	if _, err := kc.VerifySignature(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	madeUp := sign(t, "made-up", newKey(t), claims("x", nil))
	go func() { _, _ = kc.VerifySignature(context.Background(), madeUp) }()
	<-hung
	done := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		_, _ = kc.VerifySignature(context.Background(), good)
		done <- time.Since(start)
	}()
	select {
	case d := <-done:
		if d > time.Second {
			t.Errorf("a token under a cached key took %s", d)
		}
	case <-time.After(2 * time.Second):
		free()
		t.Errorf("a token under a cached key waited more than 2s behind a refresh triggered by a made-up kid")
		<-done
	}
}
