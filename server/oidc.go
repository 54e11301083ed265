package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/jobs"
)

// oidcConfig is the tokens file's oidc section: which issuer's JWTs sign people in, and
// how their claims map to a principal id and roles.
type oidcConfig struct {
	Issuer         string              `yaml:"issuer"`
	Audiences      []string            `yaml:"audiences"`
	PrincipalClaim string              `yaml:"principal_claim"`
	GroupsClaim    string              `yaml:"groups_claim"`
	Groups         map[string][]string `yaml:"groups"`
}

// Timings of the issuer's endpoints. A JWT whose key id is not among the cached keys
// refetches the key set, but no more often than keyRefresh: unauthenticated callers
// must not be able to make Agate hammer the issuer with made-up key ids.
const (
	oidcFetchTimeout   = 10 * time.Second
	oidcDiscoveryRetry = 10 * time.Second
	oidcKeyRefresh     = 10 * time.Second
	oidcMaxBody        = 1 << 20
	// oidcNotBeforeSkew is the clock skew a token's nbf is allowed; go-oidc allows five
	// minutes, which is more than a token that says "not yet" should get.
	oidcNotBeforeSkew = time.Minute
)

// oidcAlgs are the signature algorithms a token may use: asymmetric only, so a public
// key can never serve as an HMAC secret.
var oidcAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}

// checkOIDC validates the oidc section. Roles come only from the groups it lists, and a
// service role may not be among them: a sign-in at the company's identity provider
// approves jobs, it never submits, dispatches, audits, administers policy or operates.
func checkOIDC(c *oidcConfig) error {
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		return errors.New("oidc.issuer: is required")
	case err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("oidc.issuer: %q is not an issuer URL (scheme, host and optional path only)", c.Issuer)
	case u.Scheme == "http" && !loopbackHost(u.Hostname()):
		return fmt.Errorf("oidc.issuer: %q: the issuer's keys must be fetched over https (http is allowed for a loopback issuer only)", c.Issuer)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("oidc.issuer: %q: scheme must be https", c.Issuer)
	}
	if len(c.Audiences) == 0 {
		return errors.New("oidc.audiences: list the audience (aud) values that mean Agate, e.g. [agate]")
	}
	for i, a := range c.Audiences {
		if strings.TrimSpace(a) != a || a == "" {
			return fmt.Errorf("oidc.audiences[%d]: is empty or has white space at an end", i)
		}
	}
	if c.PrincipalClaim == "" {
		return errors.New("oidc.principal_claim: is required, e.g. email or sub")
	}
	if c.GroupsClaim == "" {
		return errors.New("oidc.groups_claim: is required, e.g. groups")
	}
	if len(c.Groups) == 0 {
		return errors.New("oidc.groups: map at least one group to the roles it grants; a sign-in whose groups map to no role is refused")
	}
	for g, roles := range c.Groups {
		if strings.TrimSpace(g) != g || g == "" {
			return fmt.Errorf("oidc.groups: group %q is empty or has white space at an end", g)
		}
		if len(roles) == 0 {
			return fmt.Errorf("oidc.groups[%q]: lists no roles", g)
		}
		for j, r := range roles {
			switch {
			case strings.TrimSpace(r) != r || r == "":
				return fmt.Errorf("oidc.groups[%q][%d]: is empty or has white space at an end", g, j)
			case decision.IsServiceRole(r):
				return fmt.Errorf("oidc.groups[%q][%d]: %q is a service role; an identity provider group may grant approver roles only", g, j, r)
			}
		}
	}
	return nil
}

// loopbackHost reports whether host is a loopback IP or "localhost".
func loopbackHost(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	return strings.EqualFold(host, "localhost")
}

// looksLikeJWT reports whether a bearer value has the compact JWS form: three base64url
// parts, the first a JSON object.
func looksLikeJWT(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return false
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	return err == nil && json.Valid(hdr) && strings.HasPrefix(strings.TrimSpace(string(hdr)), "{")
}

// oidcAuth verifies an issuer's JWTs and maps their claims to principals. Discovery
// happens on first use and is retried while the issuer is unreachable; keys are cached
// and refetched when a token names a key id the cache lacks (rotation).
type oidcAuth struct {
	cfg      oidcConfig
	method   string          // auth_method: "oidc:" + issuer
	reserved map[string]bool // confusable skeletons of the tokens file's principal ids
	client   *http.Client
	now      func() time.Time
	keys     *jwksCache

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier // nil until discovery succeeds
	tried    time.Time             // last failed discovery
	retry    time.Duration
}

