package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestAuthZENFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string // "" means valid
	}{
		{[]string{"--authzen-addr", "127.0.0.1:7072"}, ""},
		{[]string{"--authzen-addr", "127.0.0.1:7072", "--authzen-url", "https://pdp.example.com"}, ""},
		{[]string{"--authzen-addr", "localhost"}, "--authzen-addr"},
		{[]string{"--authzen-url", "https://pdp.example.com"}, "--authzen-url: needs --authzen-addr"},
		{[]string{"--authzen-addr", "127.0.0.1:7072", "--authzen-url", "http://pdp.example.com"}, "--authzen-url"},
		{[]string{"--authzen-addr", "127.0.0.1:7072", "--authzen-url", "https://pdp.example.com/?tenant=1"}, "--authzen-url"},
		// Bearer tokens in plaintext beyond this host, as for --grpc-addr.
		{[]string{"--authzen-addr", "0.0.0.0:7072"}, "--authzen-addr 0.0.0.0:7072: bearer tokens"},
		{[]string{"--authzen-addr", ":7072"}, "--authzen-addr :7072: bearer tokens"},
		{[]string{"--authzen-addr", "0.0.0.0:7072", "--insecure-plaintext-tokens", "--grpc-addr", "0.0.0.0:7070"}, ""},
		{[]string{"--authzen-addr", "0.0.0.0:7072", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, ""},
	} {
		args := append([]string{"--tokens", "t.yaml"}, tc.args...)
		_, err := parseServeConfig(args, &bytes.Buffer{})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
}
