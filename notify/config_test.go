package notify_test

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/agate-pdp/agate/notify"
)

func TestParseDestinations(t *testing.T) {
	t.Parallel()
	files := map[string]string{"/etc/agate/rotating.secret": "# rotating\n" + secret('a') + "\n\n" + secret('b') + "\n"}
	read := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	ds, err := notify.Parse([]byte(`destinations:
  - name: approvers
    url: https://hooks.example.com/agate
    secret_file: /etc/agate/rotating.secret
    kinds: [pending_approval, expired]
    topics: ["finance.>", "crm.*.delete"]
  - name: slack-ops
    url: https://hooks.slack.com/services/T0/B0/XXXX
    format: slack
  - name: audit-sink
    url: http://10.0.0.7:8080/hook
    secrets: [`+secret('c')+`]
    trusted: true
    allow_private_network: true
`), read)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 || ds[1].Format != notify.FormatSlack || ds[0].Format != notify.FormatStandard || !ds[2].Trusted {
		t.Fatalf("%+v", ds)
	}
	for _, tc := range []struct {
		d           int
		kind, topic string
		want        bool
	}{
		{0, "pending_approval", "finance.payment.execute", true},
		{0, "expired", "crm.note.delete", true},
		{0, "approved", "finance.payment.execute", false},
		{0, "pending_approval", "crm.note.create", false},
		{1, "published", "anything.at.all", true},
	} {
		if got := ds[tc.d].Matches(tc.kind, tc.topic); got != tc.want {
			t.Errorf("%s matches %s %s = %v", ds[tc.d].Name, tc.kind, tc.topic, got)
		}
	}
	if s := ds[1].String(); strings.Contains(s, "XXXX") || s != "slack-ops (hooks.slack.com)" {
		t.Errorf("String() = %q reveals the URL's path", s)
	}
}

// Each problem names its field; none repeats a secret.
func TestParseDestinationsErrors(t *testing.T) {
	t.Parallel()
	leaky := "whsec_c2hvcnQ=" // "short"
	noFile := func(string) ([]byte, error) { return nil, &fs.PathError{Op: "open", Path: "x", Err: fs.ErrNotExist} }
	for _, tc := range []struct{ yaml, want string }{
		{"  - {name: a, url: 'ftp://x', secrets: [" + secret('a') + "]}", "destinations[0].url: must be an https:// URL"},
		{"  - {name: a, url: 'http://x.example', secrets: [" + secret('a') + "]}", "destinations[0].url: http:// is only"},
		{"  - {name: a, url: 'https://u:p@x.example', secrets: [" + secret('a') + "]}", "must not carry user info"},
		{"  - {name: a, url: 'https://x.example'}", "destinations[0].secrets: a standard webhook needs a signing secret"},
		{"  - {name: a, url: 'https://x.example', secrets: [" + leaky + "]}", "destinations[0].secrets[0]: is 5 bytes"},
		{"  - {name: a, url: 'https://x.example', secrets: [nope]}", "destinations[0].secrets[0]: must start with whsec_"},
		{"  - {name: a, url: 'https://x.example', secrets: [" + secret('a') + ", " + secret('b') + ", " + secret('c') + "]}", "at most 2"},
		{"  - {name: a, url: 'https://x.example', secret_file: /nope}", "destinations[0].secret_file:"},
		{"  - {name: a, url: 'https://x.example', format: teams, secrets: [" + secret('a') + "]}", `destinations[0].format: "teams"`},
		{"  - {name: a, url: 'https://x.example', kinds: [denied], secrets: [" + secret('a') + "]}", `destinations[0].kinds[0]: "denied" is not one of`},
		{"  - {name: a, url: 'https://x.example', topics: ['fin*'], secrets: [" + secret('a') + "]}", "destinations[0].topics[0]:"},
		{"  - {name: A B, url: 'https://x.example', secrets: [" + secret('a') + "]}", "destinations[0].name:"},
		{"  - {name: a, url: 'https://x.example', format: slack}\n  - {name: a, url: 'https://y.example', format: slack}", `destinations[1].name: "a" is used twice`},
		{"  - {name: a, url: 'https://x.example', format: slack, secrts: []}", "secrts"},
	} {
		_, err := notify.Parse([]byte("destinations:\n"+tc.yaml+"\n"), noFile)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n  error %v, want %q", tc.yaml, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "whsec_") && !strings.Contains(tc.want, "whsec_") || strings.Contains(err.Error(), "c2hvcnQ") {
			t.Errorf("error repeats a secret: %v", err)
		}
	}
	if _, err := notify.LoadFile("/nonexistent/notifications.yaml"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadFile of a missing file: %v", err)
	}
}

// The README's example file is valid.
func TestExampleFile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../examples/notifications.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := notify.Parse(raw, func(string) ([]byte, error) { return []byte(secret('e') + "\n" + secret('f') + "\n"), nil })
	if err != nil || len(ds) != 3 {
		t.Fatalf("examples/notifications.yaml: %v", err)
	}
}