func newOIDCAuth(cfg oidcConfig, reserved map[string]bool) *oidcAuth {
	client := &http.Client{Timeout: oidcFetchTimeout}
	return &oidcAuth{cfg: cfg, method: AuthOIDCPrefix + cfg.Issuer, reserved: reserved, client: client,
		now: time.Now, retry: oidcDiscoveryRetry,
		keys: &jwksCache{client: client, now: time.Now, minRefresh: oidcKeyRefresh}}
}

// oidcError wraps why a JWT was refused; the caller only ever sees errUnauthenticated.
type oidcError struct{ why error }

func (e *oidcError) Error() string { return "oidc: " + e.why.Error() }

// discover returns the verifier, running discovery when it has not yet succeeded.
func (a *oidcAuth) discover(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.verifier != nil {
		return a.verifier, nil
	}
	if !a.tried.IsZero() && a.now().Sub(a.tried) < a.retry {
		return nil, errors.New("the issuer's discovery failed recently; not retrying yet")
	}
	// The fetch outlives the caller's deadline: a caller that sends a JWT with a tiny
	// deadline must not fail discovery for everyone until the next retry.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), oidcFetchTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, a.client), a.cfg.Issuer)
	if err != nil {
		a.tried = a.now()
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var meta struct {
		JWKS string   `json:"jwks_uri"`
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKS == "" {
		a.tried = a.now()
		return nil, errors.New("discovery: the issuer names no jwks_uri")
	}
	algs := []string{}
	for _, alg := range meta.Algs {
		if slices.Contains(oidcAlgs, alg) {
			algs = append(algs, alg)
		}
	}
	if len(algs) == 0 {
		algs = []string{oidc.RS256} // OpenID Connect's mandatory algorithm
	}
	a.keys.setURL(meta.JWKS)
	// The audience is checked against the configured list in authenticate, as go-oidc
	// takes a single client id.
	a.verifier = oidc.NewVerifier(a.cfg.Issuer, a.keys, &oidc.Config{SkipClientIDCheck: true,
		SupportedSigningAlgs: algs, Now: a.now})
	return a.verifier, nil
}

// authenticate verifies a JWT and maps it to a principal. Any failure refuses the call.
// The error, an *oidcError, is for the log only.
func (a *oidcAuth) authenticate(ctx context.Context, raw string) (jobs.Principal, error) {
	v, err := a.discover(ctx)
	if err != nil {
		return jobs.Principal{}, &oidcError{err}
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return jobs.Principal{}, &oidcError{err}
	}
	if !slices.ContainsFunc(tok.Audience, func(aud string) bool { return slices.Contains(a.cfg.Audiences, aud) }) {
		return jobs.Principal{}, &oidcError{fmt.Errorf("audience %q is not among oidc.audiences", tok.Audience)}
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return jobs.Principal{}, &oidcError{err}
	}
	if err := a.checkNotBefore(claims); err != nil {
		return jobs.Principal{}, &oidcError{err}
	}
	id, err := a.principalID(claims)
	if err != nil {
		return jobs.Principal{}, &oidcError{err}
	}
	roles, err := a.roles(claims)
	if err != nil {
		return jobs.Principal{}, &oidcError{err}
	}
	return jobs.Principal{ID: id, Roles: roles, Auth: a.method}, nil
}

// checkNotBefore refuses a token whose nbf is more than a minute ahead.
func (a *oidcAuth) checkNotBefore(claims map[string]json.RawMessage) error {
	raw, ok := claims["nbf"]
	if !ok {
		return nil
	}
	var nbf float64
	if err := json.Unmarshal(raw, &nbf); err != nil {
		return errors.New("nbf is not a number")
	}
	if a.now().Add(oidcNotBeforeSkew).Before(time.Unix(int64(nbf), 0)) {
		return errors.New("the token is not valid yet (nbf)")
	}
	return nil
}

// principalID maps the configured claim to a principal id. An email counts only when the
// issuer says it verified it. The id must be canonical (package identity) and may not
// be, or be the same identity as, a tokens-file principal or Agate itself: a person who
// signs in cannot take over a service's identity, and the separation-of-duties checks
// compare ids canonically, so the id is not renamed either (an approver signing in as
// "alice@example.com" is the actor "alice@example.com").
func (a *oidcAuth) principalID(claims map[string]json.RawMessage) (string, error) {
	name := a.cfg.PrincipalClaim
	var id string
	raw, ok := claims[name]
	if !ok || json.Unmarshal(raw, &id) != nil {
		return "", fmt.Errorf("claim %q is missing or not a string", name)
	}
	if name == "email" && !claimTrue(claims["email_verified"]) {
		return "", errors.New("email_verified is not true")
	}
	sk, err := identity.Skeleton(id)
	if err != nil {
		return "", fmt.Errorf("claim %q %w", name, err)
	}
	// Not only the same id: one a reader could take for it (a Cyrillic о in "bob").
	if a.reserved[sk] || jobs.IsSystemID(id) {
		return "", fmt.Errorf("claim %q names a principal of the tokens file or Agate itself", name)
	}
	return id, nil
}

// claimTrue accepts JSON true, and "true" as some issuers send it.
func claimTrue(raw json.RawMessage) bool {
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && s == "true"
}

// roles are the roles oidc.groups grants the token's groups, sorted; none refuses.
func (a *oidcAuth) roles(claims map[string]json.RawMessage) ([]string, error) {
	raw, ok := claims[a.cfg.GroupsClaim]
	if !ok {
		return nil, fmt.Errorf("claim %q is missing", a.cfg.GroupsClaim)
	}
	var groups []string
	if err := json.Unmarshal(raw, &groups); err != nil {
		var one string
		if json.Unmarshal(raw, &one) != nil {
			return nil, fmt.Errorf("claim %q is not a list of strings", a.cfg.GroupsClaim)
		}
		groups = []string{one}
	}
	var roles []string
	for _, g := range groups {
		roles = append(roles, a.cfg.Groups[g]...)
	}
	slices.Sort(roles)
	roles = slices.Compact(roles)
	if len(roles) == 0 {
		return nil, errors.New("the token's groups map to no role")
	}
	return roles, nil
}

// jwksCache is the issuer's key set. go-oidc's RemoteKeySet refetches on every unknown
// key id; this one does so at most every minRefresh, and keeps its keys when a fetch
// fails.
type jwksCache struct {
	client     *http.Client
	now        func() time.Time
	minRefresh time.Duration

	fetching sync.Mutex // one fetch at a time; held across the network, never by readers
	mu       sync.Mutex // guards what follows, never held across the network
	url      string
	keys     []jose.JSONWebKey
	fetched  time.Time // last fetch attempt
}

func (k *jwksCache) setURL(u string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.url = u
}

// VerifySignature implements oidc.KeySet. The verifier has already checked the
// algorithm against the allowed ones.
func (k *jwksCache) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, joseAlgs())
	if err != nil || len(jws.Signatures) != 1 {
		return nil, errors.New("malformed JWS")
	}
	kid := jws.Signatures[0].Header.KeyID
	k.mu.Lock()
	keys := k.keys
	k.mu.Unlock()
	if p, ok := verifyWith(jws, kid, keys); ok {
		return p, nil
	}
	keys, err = k.refresh(ctx)
	if err != nil {
		return nil, err
	}
	if p, ok := verifyWith(jws, kid, keys); ok {
		return p, nil
	}
	return nil, fmt.Errorf("no key of the issuer (kid %q) verifies the token", kid)
}

