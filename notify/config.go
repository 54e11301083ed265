package notify

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agate-pdp/agate/decision"
	"github.com/agate-pdp/agate/jobs"
)

// Format is how a destination's message body is written.
type Format string

// The formats.
const (
	// FormatStandard is a Standard Webhooks JSON body: {"type", "timestamp", "data"}.
	FormatStandard Format = "standard"
	// FormatSlack is a Slack-compatible incoming-webhook body: {"text"}.
	FormatSlack Format = "slack"
)

// secretPrefix marks a Standard Webhooks signing secret: whsec_ and base64 key bytes.
const secretPrefix = "whsec_"

// minKeyBytes is the shortest key accepted (the convention asks for 24 to 64 bytes).
const minKeyBytes = 24

// maxSecrets is how many secrets a destination signs with at once: the current one and,
// during a rotation, its successor.
const maxSecrets = 2

// Destination is one webhook receiver of the destinations file. Its URL and secrets are
// credentials (a Slack URL is one): they appear in no log line and no error.
type Destination struct {
	Name    string
	URL     *url.URL
	Format  Format
	Trusted bool // the message carries the job's payload
	// AllowPrivateNetwork lets the dialer connect to loopback and private addresses.
	AllowPrivateNetwork bool

	keys   [][]byte                // HMAC keys; each signs the message
	kinds  map[string]bool         // nil: every kind
	topics []decision.TopicPattern // nil: every topic
}

// Matches reports whether the destination wants a notification of kind about topic.
func (d *Destination) Matches(kind, topic string) bool {
	if d.kinds != nil && !d.kinds[kind] {
		return false
	}
	if d.topics == nil {
		return true
	}
	for _, p := range d.topics {
		if p.Match(topic) {
			return true
		}
	}
	return false
}

// String names the destination and its host, never its credentials.
func (d *Destination) String() string { return d.Name + " (" + d.URL.Host + ")" }

type fileDoc struct {
	Destinations []destDoc `yaml:"destinations"`
}

type destDoc struct {
	Name                string   `yaml:"name"`
	URL                 string   `yaml:"url"`
	Format              string   `yaml:"format"`
	Secrets             []string `yaml:"secrets"`
	SecretFile          string   `yaml:"secret_file"`
	Kinds               []string `yaml:"kinds"`
	Topics              []string `yaml:"topics"`
	Trusted             bool     `yaml:"trusted"`
	AllowPrivateNetwork bool     `yaml:"allow_private_network"`
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// LoadFile reads a destinations file (YAML; see the README's Notifications section).
// Every problem is reported at once, each naming its field; none quotes a secret.
func LoadFile(path string) ([]*Destination, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(raw, func(p string) ([]byte, error) { return os.ReadFile(p) })
}

// Parse reads a destinations file's content; readFile reads the secret files it names.
func Parse(raw []byte, readFile func(string) ([]byte, error)) ([]*Destination, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var doc fileDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("notifications file: %w", err)
	}
	var errs []error
	seen := map[string]bool{}
	out := make([]*Destination, 0, len(doc.Destinations))
	for i, dd := range doc.Destinations {
		field := fmt.Sprintf("destinations[%d]", i)
		fail := func(f, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s.%s: %s", field, f, fmt.Sprintf(format, args...)))
		}
		d := &Destination{Name: dd.Name, Format: Format(dd.Format), Trusted: dd.Trusted, AllowPrivateNetwork: dd.AllowPrivateNetwork}
		switch {
		case !namePattern.MatchString(dd.Name):
			fail("name", "must be 1-63 of a-z, 0-9, _ and -, starting with a letter or digit")
		case seen[dd.Name]:
			fail("name", "%q is used twice", dd.Name)
		}
		seen[dd.Name] = true
		d.URL = checkURL(dd.URL, dd.AllowPrivateNetwork, func(msg string) { fail("url", "%s", msg) })
		switch d.Format {
		case "":
			d.Format = FormatStandard
		case FormatStandard, FormatSlack:
		default:
			fail("format", "%q is not standard or slack", dd.Format)
		}
		secrets := dd.Secrets
		if dd.SecretFile != "" {
			if len(dd.Secrets) > 0 {
				fail("secret_file", "give secrets or secret_file, not both")
			}
			b, err := readFile(dd.SecretFile)
			if err != nil {
				fail("secret_file", "%v", errors.Unwrap(err))
			}
			secrets = secretLines(b)
		}
		for k, s := range secrets {
			key, msg := decodeSecret(s)
			if msg != "" {
				fail(fmt.Sprintf("secrets[%d]", k), "%s", msg)
				continue
			}
			d.keys = append(d.keys, key)
		}
		switch {
		case len(secrets) > maxSecrets:
			fail("secrets", "at most %d (the current secret and its successor during a rotation)", maxSecrets)
		case len(secrets) == 0 && d.Format == FormatStandard:
			fail("secrets", "a standard webhook needs a signing secret (secrets or secret_file)")
		}
		if len(dd.Kinds) > 0 {
			d.kinds = map[string]bool{}
			for k, kind := range dd.Kinds {
				if !slices.Contains(jobs.NotifyKinds, kind) {
					fail(fmt.Sprintf("kinds[%d]", k), "%q is not one of %s", kind, strings.Join(jobs.NotifyKinds, ", "))
				}
				d.kinds[kind] = true
			}
		}
		for k, s := range dd.Topics {
			p, err := decision.ParseTopicPattern(s)
			if err != nil {
				fail(fmt.Sprintf("topics[%d]", k), "%v", err)
				continue
			}
			d.topics = append(d.topics, p)
		}
		out = append(out, d)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// checkURL parses a destination URL: https, or http to a receiver on a private network
// that the destination allows; no user info (credentials would end up in logs).
func checkURL(raw string, allowPrivate bool, fail func(string)) *url.URL {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		fail("is required")
	case err != nil:
		fail("is not a URL")
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		fail("must be an https:// URL")
	case u.Scheme == "http" && !allowPrivate:
		fail("http:// is only for receivers on a private network (allow_private_network: true); use https://")
	case u.User != nil:
		fail("must not carry user info; use the signing secret to authenticate")
	default:
		return u
	}
	return &url.URL{}
}

// secretLines reads a secret file: one secret a line; blank lines and # comments skipped.
func secretLines(b []byte) []string {
	var out []string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// decodeSecret returns a whsec_ secret's key, or what is wrong with it (never the secret).
func decodeSecret(s string) ([]byte, string) {
	b64, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, "must start with " + secretPrefix
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, "is not " + secretPrefix + " followed by standard base64"
	}
	if len(key) < minKeyBytes {
		return nil, fmt.Sprintf("is %d bytes; use at least %d random bytes", len(key), minKeyBytes)
	}
	return key, ""
}
