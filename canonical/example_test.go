package canonical_test

import (
	"encoding/json"
	"fmt"

	"github.com/agate-pdp/agate/canonical"
)

// The job hash is SHA-256 over the canonical form of topic, actor, labels and
// payload; `printf '%s' '<canonical>' | sha256sum` recomputes it.
func ExampleJobHash() {
	labels := map[string]any{"env": "production"}
	payload := []byte(`{"amount": 1250.5, "currency": "EUR", "invoice": "INV-1001"}`)

	canon, _ := canonical.Append(nil, map[string]any{
		"topic": "finance.payment.execute", "actor": "agent-7", "labels": labels,
		"payload": json.RawMessage(payload),
	})
	hash, err := canonical.JobHash("finance.payment.execute", "agent-7", labels, payload)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(canon))
	fmt.Println(hash)
	// Output:
	// {"actor":"agent-7","labels":{"env":"production"},"payload":{"amount":1250.5,"currency":"EUR","invoice":"INV-1001"},"topic":"finance.payment.execute"}
	// sha256:f3a95a5b4da997d8b847e422f1491998f74cd88d6c695dc71af46edbbfb59242
}
