package server

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"gopkg.in/yaml.v3"

	"github.com/agate-pdp/agate/jobs"
)

// The service roles. Approver roles are whatever policy rules name (e.g. admin,
// finance-approver); they are checked per job by the lifecycle.
const (
	RoleDecide      = "decide"
	RoleDispatch    = "dispatch"
	RoleAudit       = "audit"
	RolePolicyAdmin = "policy-admin"
	RoleAdmin       = "admin"
)

// tokensFile is the on-disk form of the principals and their credentials. Tokens are
// stored only as SHA-256 digests, so the file grants nothing if it leaks.
type tokensFile struct {
	Principals []struct {
		ID           string   `yaml:"id"`
		Roles        []string `yaml:"roles"`
		TokensSHA256 []string `yaml:"tokens_sha256"`
	} `yaml:"principals"`
}

// Identities maps bearer-token digests and certificate names to principals.
type Identities struct {
	byDigest map[[32]byte]jobs.Principal
	byID     map[string]jobs.Principal
}

// LoadIdentities reads a tokens file.
func LoadIdentities(path string) (*Identities, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f tokensFile
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ids := &Identities{byDigest: map[[32]byte]jobs.Principal{}, byID: map[string]jobs.Principal{}}
	for i, p := range f.Principals {
		if p.ID == "" {
			return nil, fmt.Errorf("%s: principals[%d].id is empty", path, i)
		}
		if _, dup := ids.byID[p.ID]; dup {
			return nil, fmt.Errorf("%s: principals[%d].id %q is listed twice", path, i, p.ID)
		}
		pr := jobs.Principal{ID: p.ID, Roles: append([]string(nil), p.Roles...)}
		ids.byID[p.ID] = pr
		for j, h := range p.TokensSHA256 {
			b, err := hex.DecodeString(strings.TrimPrefix(h, "sha256:"))
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("%s: principals[%d].tokens_sha256[%d] is not a hex SHA-256 digest", path, i, j)
			}
			var d [32]byte
			copy(d[:], b)
			if _, dup := ids.byDigest[d]; dup {
				return nil, fmt.Errorf("%s: principals[%d].tokens_sha256[%d] is used twice", path, i, j)
			}
			ids.byDigest[d] = pr
		}
	}
	return ids, nil
}

// token looks a bearer token up by its digest. Timing of a lookup keyed by a SHA-256
// digest says nothing useful about the token itself.
func (ids *Identities) token(tok string) (jobs.Principal, bool) {
	p, ok := ids.byDigest[sha256.Sum256([]byte(tok))]
	return p, ok
}

// Authenticator resolves the caller of a request. Its identities can be swapped at run
// time (SIGHUP reloads the tokens file) without locking the request path.
type Authenticator struct {
	ids atomic.Pointer[Identities]
}

// NewAuthenticator returns an authenticator over ids.
func NewAuthenticator(ids *Identities) *Authenticator {
	a := &Authenticator{}
	a.ids.Store(ids)
	return a
}

// Swap installs reloaded identities.
func (a *Authenticator) Swap(ids *Identities) { a.ids.Store(ids) }

// errUnauthenticated is deliberately vague: which part of a credential failed is not
// the caller's business.
var errUnauthenticated = &accessError{unauthenticated: true, reason: "UNAUTHENTICATED",
	msg: "missing or invalid credentials: send 'authorization: Bearer <token>' or a client certificate"}

// Authenticate returns the principal behind ctx: a bearer token when one is sent, else
// a verified client certificate whose URI or DNS SAN names a known principal.
func (a *Authenticator) Authenticate(ctx context.Context) (jobs.Principal, error) {
	ids := a.ids.Load()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if vals := md.Get("authorization"); len(vals) > 0 {
			scheme, tok, ok := strings.Cut(vals[0], " ")
			if !ok || !strings.EqualFold(scheme, "bearer") || tok == "" {
				return jobs.Principal{}, errUnauthenticated
			}
			if p, ok := ids.token(strings.TrimSpace(tok)); ok {
				return p, nil
			}
			return jobs.Principal{}, errUnauthenticated
		}
	}
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			if p, ok := ids.certificate(ti.State.VerifiedChains[0][0]); ok {
				return p, nil
			}
		}
	}
	return jobs.Principal{}, errUnauthenticated
}

func (ids *Identities) certificate(c *x509.Certificate) (jobs.Principal, bool) {
	for _, u := range c.URIs {
		if p, ok := ids.byID[u.String()]; ok {
			return p, true
		}
	}
	for _, d := range c.DNSNames {
		if p, ok := ids.byID[d]; ok {
			return p, true
		}
	}
	return jobs.Principal{}, false
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
