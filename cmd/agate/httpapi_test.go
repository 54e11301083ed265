package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestHTTPAPIFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string // "" means valid
	}{
		{[]string{"--http-api-addr", "127.0.0.1:7073"}, ""},
		{[]string{"--http-api-addr", "localhost"}, "--http-api-addr"},
		// Bearer tokens in plaintext beyond this host, as for --grpc-addr.
		{[]string{"--http-api-addr", "0.0.0.0:7073"}, "--http-api-addr 0.0.0.0:7073: bearer tokens"},
		{[]string{"--http-api-addr", ":7073"}, "--http-api-addr :7073: bearer tokens"},
		{[]string{"--http-api-addr", "[::]:7073"}, "--http-api-addr [::]:7073: bearer tokens"},
		{[]string{"--http-api-addr", "0.0.0.0:7073", "--insecure-plaintext-tokens", "--grpc-addr", "0.0.0.0:7070"}, ""},
		{[]string{"--http-api-addr", "0.0.0.0:7073", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, ""},
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
