package server

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/jobs"
)

// The service roles that gate whole methods. Approver roles are whatever policy rules
// name (e.g. admin, finance-approver) and the operator role is per job; the lifecycle
// checks both.
const (
	RoleDecide      = "decide"
	RoleDispatch    = "dispatch"
	RoleAudit       = "audit"
	RolePolicyAdmin = "policy-admin"
)

// Authenticator resolves the caller of a request. Its identities can be swapped at run
// time (SIGHUP reloads the tokens file) without locking the request path.
type Authenticator struct {
	ids         atomic.Pointer[Identities]
	requireCert bool
}

// AuthOption tunes an Authenticator.
type AuthOption func(*Authenticator)

// RequireClientCert makes a client certificate that maps to a principal part of every
// authenticated call; a bearer token alone is then refused. The TLS listener must
// demand certificates too (tls.RequireAndVerifyClientCert).
func RequireClientCert() AuthOption { return func(a *Authenticator) { a.requireCert = true } }

// NewAuthenticator returns an authenticator over ids.
func NewAuthenticator(ids *Identities, opts ...AuthOption) *Authenticator {
	a := &Authenticator{}
	for _, o := range opts {
		o(a)
	}
	a.ids.Store(ids)
	return a
}

// RequiresClientCert reports whether the authenticator was built with RequireClientCert.
func (a *Authenticator) RequiresClientCert() bool { return a.requireCert }

// Swap installs reloaded identities.
func (a *Authenticator) Swap(ids *Identities) { a.ids.Store(ids) }

// errUnauthenticated is deliberately vague and the same for every failure: which part of
// a credential failed, or that a token and a certificate disagree, is not the caller's
// business.
var errUnauthenticated = &accessError{unauthenticated: true, reason: "UNAUTHENTICATED",
	msg: "missing or invalid credentials: send 'authorization: Bearer <token>' or a client certificate"}

// Authenticate returns the principal behind ctx. A verified client certificate counts
// only when the tokens file lists one of its SANs; one that maps to nobody is ignored,
// unless certificates are required. When both a certificate and a bearer token name a
// principal they must name the same one: a stolen token does not work over another
// principal's mTLS connection.
func (a *Authenticator) Authenticate(ctx context.Context) (jobs.Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var state *tls.ConnectionState
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			state = &ti.State
		}
	}
	return a.authenticate(md.Get("authorization"), state)
}

// AuthenticateHTTP is Authenticate for an HTTP request: its Authorization header
// fields and its connection's TLS state, under the same rules and with the same error.
func (a *Authenticator) AuthenticateHTTP(r *http.Request) (jobs.Principal, error) {
	return a.authenticate(r.Header.Values("Authorization"), r.TLS)
}

// authenticate resolves a caller from its authorization header values and its
// connection's TLS state (nil without TLS).
func (a *Authenticator) authenticate(authorization []string, state *tls.ConnectionState) (jobs.Principal, error) {
	ids := a.ids.Load()
	byCert, hasCert, err := ids.peerCertificate(state)
	if err != nil || (a.requireCert && !hasCert) {
		return jobs.Principal{}, errUnauthenticated
	}
	byToken, hasToken, err := ids.bearer(authorization)
	switch {
	case err != nil:
		return jobs.Principal{}, errUnauthenticated
	case hasToken && hasCert:
		if !identity.Same(byToken.ID, byCert.ID) {
			return jobs.Principal{}, errUnauthenticated
		}
		return byCert, nil
	case hasToken:
		return byToken, nil
	case hasCert:
		return byCert, nil
	}
	return jobs.Principal{}, errUnauthenticated
}

// bearer resolves the authorization header. No header is not an error; a header that
// is malformed, repeated or names no principal is.
func (ids *Identities) bearer(vals []string) (jobs.Principal, bool, error) {
	switch len(vals) {
	case 0:
		return jobs.Principal{}, false, nil
	case 1:
	default:
		return jobs.Principal{}, false, errUnauthenticated
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "bearer") || tok == "" {
		return jobs.Principal{}, false, errUnauthenticated
	}
	p, ok := ids.token(tok)
	if !ok {
		return jobs.Principal{}, false, errUnauthenticated
	}
	return p, true, nil
}

// peerCertificate maps the connection's verified client certificate, if any.
func (ids *Identities) peerCertificate(state *tls.ConnectionState) (jobs.Principal, bool, error) {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return jobs.Principal{}, false, nil
	}
	return ids.certificate(state.VerifiedChains[0][0])
}

type principalKey struct{}

// withPrincipal and principalFrom carry the authenticated caller to handlers.
func withPrincipal(ctx context.Context, p jobs.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(ctx context.Context) jobs.Principal {
	p, _ := ctx.Value(principalKey{}).(jobs.Principal)
	return p
}
