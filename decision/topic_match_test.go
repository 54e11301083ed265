package decision_test

import (
	"errors"
	"testing"

	"github.com/agate-pdp/agate/decision"
)

func TestTopicPatternMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, topic string
		want           bool
	}{
		{"finance.payment.execute", "finance.payment.execute", true},
		{"finance.payment.execute", "finance.payment", false},
		{"finance.payment", "finance.payment.execute", false},
		{"finance.*.execute", "finance.payment.execute", true},
		{"finance.*.execute", "finance.execute", false},
		{"finance.*", "finance.payment.execute", false},
		{"finance.>", "finance.payment.execute", true},
		{"finance.>", "finance.payment", true},
		{"finance.>", "finance", false},
		{">", "crm", true},
		{"*", "crm", true},
		{"*", "crm.note", false},
		{"*.*.execute", "finance.payment.execute", true},
		{"finance.payment.execute", "finance.payment.executed", false},
	} {
		p, err := decision.ParseTopicPattern(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		if got := p.Match(tc.topic); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.topic, got, tc.want)
		}
	}
	for _, bad := range []string{"", "a..b", "a.>.b", "fin*", "a b"} {
		if _, err := decision.ParseTopicPattern(bad); !errors.Is(err, decision.ErrInvalidTopic) {
			t.Errorf("%q: %v, want ErrInvalidTopic", bad, err)
		}
	}
	if (decision.TopicPattern{}).Match("a") {
		t.Error("the zero pattern matched")
	}
}
