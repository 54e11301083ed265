package server

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agate-pdp/agate/identity"
	"github.com/agate-pdp/agate/jobs"
)

// tokensFile is the on-disk form of the principals and their credentials. Tokens are
// stored only as SHA-256 digests, so the file grants nothing if it leaks.
type tokensFile struct {
	Principals []struct {
		ID           string   `yaml:"id"`
		Roles        []string `yaml:"roles"`
		TokensSHA256 []string `yaml:"tokens_sha256"`
		Certificates []string `yaml:"certificates"`
	} `yaml:"principals"`
	OIDC *oidcConfig `yaml:"oidc"`
}

// Certificate identities in the tokens file name the subject alternative name they match
// by its type, so a DNS name can never stand for a URI or a principal id.
const (
	certURI = "uri:"
	certDNS = "dns:"
)

// Identities maps bearer-token digests and certificate names to principals.
type Identities struct {
	byDigest map[[32]byte]jobs.Principal
	byCert   map[string]jobs.Principal // by certKey
	oidc     *oidcAuth                 // nil unless the file has an oidc section
}

// LoadIdentities reads a tokens file. It refuses a principal without roles (it could do
// nothing), ids that are malformed or that name one identity in the canonical form of
// package identity, a principal with no credential, and any credential listed twice.
func LoadIdentities(path string) (*Identities, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ids, err := parseIdentities(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ids, nil
}

func parseIdentities(raw []byte) (*Identities, error) {
	var f tokensFile
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	ids := &Identities{byDigest: map[[32]byte]jobs.Principal{}, byCert: map[string]jobs.Principal{}}
	byKey := map[string]int{}         // canonical id → index
	certAt := map[string]string{}     // certKey → where it was listed
	digestAt := map[[32]byte]string{} // digest → where it was listed
	for i, p := range f.Principals {
		key, err := identity.Key(p.ID)
		if err != nil {
			return nil, fmt.Errorf("principals[%d].id %w", i, err)
		}
		if jobs.IsSystemID(p.ID) {
			return nil, fmt.Errorf("principals[%d].id %q is, or looks like, one of Agate's own principals (agate, agate:…)", i, p.ID)
		}
		if j, dup := byKey[key]; dup {
			return nil, fmt.Errorf("principals[%d].id %q and principals[%d].id %q name one identity (ids compare case- and width-insensitively)",
				j, f.Principals[j].ID, i, p.ID)
		}
		byKey[key] = i
		if len(p.Roles) == 0 {
			return nil, fmt.Errorf("principals[%d] (%q) has no roles: a principal without roles may do nothing, so list its roles or remove it", i, p.ID)
		}
		for j, r := range p.Roles {
			if strings.TrimSpace(r) != r || r == "" {
				return nil, fmt.Errorf("principals[%d].roles[%d] is empty or has white space at an end", i, j)
			}
		}
		if len(p.TokensSHA256) == 0 && len(p.Certificates) == 0 {
			return nil, fmt.Errorf("principals[%d] (%q) has no tokens_sha256 and no certificates. A client certificate "+
				"no longer signs in by a SAN equal to the principal id: list the certificate's identity, e.g. "+
				"certificates: [%q]", i, p.ID, suggestCert(p.ID))
		}
		pr := jobs.Principal{ID: p.ID, Roles: append([]string(nil), p.Roles...)}
		for j, h := range p.TokensSHA256 {
			b, err := hex.DecodeString(strings.TrimPrefix(h, "sha256:"))
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("principals[%d].tokens_sha256[%d] is not a hex SHA-256 digest", i, j)
			}
			var d [32]byte
			copy(d[:], b)
			here := fmt.Sprintf("principals[%d].tokens_sha256[%d]", i, j)
			if at, dup := digestAt[d]; dup {
				return nil, fmt.Errorf("%s and %s are one token", at, here)
			}
			digestAt[d] = here
			ids.byDigest[d] = pr
		}
		for j, c := range p.Certificates {
			k, err := certKey(c)
			here := fmt.Sprintf("principals[%d].certificates[%d]", i, j)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", here, err)
			}
			if at, dup := certAt[k]; dup {
				return nil, fmt.Errorf("%s and %s name one certificate identity %q", at, here, c)
			}
			certAt[k] = here
			ids.byCert[k] = pr
		}
	}
	if f.OIDC != nil {
		if err := checkOIDC(f.OIDC); err != nil {
			return nil, err
		}
		reserved := make(map[string]bool, len(f.Principals)) // confusable skeletons of the file's ids
		for _, p := range f.Principals {
			if sk, err := identity.Skeleton(p.ID); err == nil {
				reserved[sk] = true
			}
		}
		ids.oidc = newOIDCAuth(*f.OIDC, reserved)
	}
	return ids, nil
}

