package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/agate-pdp/agate/server"
)

// authOptions are the authenticator's options the configuration asks for.
func (c serveConfig) authOptions() []server.AuthOption {
	if c.RequireClientCert {
		return []server.AuthOption{server.RequireClientCert()}
	}
	return nil
}

// warnUnmappedCertificates says when client certificates are verified but the tokens
// file maps none to a principal: a file written when certificates signed in by a SAN
// equal to a principal id would otherwise fall back to tokens without a word.
func (c serveConfig) warnUnmappedCertificates(ids *server.Identities, log *slog.Logger) {
	if c.TLSClientCA != "" && ids.CertificateIdentities() == 0 {
		log.Warn("--tls-client-ca is set but no principal in --tokens lists certificates, so client certificates "+
			"authenticate nobody; add certificates: [\"uri:…\"] or [\"dns:…\"] to the principals they belong to", "tokens", c.TokensFile)
	}
}

// checkOIDCIssuer runs the OIDC issuer's discovery once, so that an issuer that cannot
// be reached is reported at start, not at the first sign-in. Serving does not wait for
// it: static tokens and certificates work either way, and sign-ins retry discovery.
func checkOIDCIssuer(ctx context.Context, ids *server.Identities, log *slog.Logger) {
	if ids.OIDCIssuer() == "" {
		return
	}
	if err := ids.CheckOIDC(ctx); err != nil {
		log.Warn("OIDC issuer discovery failed: OIDC sign-ins are refused until it succeeds", "issuer", ids.OIDCIssuer(), "err", err)
		return
	}
	log.Info("OIDC issuer ready", "issuer", ids.OIDCIssuer())
}

// streamLimits bound streaming calls. Unauthenticated streams get at most five minutes.
func (c serveConfig) streamLimits() server.StreamLimits {
	return server.StreamLimits{MaxConcurrentStreams: uint32(min(c.MaxConcurrentStreams, math.MaxUint32)), MaxStreamTime: c.MaxStreamTime,
		MaxPublicStreams: c.MaxPublicStreams, MaxPublicStreamTime: min(c.MaxStreamTime, 5*time.Minute)}
}

// validateSecurity reports the settings that would expose a secret: bearer tokens in
// plaintext beyond this host, the profiler beyond it, a certificate requirement
// without a CA to check certificates against.
func (c serveConfig) validateSecurity() []error {
	var errs []error
	if c.RequireClientCert && c.TLSClientCA == "" {
		errs = append(errs, errors.New("--require-client-cert: needs --tls-client-ca"))
	}
	if c.TLSCert == "" && !c.InsecurePlaintextTokens && !loopbackOnly(c.GRPCAddr) {
		errs = append(errs, fmt.Errorf("--grpc-addr %s: bearer tokens would cross the network in plaintext; "+
			"give --tls-cert and --tls-key, listen on a loopback address, or, when TLS ends in front of Agate "+
			"(a service mesh sidecar), say so with --insecure-plaintext-tokens", c.GRPCAddr))
	}
	if c.AuthZENAddr != "" && c.TLSCert == "" && !c.InsecurePlaintextTokens && !loopbackOnly(c.AuthZENAddr) {
		errs = append(errs, fmt.Errorf("--authzen-addr %s: bearer tokens would cross the network in plaintext; "+
			"give --tls-cert and --tls-key, listen on a loopback address, or, when TLS ends in front of Agate, "+
			"say so with --insecure-plaintext-tokens", c.AuthZENAddr))
	}
	if c.HTTPAPIAddr != "" && c.TLSCert == "" && !c.InsecurePlaintextTokens && !loopbackOnly(c.HTTPAPIAddr) {
		errs = append(errs, fmt.Errorf("--http-api-addr %s: bearer tokens would cross the network in plaintext; "+
			"give --tls-cert and --tls-key, listen on a loopback address, or, when TLS ends in front of Agate, "+
			"say so with --insecure-plaintext-tokens", c.HTTPAPIAddr))
	}
	if c.Pprof && !loopbackOnly(c.HTTPAddr) {
		errs = append(errs, fmt.Errorf("--pprof: needs a loopback --http-addr (not %s): profiles reveal the process's "+
			"internals and are served without authentication; reach them through an SSH tunnel or kubectl port-forward", c.HTTPAddr))
	}
	if c.DBPasswordFile != "" {
		if _, ok := sqlitePath(c.DB); ok {
			errs = append(errs, errors.New("--db-password-file: applies to a postgres:// --db only"))
		}
	}
	return errs
}

// loopbackOnly reports whether a listen address binds loopback interfaces only: a
// loopback IP, or a name every address of which is loopback. An empty host listens
// everywhere; a name that does not resolve counts as not loopback.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return false
		}
	}
	return true
}

// redactedCmdline serves /debug/pprof/cmdline like net/http/pprof, with any database
// password in the arguments hidden.
func redactedCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, strings.Join(redactArgs(os.Args), "\x00"))
}

// redactArgs hides the password of every database URL among args, whether it is its
// own argument or follows "--flag=".
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		flag, val, ok := strings.Cut(a, "=")
		switch {
		case strings.Contains(a, "://") && ok && strings.HasPrefix(flag, "-") && !strings.Contains(flag, "://"):
			out[i] = flag + "=" + redactURL(val)
		case strings.Contains(a, "://"):
			out[i] = redactURL(a)
		default:
			out[i] = a
		}
	}
	return out
}