func joseAlgs() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(oidcAlgs))
	for i, a := range oidcAlgs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}

func verifyWith(jws *jose.JSONWebSignature, kid string, keys []jose.JSONWebKey) ([]byte, bool) {
	for i := range keys {
		key := &keys[i]
		if (kid != "" && key.KeyID != kid) || (key.Use != "" && key.Use != "sig") {
			continue
		}
		if p, err := jws.Verify(key); err == nil {
			return p, true
		}
	}
	return nil, false
}

// refresh fetches the key set unless it was fetched less than minRefresh ago; callers
// that wait for the lock behind a fetch get its result.
func (k *jwksCache) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	// Tokens under cached keys never wait here: VerifySignature reads the keys under
	// mu alone, and only callers that need a fetch queue behind the one in flight.
	k.fetching.Lock()
	defer k.fetching.Unlock()
	k.mu.Lock()
	if !k.fetched.IsZero() && k.now().Sub(k.fetched) < k.minRefresh {
		keys := k.keys
		k.mu.Unlock()
		return keys, nil
	}
	k.fetched = k.now()
	url := k.url
	k.mu.Unlock()
	// As for discovery: a caller's own short deadline must not spend the refresh.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), oidcFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the issuer's keys: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, oidcMaxBody))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the issuer's keys: status %s", resp.Status)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("the issuer's key set: %w", err)
	}
	// A key of a type go-jose does not know is skipped, not fatal to the others; so is
	// any key that is not public (a symmetric key never verifies a token here).
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if json.Unmarshal(raw, &key) == nil && key.Valid() && key.IsPublic() {
			keys = append(keys, key)
		}
	}
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	return keys, nil
}
