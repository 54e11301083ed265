package canonical

import "testing"

// paymentPayload is a typical payment job's payload (about 200 bytes).
const paymentPayload = `{"amount": 1250.5, "currency": "EUR", "invoice": "INV-2026-04-1001",
 "beneficiary": {"name": "ACME Supplies GmbH", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"},
 "reference": "April services", "due_date": "2026-04-30"}`

func BenchmarkJobHash(b *testing.B) {
	labels := map[string]any{"env": "production", "destination": "external", "scope_validated": true}
	payload := []byte(paymentPayload)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := JobHash("finance.payment.execute", "agent-7", labels, payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTransform(b *testing.B) {
	payload := []byte(paymentPayload)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := Transform(payload); err != nil {
			b.Fatal(err)
		}
	}
}
