package notify_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/agate-pdp/agate/notify"
)

func key(t *testing.T, whsec string) []byte {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whsec, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Signatures verify with the Standard Webhooks reference library (an independent
// implementation), with either secret of a rotation, and with no other secret or body.
func TestSignVerifiesWithReferenceLibrary(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret, other := secret('o'), secret('n'), secret('x')
	id, body := "msg_2b0f", []byte(`{"type":"job.pending_approval","data":{"job_id":"j-1"}}`)
	ts := time.Now().Unix()
	headers := func(sig string) http.Header {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
		h.Set("webhook-signature", sig)
		return h
	}
	verify := func(whsec, sig string, b []byte) error {
		wh, err := standardwebhooks.NewWebhook(whsec)
		if err != nil {
			t.Fatal(err)
		}
		return wh.Verify(b, headers(sig))
	}

	one := notify.Sign([][]byte{key(t, oldSecret)}, id, ts, body)
	if err := verify(oldSecret, one, body); err != nil {
		t.Errorf("one secret: %v", err)
	}
	wh, _ := standardwebhooks.NewWebhook(oldSecret)
	if ref, _ := wh.Sign(id, time.Unix(ts, 0), body); ref != one {
		t.Errorf("signature %q, the reference library signs %q", one, ref)
	}

	both := notify.Sign([][]byte{key(t, oldSecret), key(t, newSecret)}, id, ts, body)
	if parts := strings.Split(both, " "); len(parts) != 2 || !strings.HasPrefix(parts[0], "v1,") || !strings.HasPrefix(parts[1], "v1,") {
		t.Fatalf("rotation header %q: want two v1 signatures", both)
	}
	for _, s := range []string{oldSecret, newSecret} {
		if err := verify(s, both, body); err != nil {
			t.Errorf("during a rotation: %v", err)
		}
	}
	if err := verify(other, both, body); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("another secret: %v, want no matching signature", err)
	}
	if err := verify(oldSecret, both, append([]byte(nil), append(body, ' ')...)); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("another body: %v, want no matching signature", err)
	}
}