// OIDCIssuer is the issuer of the tokens file's oidc section, or "" without one.
func (ids *Identities) OIDCIssuer() string {
	if ids.oidc == nil {
		return ""
	}
	return ids.oidc.cfg.Issuer
}

// CheckOIDC runs the OIDC issuer's discovery now, so that a start-up can say when the
// issuer cannot be reached; sign-ins retry it on their own.
func (ids *Identities) CheckOIDC(ctx context.Context) error {
	if ids.oidc == nil {
		return nil
	}
	_, err := ids.oidc.discover(ctx)
	return err
}

// suggestCert is the certificates entry that keeps an old tokens file's meaning: its
// principal id matched a certificate's URI SAN, or else its DNS SAN.
func suggestCert(id string) string {
	if strings.Contains(id, "://") {
		return certURI + id
	}
	return certDNS + id
}

// certKey checks a tokens file's certificate identity and returns the form it is
// looked up by: URIs exactly as written, DNS names in lower case without a final dot.
func certKey(c string) (string, error) {
	switch {
	case strings.HasPrefix(c, certURI):
		v := strings.TrimPrefix(c, certURI)
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || strings.ContainsAny(v, " \t\r\n") {
			return "", fmt.Errorf("%q is not an absolute URI", v)
		}
		return certURI + v, nil
	case strings.HasPrefix(c, certDNS):
		v := strings.TrimPrefix(c, certDNS)
		if err := checkDNSName(v); err != nil {
			return "", fmt.Errorf("%q %w", v, err)
		}
		return certDNS + dnsKey(v), nil
	}
	return "", fmt.Errorf("%q must start with %q (a URI SAN, e.g. a SPIFFE id) or %q (a DNS SAN)", c, certURI, certDNS)
}

func dnsKey(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// checkDNSName accepts host names only: a wildcard would make every host it covers one
// principal.
func checkDNSName(name string) error {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return errors.New("is not a DNS name")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "*" {
			return errors.New("is a wildcard; list the exact host name")
		}
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("is not a DNS name")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return errors.New("is not a DNS name")
			}
		}
	}
	return nil
}

// CertificateIdentities is how many certificate identities the tokens file lists.
func (ids *Identities) CertificateIdentities() int { return len(ids.byCert) }

// token looks a bearer token up by its digest. Timing of a lookup keyed by a SHA-256
// digest says nothing useful about the token itself.
func (ids *Identities) token(tok string) (jobs.Principal, bool) {
	p, ok := ids.byDigest[sha256.Sum256([]byte(tok))]
	return p, ok
}

// errCertAmbiguous: a certificate whose names map to two principals identifies nobody.
var errCertAmbiguous = errors.New("certificate names two principals")

// certificate maps a verified client certificate to the principal its URI or DNS SANs
// are listed for. No mapping is not an error; two different principals are.
func (ids *Identities) certificate(c *x509.Certificate) (jobs.Principal, bool, error) {
	var found jobs.Principal
	ok := false
	match := func(k string) error {
		p, hit := ids.byCert[k]
		if !hit {
			return nil
		}
		if ok && !identity.Same(found.ID, p.ID) {
			return errCertAmbiguous
		}
		found, ok = p, true
		return nil
	}
	for _, u := range c.URIs {
		if err := match(certURI + u.String()); err != nil {
			return jobs.Principal{}, false, err
		}
	}
	for _, d := range c.DNSNames {
		if err := match(certDNS + dnsKey(d)); err != nil {
			return jobs.Principal{}, false, err
		}
	}
	return found, ok, nil
}
