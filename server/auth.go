package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

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

// How a principal authenticated, as evidence records it (auth_method). An OIDC principal
// is recorded as AuthOIDCPrefix followed by its token's issuer.
const (
	AuthToken       = "token"
	AuthCertificate = "certificate"
	AuthOIDCPrefix  = "oidc:"
)

// Authenticator resolves the caller of a request. Its identities can be swapped at run
// time (SIGHUP reloads the tokens file) without locking the request path.
type Authenticator struct {
	ids         atomic.Pointer[Identities]
	requireCert bool
	log         *slog.Logger
	lastLog     atomic.Int64 // unix ns of the last refused-JWT log line
}

// AuthOption tunes an Authenticator.
type AuthOption func(*Authenticator)

// RequireClientCert makes a client certificate that maps to a principal part of every
// authenticated call; a bearer token alone is then refused. The TLS listener must
// demand certificates too (tls.RequireAndVerifyClientCert).
func RequireClientCert() AuthOption { return func(a *Authenticator) { a.requireCert = true } }

// AuthLog logs, at most every ten seconds, why a JWT was refused: the caller hears only
// "invalid credentials", and a misconfigured audience or issuer needs saying somewhere.
func AuthLog(log *slog.Logger) AuthOption { return func(a *Authenticator) { a.log = log } }

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
	var state *tls.ConnectionState
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			state = &ti.State
		}
	}
	// Only the one header is copied, not the whole metadata.
	return a.authenticate(ctx, metadata.ValueFromIncomingContext(ctx, "authorization"), state)
}

// AuthenticateHTTP is Authenticate for an HTTP request: its Authorization header
// fields and its connection's TLS state, under the same rules and with the same error.
func (a *Authenticator) AuthenticateHTTP(r *http.Request) (jobs.Principal, error) {
	return a.authenticate(r.Context(), r.Header.Values("Authorization"), r.TLS)
}

// authenticate resolves a caller from its authorization header values and its
// connection's TLS state (nil without TLS).
func (a *Authenticator) authenticate(ctx context.Context, authorization []string, state *tls.ConnectionState) (jobs.Principal, error) {
	ids := a.ids.Load()
	byCert, hasCert, err := ids.peerCertificate(state)
	if err != nil || (a.requireCert && !hasCert) {
		return jobs.Principal{}, errUnauthenticated
	}
	byToken, hasToken, err := ids.bearer(ctx, authorization)
	switch {
	case err != nil:
		a.logRefusal(err)
		return jobs.Principal{}, errUnauthenticated
	case hasToken && hasCert:
		if !identity.Same(byToken.ID, byCert.ID) {
			return jobs.Principal{}, errUnauthenticated
		}
		byCert.Auth = AuthCertificate + "+" + byToken.Auth
		return byCert, nil
	case hasToken:
		return byToken, nil
	case hasCert:
		byCert.Auth = AuthCertificate
		return byCert, nil
	}
	return jobs.Principal{}, errUnauthenticated
}

// logRefusal logs a refused JWT's reason, which names no bearer material.
func (a *Authenticator) logRefusal(err error) {
	var oe *oidcError
	if a.log == nil || !errors.As(err, &oe) {
		return
	}
	now, last := time.Now().UnixNano(), a.lastLog.Load()
	if now-last < int64(10*time.Second) || !a.lastLog.CompareAndSwap(last, now) {
		return
	}
	a.log.Warn("refused an OIDC bearer token", "err", oe.Error())
}

// bearer resolves the authorization header. No header is not an error; a header that
// is malformed, repeated or names no principal is.
func (ids *Identities) bearer(ctx context.Context, vals []string) (jobs.Principal, bool, error) {
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
	if p, ok := ids.token(tok); ok {
		p.Auth = AuthToken
		return p, true, nil
	}
	// Only a value that is no listed token and has the form of a JWT is tried as one;
	// a JWT that fails verification authenticates nobody, by no other means either.
	if ids.oidc != nil && looksLikeJWT(tok) {
		p, err := ids.oidc.authenticate(ctx, tok)
		if err != nil {
			return jobs.Principal{}, false, err
		}
		return p, true, nil
	}
	return jobs.Principal{}, false, errUnauthenticated
}

// peerCertificate maps the connection's verified client certificate, if any.
func (ids *Identities) peerCertificate(state *tls.ConnectionState) (jobs.Principal, bool, error) {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return jobs.Principal{}, false, nil
	}
	return ids.certificate(state.VerifiedChains[0][0])
}

// withPrincipal and principalFrom carry the authenticated caller to handlers. The
// principal goes into the callInfo that observeUnary or observeStream left in ctx, so a
// call builds one context value, not two; ctx without one gets a new one.
func withPrincipal(ctx context.Context, p jobs.Principal) context.Context {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		ci.principal = p
		return ctx
	}
	return context.WithValue(ctx, callInfoKey{}, &callInfo{principal: p})
}

func principalFrom(ctx context.Context) jobs.Principal {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		return ci.principal
	}
	return jobs.Principal{}
}
